"""Issue 11: no silent wrong results, nothing lost, one clear line per problem.

Each test here failed before the fix it guards (the item numbers are the issue's).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import synthetic_flair
from test_model_files import copy_model, edit_card
from deepwml.cli import main
from deepwml.errors import ModelFileError, OptionError
from deepwml.image_io import load_flair
from deepwml.preprocessing import head_mask, normalize_intensity
from deepwml.model_files import load_model
from deepwml.segmenter import Segmenter
from deepwml.slice_layout import plan_slices


def run_cli(args, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse refuses bad options this way
        code = exit_.code
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.CopyInformation(reference)
    return image


# -- 7: intensity normalisation ------------------------------------------------------------------

def _v2_normalisation(volume: np.ndarray) -> np.ndarray:
    """Preprocessing version 2 exactly as the bundled model was trained with (air assumed at 0)."""
    volume = np.asarray(volume, dtype=np.float32)
    positive = volume[volume > 0]
    head = volume[volume > 0.1 * np.percentile(positive, 99.5)]
    lo, hi = np.percentile(head, [1.0, 50.0])
    return np.clip((volume - lo) / (hi - lo), 0.0, 4.0).astype(np.float32)


@pytest.fixture(scope="module")
def phantom_slices(phantom_flair) -> np.ndarray:
    image = load_flair(phantom_flair)
    return plan_slices(image).to_slices(sitk.GetArrayFromImage(image))


def test_normalisation_of_scans_with_air_at_zero_is_unchanged(phantom_set):
    """The bundled model (preprocessing v2) stays valid: bit-identical input on every phantom."""
    for flair in sorted(phantom_set.parent.glob("case*/flair.nii.gz")):
        image = load_flair(flair)
        slices = plan_slices(image).to_slices(sitk.GetArrayFromImage(image))
        assert np.array_equal(normalize_intensity(slices), _v2_normalisation(slices)), flair


@pytest.mark.parametrize("change", ["+1000", "-500", "x0.001", "x1000-3e5", "z-score over head",
                                    "all negative"])
def test_normalisation_is_invariant_to_offset_and_scale(change, phantom_slices):
    v = phantom_slices.astype(np.float32)
    head = v[head_mask(v)]
    changed = {"+1000": v + 1000, "-500": v - 500, "x0.001": v * 0.001, "x1000-3e5": v * 1000 - 3e5,
               "z-score over head": (v - head.mean()) / head.std(),
               "all negative": v - 2 * v.max()}[change]
    difference = np.abs(normalize_intensity(changed.astype(np.float32)) - normalize_intensity(v))
    assert difference.max() < 0.02  # measured 0.007 (the air level moves from 0 to the edges' 1st percentile)


def test_offset_flair_segments_like_the_original(phantom_flair, tmp_path, capsys):
    """+1000 gave 3,338 ml of 'lesion' on a phantom with 6.6 ml (bundled model, exit 0)."""
    image = load_flair(phantom_flair)
    shifted = tmp_path / "shifted.nii.gz"
    sitk.WriteImage(like(sitk.GetArrayFromImage(image) + 1000, image), str(shifted))
    out = tmp_path / "out"
    assert run_cli(["segment", phantom_flair, shifted, "-o", out, "--device", "cpu", "-q"], capsys)[0] == 0
    ml = [json.loads((out / f"{n}.summary.json").read_text())["total_volume_ml"] for n in ("flair", "shifted")]
    assert ml[1] == pytest.approx(ml[0], rel=0.05, abs=0.05)


def test_negated_flair_is_refused(tmp_path, capsys, tiny_model_dir):
    image = synthetic_flair()
    path = tmp_path / "negated.nii.gz"
    sitk.WriteImage(like(-sitk.GetArrayFromImage(image), image), str(path))
    code, err = run_cli(["segment", path, "-o", tmp_path / "out", "--model", tiny_model_dir,
                         "--device", "cpu"], capsys)
    line = one_error_line(err)
    assert code == 2 and str(path) in line and "inverted" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- 8: NaN / Inf in NIfTI -----------------------------------------------------------------------

def test_nan_and_inf_in_nifti_are_refused_with_slice_numbers(tmp_path, capsys, tiny_model_dir):
    """SimpleITK reads NaN and Inf in NIfTI as 0, so the NaN refusal never fired for NIfTI."""
    image = synthetic_flair()
    arr = sitk.GetArrayFromImage(image)
    arr[3:5] = np.nan
    arr[7, 10, 10] = np.inf
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(like(arr, image), str(path))
    code, err = run_cli(["segment", path, "-o", tmp_path / "out", "--model", tiny_model_dir,
                         "--device", "cpu"], capsys)
    line = one_error_line(err)
    assert code == 2 and str(path) in line and "NaN" in line and "slice(s) 3, 4, 7 of 12" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- 10: options and card values -----------------------------------------------------------------

@pytest.mark.parametrize("option", [("--batch-size", "-3"), ("--batch-size", "0"), ("--batch-size", "2.5"),
                                    ("--threshold", "-1"), ("--threshold", "0"), ("--threshold", "1"),
                                    ("--threshold", "1.5"), ("--threshold", "nan"), ("--threshold", "inf")])
def test_out_of_range_segment_options_are_refused(option, tmp_path, capsys, tiny_model_dir):
    """--batch-size -3 ran no slice and reported 0 ml; thresholds <= 0 or >= 1 gave all or nothing."""
    flair = tmp_path / "flair.nii.gz"
    sitk.WriteImage(synthetic_flair(), str(flair))
    out = tmp_path / "out"
    code, err = run_cli(["segment", flair, "-o", out, "--model", tiny_model_dir, "--device", "cpu", *option], capsys)
    line = one_error_line(err)
    assert code == 2 and option[0] in line and repr(option[1]) in line
    assert not out.exists()


@pytest.mark.parametrize("command", [["train", "m.csv", "-o", "run", "--epochs", "0"],
                                     ["train", "m.csv", "-o", "run", "--lr", "-1e-4"],
                                     ["train", "m.csv", "-o", "run", "--crop", "100"],
                                     ["train", "m.csv", "-o", "run", "--steps-per-epoch", "-1"],
                                     ["consensus", "m.csv", "-o", "c", "--min-dice", "1.5"],
                                     ["evaluate", "m.csv", "-o", "e", "--max-cases", "-2"],
                                     ["phantom", "p", "--cases", "0"], ["phantom", "p", "--seed", "-1"],
                                     ["train", "m.csv", "-o", "run", "--seed", "-2"]])
def test_out_of_range_options_of_other_commands_are_refused(command, capsys):
    code, err = run_cli(command, capsys)
    assert code == 2 and command[-2] in one_error_line(err)


@pytest.mark.parametrize("threshold", [-1, 0, 1, 1.5, "abc", None, True])
def test_card_threshold_must_be_a_probability(threshold, tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path)
    edit_card(model, lambda card: card.update(threshold=threshold))
    with pytest.raises(ModelFileError, match="threshold"):
        load_model(model)


def test_segmenter_refuses_bad_batch_size_and_threshold(tiny_model_dir):
    with pytest.raises(OptionError):
        Segmenter(str(tiny_model_dir), device="cpu", batch_size=0)
    with pytest.raises(OptionError):
        Segmenter(str(tiny_model_dir), device="cpu").segment(synthetic_flair(), threshold=float("nan"))


# -- 1, 2, 3, 13, 14: the segment command's output folder ----------------------------------------

def flair_files(tmp_path: Path, *relative: str) -> list[Path]:
    paths = []
    for i, rel in enumerate(relative):
        path = tmp_path / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(synthetic_flair(seed=i), str(path))
        paths.append(path)
    return paths


def segment_args(inputs, out, model, *extra) -> list:
    return ["segment", *inputs, "-o", out, "--model", model, "--device", "cpu", "-q", *extra]


def all_files(folder: Path) -> list[str]:
    """Every file left in ``folder``, hidden ones (temporaries, locks) included."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_same_file_name_in_one_batch_gets_unique_outputs(tmp_path, capsys, tiny_model_dir):
    """Item 1: phantom and MICCAI layouts repeat the file name; one output held the last case."""
    inputs = flair_files(tmp_path, "case0000/flair.nii.gz", "case0001/flair.nii.gz", "Utrecht/0/pre/FLAIR.nii.gz",
                         "Singapore/0/pre/FLAIR.nii.gz", "other.nii.gz")
    out = tmp_path / "out"
    code, err = run_cli(segment_args(inputs, out, tiny_model_dir, "--summary", out / "all.json"), capsys)
    assert code == 0, err
    rows = json.loads((out / "all.json").read_text())
    assert [Path(r["segmentation"]).name for r in rows] == [
        "case0000_flair.seg.nrrd", "case0001_flair.seg.nrrd", "Utrecht_0_pre_FLAIR.seg.nrrd",
        "Singapore_0_pre_FLAIR.seg.nrrd", "other.seg.nrrd"]
    assert [r["input"] for r in rows] == [str(p) for p in inputs]


def test_an_input_listed_twice_is_refused_before_running(tmp_path, capsys, tiny_model_dir):
    (flair,) = flair_files(tmp_path, "a/flair.nii.gz")
    code, err = run_cli(segment_args([flair, tmp_path / "in" / "a" / ".." / "a" / "flair.nii.gz"],
                                     tmp_path / "out", tiny_model_dir), capsys)
    assert code == 2 and "listed twice" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_summary_path_clashing_with_a_case_summary_is_refused_before_writing(tmp_path, capsys, tiny_model_dir):
    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    out = tmp_path / "out"
    code, err = run_cli(segment_args([flair], out, tiny_model_dir, "--summary", out / "flair.summary.json"), capsys)
    assert code == 2 and "per-case output" in one_error_line(err)
    assert all_files(out) == []


def test_second_run_into_a_busy_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys,
                                                                                     tiny_model_dir):
    """Item 2: two runs into one folder both exited 0, one replacing the other's outputs."""
    import socket
    import subprocess
    import sys

    from deepwml.output_folder import LOCK_NAME

    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(json.dumps({"pid": __import__("os").getpid(), "host": socket.gethostname(),
                                "command": "deepwml segment", "started": "now"}))
    code, err = run_cli(segment_args([flair], out, tiny_model_dir), capsys)
    assert code == 2 and "in use by 'deepwml segment'" in one_error_line(err)
    assert all_files(out) == [LOCK_NAME]
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(ended.stdout), "host": socket.gethostname()}))
    code, err = run_cli(segment_args([flair], out, tiny_model_dir), capsys)
    assert code == 0 and all_files(out) == ["flair.seg.nrrd", "flair.summary.json"]


def test_unwritable_output_folder_is_refused_before_inference(tmp_path, capsys, tiny_model_dir, monkeypatch):
    """Item 13: a read-only folder was noticed only after inference, with a traceback (tested by
    refusing the probe file: the tests may run as root, who can write anywhere)."""
    import deepwml.output_folder as output_folder

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(output_folder.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(Segmenter, "segment", lambda *a, **k: pytest.fail("inference ran"))
    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    code, err = run_cli(segment_args([flair], tmp_path / "out", tiny_model_dir), capsys)
    assert code == 2 and "cannot be written (Permission denied)" in one_error_line(err)


def test_output_naming_an_existing_file_is_one_line(tmp_path, capsys, tiny_model_dir):
    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    (tmp_path / "afile").write_text("user data")
    code, err = run_cli(segment_args([flair], tmp_path / "afile", tiny_model_dir), capsys)
    assert code == 2 and "is a file, not a folder" in one_error_line(err)
    assert (tmp_path / "afile").read_text() == "user data"


def test_silently_truncated_write_is_never_published(tmp_path, capsys, tiny_model_dir, monkeypatch):
    """Item 3: SimpleITK's gzip writer did not report a full disk; the truncated file was renamed
    into place. Now it is verified first and the case's outputs are published all or none."""
    real_write = sitk.WriteImage

    def write_then_lose_the_end(image, path, *args):
        real_write(image, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[:len(data) // 2])

    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    monkeypatch.setattr(sitk, "WriteImage", write_then_lose_the_end)
    out = tmp_path / "out"
    code, err = run_cli(segment_args([flair], out, tiny_model_dir, "--probabilities"), capsys)
    line = one_error_line(err)
    assert code == 2 and "flair_probabilities.nii.gz" in line and "not written completely" in line
    assert all_files(out) == []  # no segmentation without its map, no temporaries, no lock


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, tiny_model_dir, monkeypatch):
    import errno

    import slicerio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(slicerio, "write_segmentation", full)
    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    out = tmp_path / "out"
    code, err = run_cli(segment_args([flair], out, tiny_model_dir), capsys)
    line = one_error_line(err)
    assert code == 2 and "flair.seg.nrrd" in line and "No space left on device" in line
    assert all_files(out) == []


def test_sigterm_removes_temporary_files_and_the_lock(tmp_path, tiny_model_dir):
    """Item 3: a kill during writing left a hidden temporary file (no SIGTERM handler)."""
    import subprocess
    import sys

    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    out = tmp_path / "out"
    script = (
        "import os, signal, sys, SimpleITK as sitk\n"
        "real = sitk.WriteImage\n"
        "def write_and_get_killed(*a):\n"
        "    real(*a)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "sitk.WriteImage = write_and_get_killed\n"
        "from deepwml.cli import main\n"
        f"sys.exit(main(['segment', {str(flair)!r}, '-o', {str(out)!r}, '--model', {str(tiny_model_dir)!r},"
        " '--device', 'cpu', '-q', '--probabilities']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 143 and "terminated" in done.stderr, done.stderr
    assert all_files(out) == []


def test_itk_read_error_gives_the_reason_not_the_source_location(tmp_path, capsys, tiny_model_dir):
    """Item 14: the message showed only 'Exception thrown in ... sitkImageReaderBase.cxx:99:'."""
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    code, err = run_cli(segment_args([path], tmp_path / "out", tiny_model_dir), capsys)
    line = one_error_line(err)
    assert code == 2 and "Unable to determine ImageIO reader" in line and ".cxx" not in line


# -- 11, 13, 14: manifests and model files ---------------------------------------------------------

def write_manifest(tmp_path: Path, rows: list[list[str]], name: str = "manifest.csv", delimiter: str = ",",
                   bom: bool = False) -> Path:
    """A manifest over real files (two synthetic cases) with the given rows after the header."""
    for case in ("a", "b"):
        (tmp_path / case).mkdir(exist_ok=True)
        image = synthetic_flair(seed=ord(case))
        sitk.WriteImage(image, str(tmp_path / case / "flair.nii.gz"))
        sitk.WriteImage(sitk.Cast(image > 800, sitk.sitkUInt8), str(tmp_path / case / "label.nii.gz"))
    text = "\n".join(delimiter.join(row) for row in rows) + "\n"
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8"))
    return path


HEADER = ["case", "center", "disease", "flair", "label"]
ROW_A = ["a", "c1", "MS", "a/flair.nii.gz", "a/label.nii.gz"]
ROW_B = ["b", "c1", "MS", "b/flair.nii.gz", "b/label.nii.gz"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_excel_manifests_with_bom_and_semicolons_are_read(delimiter, tmp_path):
    from deepwml.training.manifest import read_manifest

    path = write_manifest(tmp_path, [HEADER, ROW_A, ROW_B], delimiter=delimiter, bom=True)
    cases = read_manifest(path)
    assert [c.case for c in cases] == ["a", "b"] and cases[1].label == tmp_path / "b" / "label.nii.gz"


@pytest.mark.parametrize("rows, problem", [
    ([HEADER[:-1], ROW_A[:-1], ROW_B[:-1]], "has no 'label' column"),
    ([HEADER, ROW_A, ROW_B[:-1] + [""]], "line 3: empty 'label' cell"),
    ([HEADER, ROW_A, ["a"] + ROW_B[1:]], "case ID 'a' appears twice (lines 2 and 3)"),
])
def test_bad_manifests_are_one_line_before_any_work(rows, problem, tmp_path, capsys, tiny_model_dir):
    """Item 13 (no label column, empty cell: tracebacks) and item 11 (a repeated case ID paired
    one case's FLAIR with another case's mask)."""
    manifest = write_manifest(tmp_path, rows)
    for command in (["evaluate", manifest, "-o", tmp_path / "ev", "--model", tiny_model_dir, "--device", "cpu"],
                    ["train", manifest, "-o", tmp_path / "run", "--epochs", "1", "--device", "cpu"]):
        code, err = run_cli(command, capsys)
        line = one_error_line(err)
        assert code == 2 and str(manifest) in line and problem in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_trained_weights_are_as_readable_as_the_other_outputs(tmp_path):
    """Item 14: model.safetensors was written 0600 (its writer replaces the temporary file)."""
    import os

    from deepwml.model_files import ModelCard, save_model
    from deepwml.unet import UNet2D, UNetConfig

    net = UNet2D(UNetConfig(base_channels=4))
    save_model(net, ModelCard("t", "0", net.config), tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"model.safetensors": 0o666 & ~umask, "model.json": 0o666 & ~umask}


# -- 4, 5, 6, 13: training runs --------------------------------------------------------------------

TINY_RUN = dict(base_channels=4, batch_size=2, crop=64, max_steps_per_epoch=2, val_slices=4, lr=1e-3,
                device="cpu", epochs=1)


@pytest.fixture()
def small_manifest(tmp_path) -> Path:
    """Six synthetic cases of one center and disease: enough for a train/val/test split."""
    rows = [["case", "center", "disease", "flair", "label"]]
    for i in range(6):
        folder = tmp_path / "data" / f"c{i}"
        folder.mkdir(parents=True)
        image = synthetic_flair(seed=i)
        sitk.WriteImage(image, str(folder / "flair.nii.gz"))
        sitk.WriteImage(sitk.Cast(image > 800, sitk.sitkUInt8), str(folder / "label.nii.gz"))
        rows.append([f"c{i}", "A", "MS", f"c{i}/flair.nii.gz", f"c{i}/label.nii.gz"])
    path = tmp_path / "data" / "manifest.csv"
    path.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    return path


def train_tiny(manifest: Path, run: Path, resume: bool = True, **changes) -> Path:
    from deepwml.training.trainer import TrainConfig, train

    return train(manifest, run, TrainConfig(**{**TINY_RUN, **changes}), resume=resume, progress=False)


def test_resume_with_other_run_settings_is_refused(small_manifest, tmp_path):
    """Item 6: resume accepted a changed crop, augmentation or steps per epoch."""
    from deepwml.errors import DeepWMLError

    run = tmp_path / "run"
    train_tiny(small_manifest, run)
    for change in ({"crop": 32}, {"augment_intensity": True}, {"max_steps_per_epoch": 3}, {"val_slices": 2},
                   {"seed": 1}, {"batch_size": 4}):
        with pytest.raises(DeepWMLError, match=f"other settings \\({next(iter(change))} "):
            train_tiny(small_manifest, run, epochs=2, **change)


def test_resume_keeps_the_first_settings_and_logs_each_session(small_manifest, tmp_path):
    """Item 6: train_config.json was overwritten, losing the first epochs' settings."""
    run = tmp_path / "run"
    train_tiny(small_manifest, run)
    train_tiny(small_manifest, run, epochs=2, lr=1e-4)
    record = json.loads((run / "train_config.json").read_text())
    assert record["config"]["lr"] == 1e-3 and record["config"]["crop"] == 64
    assert [(s["from_epoch"], s["lr"]) for s in record["sessions"]] == [(0, 1e-3), (1, 1e-4)]
    assert set(record["data_sha256"]) == {f"c{i}" for i in range(6)}


def test_resume_on_other_images_under_the_same_case_ids_is_refused(small_manifest, tmp_path):
    from deepwml.errors import DeepWMLError

    run = tmp_path / "run"
    train_tiny(small_manifest, run)
    sitk.WriteImage(synthetic_flair(seed=99), str(small_manifest.parent / "c3" / "flair.nii.gz"))
    with pytest.raises(DeepWMLError, match="other images or labels under the same case IDs: c3"):
        train_tiny(small_manifest, run, epochs=2)


def test_restart_keeps_the_previous_best_model(small_manifest, tmp_path):
    """Item 4: --restart overwrote RUN/model (the previous best model) after one epoch."""
    from deepwml.model_files import sha256_of

    run = tmp_path / "run"
    train_tiny(small_manifest, run)
    best = sha256_of(run / "model" / "model.safetensors")
    train_tiny(small_manifest, run, resume=False, seed=5)
    (kept,) = run.glob("model.before-restart-*")
    assert sha256_of(kept / "model.safetensors") == best
    assert list(run.glob("checkpoint.before-restart-*.pt")) and list(run.glob("train_config.before-restart-*.json"))
    assert json.loads((run / "train_config.json").read_text())["config"]["seed"] == 5


def test_a_model_without_checkpoint_is_not_overwritten(small_manifest, tmp_path):
    from deepwml.errors import DeepWMLError

    run = tmp_path / "run"
    train_tiny(small_manifest, run)
    (run / "checkpoint.pt").unlink()
    with pytest.raises(DeepWMLError, match="holds a model but the folder has no checkpoint"):
        train_tiny(small_manifest, run)


class _Hostile:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", ["garbage", "truncated", "hostile"])
def test_bad_checkpoints_are_refused_in_one_line(content, small_manifest, tmp_path, capsys):
    """Item 13: malicious or truncated checkpoints were refused safely, but as a traceback."""
    import torch

    run = tmp_path / "run"
    train_tiny(small_manifest, run)
    ckpt = run / "checkpoint.pt"
    if content == "garbage":
        ckpt.write_bytes(b"not a checkpoint")
    elif content == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    else:
        torch.save({"model": _Hostile(), "optimizer": {}, "epoch": 1}, ckpt)
    capsys.readouterr()
    code, err = run_cli(["train", small_manifest, "-o", run, "--epochs", "2", "--base-channels", "4",
                         "--batch-size", "2", "--crop", "64", "--steps-per-epoch", "2", "--val-slices", "4",
                         "--lr", "1e-3", "--device", "cpu", "-q"], capsys)
    line = one_error_line(err)
    assert code == 2 and str(ckpt) in line and "--restart" in line
    assert "this must never run" not in capsys.readouterr().out


def test_second_training_into_the_same_folder_is_refused(small_manifest, tmp_path):
    """Item 5: two train runs into one folder both exited 0 with interleaved logs."""
    import os
    import socket

    from deepwml.output_folder import LOCK_NAME, OutputFolderError

    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                             "command": "deepwml train"}))
    with pytest.raises(OutputFolderError, match="in use by 'deepwml train'"):
        train_tiny(small_manifest, run)


# -- 12: what runs is what the summary says --------------------------------------------------------

@pytest.fixture()
def model_with_onnx(tiny_model_dir, tmp_path) -> Path:
    from deepwml.onnx_backend import export_onnx

    model = copy_model(tiny_model_dir, tmp_path)
    export_onnx(load_model(model))
    return model


def _swap_in_another_models_graph(model_dir: Path, other_dir: Path) -> None:
    """Put the ONNX graph of another model (saved and exported in ``other_dir``) into ``model_dir``,
    its hash written into the card: what the card's SHA-256 alone cannot catch."""
    import torch

    from deepwml.model_files import ModelCard, save_model, sha256_of
    from deepwml.onnx_backend import export_onnx
    from deepwml.unet import UNet2D, UNetConfig

    torch.manual_seed(1)
    other = UNet2D(UNetConfig(base_channels=4))
    save_model(other, ModelCard("other", "0", other.config), other_dir)
    swapped = export_onnx(load_model(other_dir))
    (model_dir / "model.onnx").write_bytes(swapped.read_bytes())
    edit_card(model_dir, lambda card: card["onnx"].update(sha256=sha256_of(swapped)))


def test_swapped_onnx_graph_with_updated_hash_is_refused(model_with_onnx, tmp_path, caplog):
    """A model.onnx of other weights, its hash put into the card, ran silently (5,798 ml)."""
    _swap_in_another_models_graph(model_with_onnx, tmp_path / "other")
    with pytest.raises(ModelFileError, match="does not reproduce the model's safetensors weights"):
        Segmenter(str(model_with_onnx), device="cpu", backend="onnx")
    segmenter = Segmenter(str(model_with_onnx), device="cpu", backend="auto")
    assert segmenter.backend == "torch" and segmenter.ran_file["file"] == "model.safetensors"
    assert any("does not reproduce" in r.getMessage() for r in caplog.records)


def test_a_verified_graph_is_checked_once_and_a_swap_still_refused(model_with_onnx, tmp_path, monkeypatch):
    """The probe check of an ONNX graph against its weights is remembered per user for these
    very files (deepwml.verified_graphs, the cold start): a second load does not run it; a
    graph swapped afterwards (its hash put into the card) is checked and refused; where the
    record cannot be written, every load checks."""
    import deepwml.segmenter as segmenter_module

    monkeypatch.setenv("DEEPWML_CACHE_DIR", str(tmp_path / "cache"))
    ran = []
    check = segmenter_module.check_reproduces_weights

    def counting(*args, **kwargs):
        ran.append(1)
        return check(*args, **kwargs)

    monkeypatch.setattr(segmenter_module, "check_reproduces_weights", counting)
    for _ in range(2):  # the lesion model's graph alone (the white-matter model's is verified the same way)
        assert Segmenter(str(model_with_onnx), device="cpu", backend="onnx", brain_model=None,
                         white_matter_model=None).backend == "onnx"
    assert len(ran) == 1 and (tmp_path / "cache" / "verified-onnx-graphs.json").exists()
    _swap_in_another_models_graph(model_with_onnx, tmp_path / "other")
    with pytest.raises(ModelFileError, match="does not reproduce the model's safetensors weights"):
        Segmenter(str(model_with_onnx), device="cpu", backend="onnx", brain_model=None, white_matter_model=None)
    assert len(ran) == 2
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setenv("DEEPWML_CACHE_DIR", str(tmp_path / "blocked"))
    for _ in range(2):
        Segmenter(str(tmp_path / "other"), device="cpu", backend="onnx", brain_model=None, white_matter_model=None)
    assert len(ran) == 4


@pytest.mark.parametrize("backend, ran", [("onnx", "model.onnx"), ("torch", "model.safetensors")])
def test_summary_names_the_file_that_ran(backend, ran, model_with_onnx, tmp_path, capsys):
    from deepwml.model_files import sha256_of

    (flair,) = flair_files(tmp_path, "flair.nii.gz")
    out = tmp_path / "out"
    assert run_cli(segment_args([flair], out, model_with_onnx, "--backend", backend), capsys)[0] == 0
    summary = json.loads((out / "flair.summary.json").read_text())
    assert summary["backend"] == backend
    assert summary["model"]["ran"] == {"file": ran, "sha256": sha256_of(model_with_onnx / ran)}


@pytest.mark.parametrize("key", ["weights_file", "onnx"])
def test_card_cannot_name_files_outside_the_model_folder(key, model_with_onnx):
    def escape(card):
        if key == "weights_file":
            card["weights_file"] = "../../../../etc/passwd"
        else:
            card["onnx"]["file"] = "../elsewhere/model.onnx"
    edit_card(model_with_onnx, escape)
    with pytest.raises(ModelFileError, match="outside the model folder"):
        Segmenter(str(model_with_onnx), device="cpu", backend="onnx")


# -- 5: consensus, evaluate and phantom never replace files they did not write ---------------------

@pytest.fixture()
def rater_manifest(tmp_path) -> Path:
    """Three cases whose raters disagree (Dice about 0.67), with a label column for evaluate."""
    rows = ["case,center,disease,flair,label,rater1,rater2"]
    for i in range(3):
        folder = tmp_path / "data" / f"r{i}"
        folder.mkdir(parents=True)
        image = synthetic_flair(seed=i)
        sitk.WriteImage(image, str(folder / "flair.nii.gz"))
        r1 = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
        r2 = r1.copy()
        r1[4:8, 10:20, 10:30] = 1
        r2[4:8, 10:20, 20:40] = 1
        for name, arr in (("rater1", r1), ("rater2", r2), ("label", r1)):
            label = sitk.GetImageFromArray(arr)
            label.CopyInformation(image)
            sitk.WriteImage(label, str(folder / f"{name}.nii.gz"))
        rows.append(f"r{i},A,MS,r{i}/flair.nii.gz,r{i}/label.nii.gz,r{i}/rater1.nii.gz,r{i}/rater2.nii.gz")
    path = tmp_path / "data" / "manifest.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["consensus", "evaluate", "phantom"])
def test_user_files_in_the_output_folder_are_never_replaced(command, rater_manifest, tmp_path, capsys,
                                                           tiny_model_dir):
    """consensus/evaluate checked only their HTML; phantom replaced case0000/flair.nii.gz."""
    out = tmp_path / "out"
    mine = out / {"consensus": "consensus.csv", "evaluate": "per_slice.csv",
                  "phantom": "case0000/flair.nii.gz"}[command]
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own file")
    args = {"consensus": ["consensus", rater_manifest, "-o", out],
            "evaluate": ["evaluate", rater_manifest, "-o", out, "--model", tiny_model_dir, "--device", "cpu"],
            "phantom": ["phantom", out, "--cases", "1"]}[command]
    code, err = run_cli([*args, "-q"], capsys)
    assert code == 2 and "is not empty" in one_error_line(err)
    assert mine.read_text() == "the user's own file"


def test_consensus_rerun_leaves_no_stale_ground_truth(rater_manifest, tmp_path, capsys):
    """A --overwrite rerun kept consensus_manifest.csv listing cases it now sends back."""
    out = tmp_path / "out"
    assert run_cli(["consensus", rater_manifest, "-o", out, "--min-dice", "0.5", "-q"], capsys)[0] == 0
    assert (out / "consensus_manifest.csv").exists() and len(list((out / "labels").iterdir())) == 3
    assert run_cli(["consensus", rater_manifest, "-o", out, "--min-dice", "0.9", "--overwrite", "-q"],
                   capsys)[0] == 0
    assert not (out / "consensus_manifest.csv").exists() and not list((out / "labels").iterdir())
    assert len((out / "relabel.csv").read_text().splitlines()) == 4


# -- 9: DICOM folders --------------------------------------------------------------------------------

def write_dicom_series(folder: Path, uid: str, description: str, slices: int, skip: tuple[int, ...] = ()) -> None:
    """A synthetic MR series (int16) with positions, orientation and a series description."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(synthetic_flair(size=(40, 32, slices), spacing=(0.8, 0.8, 6.0)), sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(slices):
        if k in skip:
            continue
        s = image[:, :, k]
        for tag, value in {"0020|000e": uid, "0008|103e": description, "0008|0060": "MR",
                           "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(k), "0018|0050": "6.0"}.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-3:]}-{k:03d}.dcm"))
        writer.Execute(s)


FLAIR_UID = "1.2.826.0.1.3680043.2.1125.1.101"
T1_UID = "1.2.826.0.1.3680043.2.1125.1.102"


def test_dicom_folder_with_a_larger_other_series_segments_the_flair(tmp_path):
    """The largest series was chosen: a T1 next to the FLAIR was segmented (0 ml, exit 0)."""
    write_dicom_series(tmp_path / "study", FLAIR_UID, "AX T2 FLAIR", 5)
    write_dicom_series(tmp_path / "study", T1_UID, "AX T1 SE", 9)
    assert load_flair(tmp_path / "study").GetSize()[2] == 5


def test_dicom_folder_without_a_recognisable_flair_is_refused_with_the_series_list(tmp_path, capsys,
                                                                                  tiny_model_dir):
    write_dicom_series(tmp_path / "study", FLAIR_UID, "AX T2 IR 2500", 5)
    write_dicom_series(tmp_path / "study", T1_UID, "AX T1 SE", 9)
    code, err = run_cli(segment_args([tmp_path / "study"], tmp_path / "out", tiny_model_dir), capsys)
    line = one_error_line(err)
    assert code == 2 and FLAIR_UID in line and T1_UID in line and "--series" in line
    code, err = run_cli(segment_args([tmp_path / "study"], tmp_path / "out", tiny_model_dir,
                                     "--series", FLAIR_UID), capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "study.summary.json").read_text())["size"][2] == 5


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path, capsys, tiny_model_dir):
    """A missing slice was read onto a stretched grid (Dice 0.87 -> 0.26)."""
    write_dicom_series(tmp_path / "study", FLAIR_UID, "AX FLAIR", 7, skip=(3,))
    code, err = run_cli(segment_args([tmp_path / "study"], tmp_path / "out", tiny_model_dir), capsys)
    line = one_error_line(err)
    assert code == 2 and "not evenly spaced" in line and "12.00 mm between slices 3 and 4" in line


@pytest.mark.parametrize("command", ["train", "consensus", "evaluate", "phantom"])
def test_output_naming_a_file_is_one_line_for_every_command(command, rater_manifest, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("user data")
    args = {"train": ["train", rater_manifest, "-o", target], "consensus": ["consensus", rater_manifest, "-o", target],
            "evaluate": ["evaluate", rater_manifest, "-o", target], "phantom": ["phantom", target]}[command]
    code, err = run_cli([*args, "-q"], capsys)
    assert code == 2 and "is a file, not a folder" in one_error_line(err)
    assert target.read_text() == "user data"
