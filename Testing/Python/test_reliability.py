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
                                     ["phantom", "p", "--cases", "0"]])
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
