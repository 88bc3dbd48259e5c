"""Training pipeline: splits, a tiny CPU run, resume, restart safety, DDP on gloo."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from deepwml.errors import DeepWMLError
from deepwml.model_files import load_model
from deepwml.training.manifest import Case, read_manifest
from deepwml.training.split import cases_in, make_split
from deepwml.training.trainer import TrainConfig, train

TINY = dict(base_channels=4, batch_size=2, crop=64, max_steps_per_epoch=6, val_slices=8, lr=1e-3,
            device="cpu")


def fake_cases(per_stratum: dict[tuple[str, str], int], slices_per_patient: int = 1) -> list[Case]:
    cases = []
    for (center, disease), n in per_stratum.items():
        for p in range(n):
            for s in range(slices_per_patient):
                name = f"{center}-{disease}-{p}-{s}"
                cases.append(Case(name, f"{center}-{disease}-{p}", center, disease, Path(name)))
    return cases


def test_patient_split_is_stratified_60_20_20_and_never_shares_a_patient():
    cases = fake_cases({("A", "MS"): 10, ("A", "NMOSD"): 5, ("B", "CSVD"): 20, ("C", "MS"): 2,
                        ("D", "MS"): 1}, slices_per_patient=2)
    split = make_split(cases, seed=3)
    per_patient = {}
    for c in cases:
        per_patient.setdefault(c.patient, set()).add(split["assignment"][c.case])
    assert all(len(s) == 1 for s in per_patient.values()), "a patient is in two splits"
    for key, n in {("A", "MS"): 10, ("A", "NMOSD"): 5, ("B", "CSVD"): 20}.items():
        counts = Counter(split["assignment"][c.case] for c in cases if c.stratum == key and c.case.endswith("-0"))
        assert counts["train"] == round(n * 0.6) or counts["train"] == n - 2 * max(1, round(n * 0.2))
        assert counts["val"] >= 1 and counts["test"] >= 1
    assert len(cases_in(split, cases, "val")) > 0
    assert make_split(cases, seed=3) == split  # deterministic


def test_image_level_split_can_put_one_patient_in_several_splits():
    cases = fake_cases({("A", "MS"): 4})
    split = make_split(cases, seed=0, level="image", slices_per_case={c.case: 20 for c in cases})
    values = split["assignment"]
    assert any(len(set(v)) > 1 for v in values.values())
    flat = Counter(s for v in values.values() for s in v)
    assert flat["train"] == 48 and flat["val"] == 16 and flat["test"] == 16


def read_log(run: Path) -> list[dict]:
    with open(run / "training_log.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_tiny_training_lowers_loss_writes_a_loadable_model_and_resumes(phantom_set, tmp_path):
    run = tmp_path / "run"
    model_dir = train(phantom_set, run, TrainConfig(epochs=1, **TINY), progress=False)
    model = load_model(model_dir)
    assert model.card["training"]["manifest_sha256"]
    assert model.card["provenance"]["git_commit"]
    assert (run / "training_curves.png").stat().st_size > 1000
    assert (run / "split.json").exists()
    # resume: only epoch 2 runs, and the loss keeps going down
    train(phantom_set, run, TrainConfig(epochs=2, **TINY), progress=False)
    log = read_log(run)
    assert [r["epoch"] for r in log] == ["1", "2"]
    assert float(log[1]["train_loss"]) < float(log[0]["train_loss"])
    # changed settings are refused, not silently mixed
    with pytest.raises(DeepWMLError, match=r"other settings \(base_channels 4 -> 8"):
        train(phantom_set, run, TrainConfig(epochs=3, **{**TINY, "base_channels": 8}), progress=False)
    # restart keeps the previous checkpoint
    train(phantom_set, run, TrainConfig(epochs=1, **TINY), resume=False, progress=False)
    assert list(run.glob("checkpoint.before-restart-*.pt"))


def test_a_time_limit_stops_after_the_epoch_that_passes_it_and_may_change_on_resume(phantom_set, tmp_path):
    """--max-minutes: a GPU lease's time box. The epoch in progress finishes (its checkpoint and
    log row are written); resuming with another limit (or none) continues the same run."""
    run = tmp_path / "run"
    train(phantom_set, run, TrainConfig(epochs=3, max_minutes=1e-6, **TINY), progress=False)
    assert [r["epoch"] for r in read_log(run)] == ["1"]
    assert (run / "model" / "model.json").exists()
    assert load_model(run / "model").card["training"]["config"]["max_minutes"] == 1e-6
    train(phantom_set, run, TrainConfig(epochs=2, **TINY), progress=False)
    assert [r["epoch"] for r in read_log(run)] == ["1", "2"]


def test_bf16_training_on_the_cpu_keeps_a_float32_model_and_may_change_on_resume(phantom_set, tmp_path):
    """--precision bf16 (the fast CPU recipe on AVX512-BF16 hosts): autocast only inside the step;
    weights and the saved model stay float32, the card records what ran, and a resume in float32
    is allowed (precision, like the device, is not part of what defines the run)."""
    from deepwml.training.trainer import training_autocast

    assert training_autocast("auto", torch.device("cpu")) is None
    assert training_autocast("auto", torch.device("cuda")) is torch.bfloat16
    assert training_autocast("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ValueError, match="fp8"):
        training_autocast("fp8", torch.device("cpu"))
    run = tmp_path / "run"
    model_dir = train(phantom_set, run, TrainConfig(epochs=1, **TINY, precision="bf16"), progress=False)
    model = load_model(model_dir)
    assert model.card["training"]["config"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    train(phantom_set, run, TrainConfig(epochs=2, **TINY, precision="float32"), progress=False)
    assert [np.isfinite(float(r["train_loss"])) for r in read_log(run)] == [True, True]


def test_split_is_reused_and_patients_never_leak(phantom_set, tmp_path):
    run = tmp_path / "run"
    train(phantom_set, run, TrainConfig(epochs=1, **TINY), progress=False)
    first = (run / "split.json").read_text(encoding="utf-8")
    train(phantom_set, run, TrainConfig(epochs=2, **TINY), progress=False)
    assert (run / "split.json").read_text(encoding="utf-8") == first


def test_miccai_wmh_folder_is_read_as_a_manifest(tmp_path):
    for site, subject in [("Utrecht", "0"), ("Singapore", "50")]:
        folder = tmp_path / site / subject
        (folder / "pre").mkdir(parents=True)
        img = sitk.GetImageFromArray(np.ones((4, 8, 8), np.float32))
        sitk.WriteImage(img, str(folder / "pre" / "FLAIR.nii.gz"))
        lab = np.zeros((4, 8, 8), np.uint8)
        lab[1, 2, 2], lab[2, 3, 3] = 1, 2
        sitk.WriteImage(sitk.GetImageFromArray(lab), str(folder / "wmh.nii.gz"))
    cases = read_manifest(tmp_path)
    assert {c.center for c in cases} == {"Utrecht", "Singapore"}
    from deepwml.training.dataset import read_label

    ref = sitk.ReadImage(str(cases[0].flair))
    assert read_label(cases[0].label, ref, cases[0].label_value).sum() == 1  # class 2 is not WMH


@pytest.mark.slow
def test_ddp_training_with_gloo_on_two_cpu_processes(phantom_set, tmp_path):
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "deepwml.cli", "train", str(phantom_set), "-o", str(run), "--epochs", "1",
           "--base-channels", "4", "--batch-size", "2", "--crop", "64", "--steps-per-epoch", "3",
           "--val-slices", "8", "--device", "cpu", "-q"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    model = load_model(run / "model")
    assert model.card["training"]["world_size"] == 2
    assert len(read_log(run)) == 1


def test_fine_tuning_starts_from_the_given_model_and_records_it(phantom_set, tiny_model_dir, tmp_path):
    """``--init`` loads the model through the checked loader, keeps its width and says so."""
    start = load_model(tiny_model_dir)
    config = TrainConfig(epochs=1, **{**TINY, "base_channels": 8, "lr": 1e-6}, init=str(tiny_model_dir))
    model = load_model(train(phantom_set, tmp_path / "ft", config, progress=False))
    assert model.network.config.base_channels == 4
    assert model.card["training"]["initialised_from"]["weights_sha256"] == start.card["weights_sha256"]
    # a tiny learning rate keeps the weights close to where they started (not re-initialised)
    a, b = start.network.state_dict(), model.network.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-3


def test_a_fine_tune_reads_its_output_as_its_parent_does(phantom_set, tiny_model_dir, tmp_path):
    """A fine-tune inherits its parent's threshold and contrast floor (the bundled model's keep its marks off
    bright cortex; a site's fine-tune read at 0.5 with no floor would mark it again), says where they came from,
    and keeps them when resumed after another model was put at ``--init``'s path. A model trained from random
    weights still gets 0.5 and no floor."""
    import shutil

    from deepwml.contrast_floor import ContrastFloor, card_contrast_floor
    from deepwml.model_files import read_card, write_card

    parent = tmp_path / "parent"
    shutil.copytree(tiny_model_dir, parent)
    card, card_path = read_card(parent)
    floor = {"factor": 1.2, "mode": "voxel", "level": "flat-in-envelope", "min_load_ml": 20.0, "chosen": "a test"}
    write_card({**card, "threshold": 0.65, "contrast_floor": floor}, card_path)
    parent_id = load_model(parent).model_id
    run = tmp_path / "ft"
    train(phantom_set, run, TrainConfig(epochs=1, **{**TINY, "lr": 1e-6}, init=str(parent)), progress=False)
    model = load_model(run / "model")
    assert model.threshold == 0.65
    assert model.card["contrast_floor"] == {**floor, "inherited_from": parent_id}
    assert card_contrast_floor(model) == ContrastFloor(1.2, "voxel", "flat-in-envelope", 20.0)
    assert model.card["metrics"]["threshold_selection"]["inherited_from"] == parent_id
    assert model.card["training"]["initialised_from"]["threshold"] == 0.65

    write_card({**card, "threshold": 0.3}, card_path)  # the parent's path now reads otherwise: the run keeps its start
    train(phantom_set, run, TrainConfig(epochs=2, **{**TINY, "lr": 1e-6}, init=str(parent)), progress=False)
    resumed = load_model(run / "model")
    assert resumed.threshold == 0.65 and resumed.card["contrast_floor"]["factor"] == 1.2

    scratch = load_model(train(phantom_set, tmp_path / "scratch", TrainConfig(epochs=1, **TINY), progress=False))
    assert scratch.threshold == 0.5 and "contrast_floor" not in scratch.card
    assert "threshold_selection" not in scratch.card["metrics"]

    from deepwml.cli import _inherited_reading_line

    assert _inherited_reading_line(run / "model") == (f"reads its output as {parent_id} does: threshold 0.65, contrast "
                                                      "floor 1.2x (flat-in-envelope)")
    assert _inherited_reading_line(tmp_path / "scratch" / "model") is None


def test_a_resumed_fine_tune_keeps_the_model_it_started_from(phantom_set, tiny_model_dir, tmp_path):
    """``--init`` is a path; when another model is put there between sessions (the bundled model
    replaced by its own fine-tune), the resumed run still names the weights it started from."""
    import shutil

    from deepwml.model_files import ModelCard, save_model
    from deepwml.unet import UNet2D, UNetConfig

    init = tmp_path / "init"
    shutil.copytree(tiny_model_dir, init)
    first = load_model(init).card["weights_sha256"]
    run = tmp_path / "ft"
    config = TrainConfig(epochs=1, **{**TINY, "lr": 1e-6}, init=str(init))
    train(phantom_set, run, config, progress=False)
    shutil.rmtree(init)
    torch.manual_seed(7)
    other = UNet2D(UNetConfig(base_channels=4))
    save_model(other, ModelCard("other", "9.9.9", other.config), init)  # another model at the same path
    assert load_model(init).card["weights_sha256"] != first
    train(phantom_set, run, TrainConfig(epochs=2, **{**TINY, "lr": 1e-6}, init=str(init)), progress=False)
    record = json.loads((run / "train_config.json").read_text())
    assert record["initialised_from"]["weights_sha256"] == first and len(record["sessions"]) == 2
    assert load_model(run / "model").card["training"]["initialised_from"]["weights_sha256"] == first
    # the checkpoint holds the weights: a resume does not read --init's path, even when it is gone
    shutil.rmtree(init)
    train(phantom_set, run, TrainConfig(epochs=3, **{**TINY, "lr": 1e-6}, init=str(init)), progress=False)
    record = json.loads((run / "train_config.json").read_text())
    assert record["initialised_from"]["weights_sha256"] == first and len(record["sessions"]) == 3


def _augmented(images, labels, seed: int):
    from deepwml.training.augment import flip_rotate, intensity, random_crop

    gen = torch.Generator().manual_seed(seed)
    x, y = flip_rotate(images, labels, gen)
    x = intensity(x, gen)
    return random_crop(x, y, 96, gen)


def test_augmentation_is_seeded_and_keeps_labels_with_their_image():
    torch.manual_seed(0)
    images = torch.rand(6, 1, 128, 128)
    labels = (images > 0.97).float()
    x1, y1 = _augmented(images, labels, 3)
    x2, y2 = _augmented(images, labels, 3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.shape == (6, 1, 96, 96)
    x3, _ = _augmented(images, labels, 4)
    assert not torch.equal(x1, x3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU augmentation not checked here")
def test_augmentation_on_the_gpu_draws_as_on_the_cpu():
    """The trainer augments on the network's device; the draws come from a CPU generator, so a
    GPU batch gets the same flips, angles, gamma, blur and crop as on the CPU."""
    torch.manual_seed(0)
    images = torch.rand(6, 1, 128, 128)
    labels = (images > 0.97).float()
    cpu_x, cpu_y = _augmented(images, labels, 3)
    gpu_x, gpu_y = _augmented(images.cuda(), labels.cuda(), 3)
    assert gpu_x.is_cuda and gpu_y.is_cuda
    assert torch.allclose(cpu_x, gpu_x.cpu(), atol=1e-4) and torch.allclose(cpu_y, gpu_y.cpu(), atol=1e-4)


def test_a_mix_copied_elsewhere_still_names_its_files(phantom_set, tmp_path):
    """The mix scripts copy rows of manifests whose paths are relative to their own folder
    (deepwml synth, deepwml phantom): the copies are made absolute, so the merged mix reads."""
    from deepwml.training.manifest import PATH_COLUMNS, rows_with_absolute_paths

    columns, rows = rows_with_absolute_paths(phantom_set)
    assert "flair" in columns and rows
    relative = [row for row in csv.DictReader(open(phantom_set, newline="", encoding="utf-8"))
                if not Path(row["flair"]).is_absolute()]
    assert relative, "the phantom manifest should hold relative paths for this test to mean anything"
    for row in rows:
        assert all(Path(row[c]).is_absolute() and Path(row[c]).exists() for c in PATH_COLUMNS if row.get(c))
    merge_mixes = _load_benchmark("merge_mixes")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"assignment": {row["case"]: "train" for row in rows}}), encoding="utf-8")
    elsewhere = tmp_path / "other" / "mix.csv"
    elsewhere.parent.mkdir()
    assert merge_mixes.merge(phantom_set, split, phantom_set, split, elsewhere, tmp_path / "out.json") == len(rows)
    assert [c.flair for c in read_manifest(elsewhere)] == [c.flair.resolve() for c in read_manifest(phantom_set)]


def test_a_mix_of_one_seeds_heads_in_two_versions_keeps_each_head_in_one_split_part(tmp_path):
    """training_mix.py --same-heads: a head's v6 and v7 forms are one patient (the patient-level
    split keeps them together); --phantom-copies lists phantoms again as cases of the same patient."""
    mix = _load_benchmark("training_mix")

    def rows(version: str) -> list[dict]:
        return [{"case": f"synth{i:04d}", "patient": f"synth{i:04d}", "center": "synthetic", "disease": "MS",
                 "flair": str(tmp_path / version / f"synth{i:04d}" / "flair.nii.gz"), "label": "x"} for i in range(6)]

    united = mix.unique_ids([rows("v6"), rows("v7")], same_heads=True)
    assert len({r["case"] for r in united}) == 12 and len({r["patient"] for r in united}) == 6
    separate = mix.unique_ids([rows("v6"), rows("v7")])
    assert len({r["patient"] for r in separate}) == 12
    cases = [Case(r["case"], r["patient"], "synthetic", "MS", Path(r["flair"]), Path(r["flair"])) for r in united]
    split = make_split(cases, seed=0, level="patient")["assignment"]
    for r in united[6:]:
        assert split[r["case"]] == split[r["case"].split("-", 1)[1]]
    phantoms = [{"case": "ph-case0001", "patient": "ph-case0001", "center": "A", "disease": "MS", "flair": "f", "label": "l"}]
    copies = mix.phantom_copies(phantoms, 3)
    assert [r["case"] for r in copies] == ["ph-case0001", "ph-case0001-x1", "ph-case0001-x2"]
    assert {r["patient"] for r in copies} == {"ph-case0001"}


def _load_benchmark(name: str):
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    if str(script.parent) not in sys.path:  # as running the script does: its siblings import each other
        sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(folder: Path, rows: list[tuple]) -> Path:
    """A ``per_volume.csv`` of (truth ml, predicted ml, Dice[, disease]) rows; the disease is "none"
    for an empty truth unless given."""
    folder.mkdir(parents=True)
    with open(folder / "per_volume.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "disease", "truth_ml", "pred_ml", "dice"])
        writer.writerows([(f"c{i}", row[3] if len(row) > 3 else "none" if row[0] == 0 else "MS", *row[:3])
                          for i, row in enumerate(rows)])
    return folder


def test_the_site_fine_tune_table_reads_each_models_two_reports(tmp_path):
    """benchmarks/site_fine_tune_table.py: the site's medians and volumes; on the heads, Dice over the heads with
    lesions drawn (a drawn head whose truth is empty on its grid included), marks on the lesion-free ones (nothing
    drawn, nothing true) and far marks over all."""
    table = _load_benchmark("site_fine_tune_table")

    def report(folder, rows):  # (disease, truth ml, predicted ml, Dice, lesion F1, far ml)
        folder.mkdir(parents=True)
        with open(folder / "per_volume.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case", "disease", "truth_ml", "pred_ml", "dice", "lesion_f1", "far_fp_ml"])
            writer.writerows([(f"c{i}", *row) for i, row in enumerate(rows)])

    report(tmp_path / "eval-m" / "site", [("CSVD", 10, 8, 0.8, 0.5, 0), ("CSVD", 20, 25, 0.6, 0.7, 1),
                                          ("MS", 2, 1, 0.1, 0.2, 0)])
    report(tmp_path / "eval-m" / "heads", [("MS", 5, 4, 0.7, 0.6, 0.5), ("MS", 0, 0.2, 0.0, 0.0, 0.2),
                                           ("none", 0, 0.3, 0.0, 0.0, 0.3), ("none", 0, 0.1, 0.0, 0.0, 0.1)])
    cells = [c.strip() for c in table.row(tmp_path, "m").strip("|").split("|")]
    assert cells == ["m", "3", "0.600", "0.500", "0.500", "34.0 of 32.0", "0.350 (2)", "0.40 (2)", "1.10"]
    assert table.main([]) == 2


def test_the_near_healthy_proxy_counts_marks_outside_the_truth(tmp_path):
    """fresh_heads_by_load.py --proxy: a head's false-positive ml is what it marks minus the true positive
    read back from its Dice (all of it on a lesion-free head, none where nothing is marked), summed and
    taken at the median head for each model on the same heads; different heads are refused."""
    rule = _load_benchmark("fresh_heads_by_load")
    # (truth ml, predicted ml, Dice): TP = Dice (t + p) / 2, so 10 ml marked with Dice 0.5 on 10 ml holds 5 ml outside
    shipped = _report(tmp_path / "s", [(10.0, 10.0, 0.5), (0.0, 2.0, 0.0), (4.0, 0.0, 0.0)])
    candidate = _report(tmp_path / "c", [(10.0, 12.0, 0.5), (0.0, 0.0, float("nan")), (4.0, 4.0, 1.0)])
    figures = {name: (a, b) for name, a, b in rule.proxy(shipped, candidate)}
    assert figures["false-positive ml in all (n 3)"] == pytest.approx((5.0 + 2.0, 6.5))
    assert figures["false-positive ml, median head"] == pytest.approx((2.0, 0.0))
    assert not any(name.startswith("ml marked > 3 mm") for name in figures)  # reports without far_fp_ml
    other = _report(tmp_path / "o", [(10.0, 10.0, 0.5)])
    with pytest.raises(SystemExit):
        rule.proxy(shipped, other)


def test_the_near_healthy_proxy_sums_the_marks_far_from_every_lesion(tmp_path):
    """fresh_heads_by_load.py --proxy reads ``deepwml evaluate``'s far_fp_ml column when both reports have it."""
    rule = _load_benchmark("fresh_heads_by_load")
    reports = []
    for name, far in (("s", (0.5, 2.0)), ("c", (0.75, 0.0))):
        folder = tmp_path / name
        folder.mkdir()
        with open(folder / "per_volume.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case", "disease", "truth_ml", "pred_ml", "dice", "far_fp_ml"])
            writer.writerows([("c0", "MS", 10.0, 10.0, 0.5, far[0]), ("c1", "none", 0.0, far[1], 0.0, far[1])])
        reports.append(folder)
    figures = {name: (a, b) for name, a, b in rule.proxy(*reports)}
    assert figures["ml marked > 3 mm from every true lesion, in all (n 2)"] == pytest.approx((2.5, 0.75))


def test_the_shipping_rule_reads_every_criterion_from_the_reports(tmp_path):
    """benchmarks/fresh_heads_by_load.py --judge: each criterion, (1) to (4b), fails on its own when,
    and only when, the candidate misses its bound; the heads are compared pairwise by name."""
    rule = _load_benchmark("fresh_heads_by_load")
    # (truth ml, predicted ml, Dice): ten medium heads, three heavy ones, three lesion-free ones
    medium, heavy, free = [(5.0, 5.0, 0.5)] * 10, [(40.0, 30.0, 0.7)] * 3, [(0.0, 1.0, 0.0), (0.0, 1.0, 0.0),
                                                                            (0.0, 10.0, 0.0)]
    shipped = [*medium, *heavy, *free]
    ptest = [(5.0, 5.0, 0.77)]
    s_wval, s_ptest = _report(tmp_path / "s", shipped), _report(tmp_path / "sp", ptest)

    def verdicts(name: str, wval: list, phantom: list = ptest) -> list[bool]:
        c_wval, c_ptest = _report(tmp_path / name, wval), _report(tmp_path / f"{name}p", phantom)
        return [v[-1] for v in rule.judge(s_wval, c_wval, s_ptest, c_ptest)]

    better = [(5.0, 5.0, 0.55)] * 10
    good_free = [(0.0, 0.9, 0.0), (0.0, 0.9, 0.0), (0.0, 9.0, 0.0)]
    assert verdicts("good", [*better, *heavy, *good_free]) == [True] * 5
    assert verdicts("guard", [*better, *heavy, *good_free], [(5.0, 5.0, 0.69)]) == [False, True, True, True, True]
    mixed = [(5.0, 5.0, 0.55), (5.0, 5.0, 0.45)] * 5  # mean gain 0: the interval holds 0
    assert verdicts("gain", [*mixed, *heavy, *good_free]) == [True, False, True, True, True]
    much_better = [(5.0, 5.0, 0.6)] * 10
    assert verdicts("heavy", [*much_better, *[(40.0, 25.0, 0.65)] * 3, *good_free]) == [True, True, False, True, True]
    most_heads_more = [(0.0, 1.1, 0.0), (0.0, 1.1, 0.0), (0.0, 5.0, 0.0)]  # less in all, more on most heads
    assert verdicts("most", [*better, *heavy, *most_heads_more]) == [True, True, True, False, True]
    one_head_much_more = [(0.0, 0.9, 0.0), (0.0, 0.9, 0.0), (0.0, 15.0, 0.0)]
    assert verdicts("total", [*better, *heavy, *one_head_much_more]) == [True, True, True, True, False]
    with pytest.raises(SystemExit, match="same heads"):
        verdicts("other", [*better, *heavy])
    # a head drawn with lesions that left none in its truth is not a lesion-free head: marks there count nowhere
    faint = (0.0, 1.0, 0.0, "MS")
    s_faint = _report(tmp_path / "sf", [*shipped, faint])
    c_faint = _report(tmp_path / "cf", [*better, *heavy, *good_free, (0.0, 30.0, 0.0, "MS")])
    assert [v[-1] for v in rule.judge(s_faint, c_faint, s_ptest, s_ptest)] == [True] * 5
    assert rule.figures(c_faint)["lesion-free heads (n 3), ml marked in all"] == pytest.approx(10.8)


def test_the_ensemble_probe_writes_reports_the_judge_reads(tmp_path, monkeypatch, capsys, validation_manifest):
    """benchmarks/ensemble_study.py: the base alone at its card threshold and the mean of the base's and a
    member's probabilities at each threshold, one evaluate-format report per configuration, read by
    fresh_heads_by_load like ``deepwml evaluate``'s."""
    import sys

    import SimpleITK as sitk

    probe = _load_benchmark("ensemble_study")
    rule = _load_benchmark("fresh_heads_by_load")
    lesion = np.zeros((6, 32, 32), np.uint8)
    lesion[2:4, 10:14, 10:14] = 1
    manifest = validation_manifest(tmp_path, {"with": lesion, "free": np.zeros_like(lesion)})

    class Stub:  # base: 0.9 on the lesion; member: 0.5 on it and 0.9 on a block beside it
        def __init__(self, folder=None):
            self.member = folder == "member"

        def segment(self, image):
            prob = np.zeros(sitk.GetArrayFromImage(image).shape, np.float32)
            prob[2:4, 10:14, 10:14] = 0.5 if self.member else 0.9
            if self.member:
                prob[2:4, 20:24, 20:24] = 0.9
            out = sitk.GetImageFromArray(prob)
            out.CopyInformation(image)
            return type("Result", (), {"probabilities": out, "threshold": 0.8})()

    monkeypatch.setattr(probe, "Segmenter", Stub)
    monkeypatch.setattr(sys, "argv", ["ensemble_study.py", str(manifest), str(tmp_path / "out"), "--base", "bundled",
                                      "--member", "m=member", "--thresholds", "0.4", "0.7", "0.8"])
    probe.main()
    heads = {name: rule.per_case(tmp_path / "out" / name) for name in ("base", "base+m@0.4", "base+m@0.7", "base+m@0.8")}
    assert heads["base"]["with"].dice == 1.0 and heads["base"]["free"].pred_ml == pytest.approx(0.064)
    # the mean is 0.7 on the lesion and 0.45 beside it
    assert heads["base+m@0.4"]["with"].dice == pytest.approx(2 / 3, abs=1e-5) and heads["base+m@0.7"]["with"].dice == 1.0
    assert heads["base+m@0.8"]["with"].dice == 0.0 and heads["base+m@0.8"]["with"].truth_ml == pytest.approx(0.064)
    assert not heads["base"]["free"].drawn and rule.lesion_free(heads["base"]["free"])
    printed = capsys.readouterr().out
    # 0.4: a third of the Dice lost on the head with lesions, twice the base's marks on the lesion-free one
    assert "base+m@0.4" in printed and "-0.3333" in printed and "0.13" in printed
    assert probe.configurations(["a", "b"], [0.5, 0.8], ["b@0.8"]) == [("b", 0.8)]


def test_regenerated_heads_keep_their_case_names_and_only_matching_folders_change(tmp_path):
    """mix_with_regenerated_heads.py: a head in a matching folder points to the same-named head of
    the new set and takes its disease; other rows (phantoms, other folders) stay; a head missing
    from the new set is refused with its name."""
    script = _load_benchmark("mix_with_regenerated_heads")

    def head_set(name: str, diseases: dict[str, str]) -> Path:
        """A ``deepwml synth``-like folder: its manifest names files relative to itself."""
        folder = tmp_path / name
        for case in diseases:
            (folder / case).mkdir(parents=True)
            for part in ("flair", "label"):
                (folder / case / f"{part}.nii.gz").write_bytes(b"")
        with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
            handle.write("case,patient,center,disease,flair,label\n" + "".join(
                f"{c},{c},synthetic,{d},{c}/flair.nii.gz,{c}/label.nii.gz\n" for c, d in diseases.items()))
        return folder

    head_set("synth-v4a", {"synth0000": "MS", "synth0001": "none"})
    new = head_set("synth-v10-s5", {"synth0000": "CSVD", "synth0001": "none"})
    rows = [{"case": c, "patient": c, "center": "synthetic", "disease": "MS",
             "flair": str(tmp_path / "synth-v4a" / c / "flair.nii.gz"), "label": "x"} for c in ("synth0000", "synth0001")]
    rows.append({"case": "ph-case0001", "patient": "ph-case0001", "center": "A", "disease": "MS",
                 "flair": str(tmp_path / "phantoms" / "case0001" / "flair.nii.gz"), "label": "y"})
    out, swapped = script.regenerated(rows, [(r"synth-v4[ab]", new)])
    assert swapped == 2 and [r["case"] for r in out] == [r["case"] for r in rows]
    assert out[0]["flair"] == str(new.resolve() / "synth0000" / "flair.nii.gz") and out[0]["disease"] == "CSVD"
    assert out[0]["label"] == str(new.resolve() / "synth0000" / "label.nii.gz")
    assert out[2] == rows[2]
    partial = head_set("synth-v10-s6", {"synth0000": "MS"})
    with pytest.raises(SystemExit, match="synth0001"):
        script.regenerated(rows, [(r"synth-v4[ab]", partial)])


def test_the_brightening_probe_counts_only_marks_away_from_the_truth_in_pairs_that_differ(tmp_path, monkeypatch):
    """benchmarks/brightening_probe.py: pairs by case name, lesion-free heads first, skips pairs whose images are
    the same, and counts marks outside the truth's one-voxel dilation only (a mark touching a lesion is the
    lesion's edge, not the brightening's doing)."""
    import SimpleITK as sitk

    probe = _load_benchmark("brightening_probe")

    def write_set(folder, cases):
        for name, (flair, label) in cases.items():
            (folder / name).mkdir(parents=True)
            for key, arr in (("flair", flair), ("label", label), ("brain", np.ones_like(label))):
                img = sitk.GetImageFromArray(arr)
                img.SetSpacing((1.0, 1.0, 2.0))
                sitk.WriteImage(img, str(folder / name / f"{key}.nii.gz"))

    base = (100 + np.indices((6, 32, 32))[2] % 3).astype(np.int16)  # not constant: load_flair refuses that
    lesion = np.zeros((6, 32, 32), np.uint8)
    lesion[2:4, 10:14, 10:14] = 1
    with_lesion = np.where(lesion > 0, 200, base).astype(np.int16)
    brighter = with_lesion.copy()
    brighter[2:4, 14, 10:14] = 180  # beside the lesion: inside the dilation, not counted
    brighter[2:4, 24:28, 24:28] = 180  # away from it: 32 voxels of 2 mm^3 = 0.064 ml
    free_brighter = base.copy()
    free_brighter[1, 5:9, 5:9] = 180  # 16 voxels: 0.032 ml
    write_set(tmp_path / "v7", {"synth0000": (with_lesion, lesion), "synth0001": (with_lesion, lesion),
                                "synth0002": (base, np.zeros_like(lesion))})
    write_set(tmp_path / "v11", {"synth0000": (brighter, lesion), "synth0001": (with_lesion, lesion),
                                 "synth0002": (free_brighter, np.zeros_like(lesion)), "synth0003": (base, lesion)})

    class Stub:  # marks everything brighter than 150
        def segment(self, image):
            mask = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) > 150).astype(np.uint8))
            mask.CopyInformation(image)
            return type("Result", (), {"mask": mask})()

    pairs = probe.paired_cases(tmp_path / "v7", tmp_path / "v11")
    assert [b["case"] for _, b in pairs] == ["synth0002", "synth0000", "synth0001"]  # lesion-free first; 0003 unpaired
    rows = {r["case"]: r for r in probe.probe(Stub(), pairs, progress=False)}
    assert set(rows) == {"synth0000", "synth0002"}  # synth0001's images are the same
    assert rows["synth0002"]["truth_ml"] == 0 and rows["synth0002"]["added_ml"] == pytest.approx(0.032)
    assert rows["synth0000"]["plain_ml"] == 0 and rows["synth0000"]["added_ml"] == pytest.approx(0.064)
    assert rows["synth0000"]["truth_ml"] == pytest.approx(0.064)
    assert len(probe.paired_cases(tmp_path / "v7", tmp_path / "v11", limit=1)) == 1
    with pytest.raises(SystemExit, match="no case shares its name"):
        probe.paired_cases(tmp_path / "v7", tmp_path / "lesion-free-elsewhere")


def _dry_run_recipe(tmp_path: Path, stages: str) -> list[list[str]]:
    """Run benchmarks/train_bundled_model.sh with stub ``deepwml``/``python`` that only record their
    arguments (one JSON list per line), so a stage's commands are checked without training anything."""
    stubs, calls, out = tmp_path / "bin", tmp_path / "calls.jsonl", tmp_path / "out"
    stubs.mkdir(parents=True)
    for name in ("deepwml", "python"):
        stub = stubs / name
        stub.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"open({str(calls)!r}, 'a').write(json.dumps([{name!r}] + sys.argv[1:]) + '\\n')\n")
        stub.chmod(0o755)
    (out / "run-scratch" / "model").mkdir(parents=True)
    (out / "run-scratch" / "split.json").write_text("{}")
    for name in ("model.json", "model.safetensors"):  # stage 18's model, as stage 24 copies it
        (out / "run-scratch" / "model" / name).write_text(name)
    (out / "phantoms").mkdir()
    (out / "model-0.2.0").mkdir()
    (out / "model-0.2.0" / "model.json").write_text("{}")  # model_from_git: already there, git is not read
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "train_bundled_model.sh"
    env = {**os.environ, "DEEPWML_BIN": str(stubs), "STAGES": stages}
    subprocess.run(["bash", str(script), str(out)], env=env, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in calls.read_text().splitlines()]


def _option(call: list[str], name: str) -> str | None:
    return call[call.index(name) + 1] if name in call else None


def test_recipe_stage_23_starts_from_the_phantom_model_and_stage_21_from_random_weights(tmp_path):
    """Experiment 38 (stage 23) is stage 18's from-scratch schedule started from 0.2.0; sharing
    ``from_scratch`` with stage 21 must not give stage 21 a starting model (it is from random weights)."""
    calls = _dry_run_recipe(tmp_path / "s23", "23")
    trains = [c for c in calls if c[:2] == ["deepwml", "train"]]
    assert [(_option(c, "--epochs"), _option(c, "--lr")) for c in trains] == [("50", "5e-4"), ("75", "1.5e-4")]
    assert all(_option(c, "--init").endswith("model-0.2.0") for c in trains)
    assert all(_option(c, "-o").endswith("run-curriculum") for c in trains)
    assert (tmp_path / "s23" / "out" / "run-curriculum" / "split.json").read_text() == "{}"  # stage 18's split
    assert any("threshold_on_validation.py" in " ".join(c) for c in calls)

    calls = _dry_run_recipe(tmp_path / "s21", "21")
    trains = [c for c in calls if c[:2] == ["deepwml", "train"]]
    assert [(_option(c, "--epochs"), _option(c, "--lr")) for c in trains] == [("55", "5e-4"), ("80", "1.5e-4")]
    assert not any("--init" in c for c in trains)


def test_recipe_stage_24_ships_stage_18s_model_with_the_contrast_floor_and_an_int8_graph(tmp_path):
    """The shipped 1.7.0 (experiment 40): stage 18's weights, unchanged (no training), the floor the rule
    chose written into a copy's card, then the int8 graph calibrated on stage 18's own training mix."""
    calls = _dry_run_recipe(tmp_path / "s24", "24")
    assert not [c for c in calls if c[:2] == ["deepwml", "train"]]
    record = next(c for c in calls if "benchmarks/contrast_floor_study.py" in c)
    assert record[record.index("--record") + 1].endswith("model-1.7.0")
    assert (_option(record, "--factors"), _option(record, "--modes")) == ("1.15", "voxel")
    export = next(c for c in calls if c[:2] == ["deepwml", "export-onnx"])
    assert export[2].endswith("model-1.7.0") and "--int8" in export
    assert _option(export, "--calibration").endswith("mix-scratch.csv")
    assert calls.index(record) < calls.index(export)
    copied = tmp_path / "s24" / "out" / "model-1.7.0"
    assert sorted(p.name for p in copied.iterdir()) == ["model.json", "model.safetensors"]


def test_recipe_stage_30_makes_the_shipped_1_8_0_from_1_7_0_with_no_training(tmp_path):
    """The shipped 1.8.0 (experiment 54): 1.7.0 (stage 24) copied, its version renamed, and the gated envelope floor
    written into the copy's card; nothing trained, no graph re-exported (the weights are 1.7.0's)."""
    calls = _dry_run_recipe(tmp_path / "s30", "24 30")
    assert not [c for c in calls if c[:2] == ["deepwml", "train"]]
    records = [c for c in calls if "benchmarks/contrast_floor_study.py" in c]
    assert [r[r.index("--record") + 1].rsplit("/", 1)[-1] for r in records] == ["model-1.7.0", "model-1.8.0"]
    floor = records[1]
    assert (_option(floor, "--factors"), _option(floor, "--modes"), _option(floor, "--levels"),
            _option(floor, "--min-load-ml")) == ("1.15", "voxel", "flat-in-envelope", "20")
    version = next(c for c in calls if c[:2] == ["python", "-c"] and "'1.8.0'" in c[2])
    assert version[3].endswith("model-1.8.0/model.json") and calls.index(version) < calls.index(floor)
    assert "experiment 54" in version[4]  # the card's notes say what changed
    assert len([c for c in calls if c[:2] == ["deepwml", "export-onnx"]]) == 1  # stage 24's only
    copied = tmp_path / "s30" / "out" / "model-1.8.0"
    assert sorted(p.name for p in copied.iterdir()) == ["model.json", "model.safetensors"]


def test_recipe_stage_31_makes_the_shipped_1_8_1_from_1_8_0_with_no_training(tmp_path):
    """The shipped 1.8.1 (experiment 60): 1.8.0 (stage 30) copied, its version renamed, and the envelope floor with its
    gate made a ramp (10 to 20 ml) written into the copy's card; nothing trained, no graph re-exported."""
    calls = _dry_run_recipe(tmp_path / "s31", "24 30 31")
    assert not [c for c in calls if c[:2] == ["deepwml", "train"]]
    records = [c for c in calls if "benchmarks/contrast_floor_study.py" in c]
    assert [r[r.index("--record") + 1].rsplit("/", 1)[-1] for r in records] == ["model-1.7.0", "model-1.8.0",
                                                                                  "model-1.8.1"]
    floor = records[2]
    assert (_option(floor, "--levels"), _option(floor, "--min-load-ml"), _option(floor, "--full-load-ml")) == (
        "flat-in-envelope", "10", "20")
    version = next(c for c in calls if c[:2] == ["python", "-c"] and "'1.8.1'" in c[2])
    assert version[3].endswith("model-1.8.1/model.json") and calls.index(version) < calls.index(floor)
    assert "experiment 60" in version[4]
    assert len([c for c in calls if c[:2] == ["deepwml", "export-onnx"]]) == 1  # stage 24's only
    copied = tmp_path / "s31" / "out" / "model-1.8.1"
    assert sorted(p.name for p in copied.iterdir()) == ["model.json", "model.safetensors"]


def test_recipe_stage_29_fine_tunes_the_bundled_model_on_whole_head_1mm_heads_for_the_thin_route(tmp_path):
    """Experiment 50 (stage 29, not shipped): 1.7.0 fine-tuned on 100 new whole-head 1 mm heads, then 1.7.0's
    threshold and floor written into the run's card, then its ONNX graph: a thin-slice model (--thin-model)."""
    calls = _dry_run_recipe(tmp_path / "s29", "29")
    synth = next(c for c in calls if c[:2] == ["deepwml", "synth"])
    assert "--whole-head-3d" in synth and (_option(synth, "--seed"), _option(synth, "--synthesis-version")) == ("151", "7")
    train = next(c for c in calls if c[:2] == ["deepwml", "train"])
    assert _option(train, "--init") == "bundled" and _option(train, "--model-version") == "1.7.0-thin"
    threshold = next(c for c in calls if c[:2] == ["python", "-c"])
    assert "0.7" in threshold[2] and threshold[3].endswith("run-1.7.0-thin/model/model.json")
    assert "experiment 50's rule" in threshold[4]  # the card says why its threshold is 0.7
    record = next(c for c in calls if "benchmarks/contrast_floor_study.py" in c)
    assert (_option(record, "--factors"), _option(record, "--modes")) == ("1.15", "voxel")
    export = next(c for c in calls if c[:2] == ["deepwml", "export-onnx"])
    assert calls.index(train) < calls.index(threshold) < calls.index(record) < calls.index(export)


def test_recipe_stage_25_fine_tunes_stage_18_on_v12_heads_and_keeps_the_floor(tmp_path):
    """Experiment 41 (stage 25): stage 18's model fine-tuned 30 epochs at 1.5e-4 on its mix with the heads
    regenerated as synthesis v12 under stage 18's split, then 1.7.0's floor (voxel, 1.15) written into the
    run's card after training and the threshold."""
    calls = _dry_run_recipe(tmp_path / "s25", "25")
    synths = [c for c in calls if c[:2] == ["deepwml", "synth"]]
    assert {_option(c, "--synthesis-version") for c in synths} == {"12"}
    assert sorted(_option(c, "--seed") for c in synths) == ["5", "71"]
    trains = [c for c in calls if c[:2] == ["deepwml", "train"]]
    assert len(trains) == 1 and (_option(trains[0], "--epochs"), _option(trains[0], "--lr")) == ("30", "1.5e-4")
    assert _option(trains[0], "--init").endswith("run-scratch/model") and _option(trains[0], "-o").endswith("run-v12")
    assert (tmp_path / "s25" / "out" / "run-v12" / "split.json").read_text() == "{}"  # stage 18's split
    threshold = next(c for c in calls if "benchmarks/threshold_on_validation.py" in c)
    record = next(c for c in calls if "benchmarks/contrast_floor_study.py" in c)
    assert record[record.index("--record") + 1].endswith("run-v12/model")
    assert (_option(record, "--factors"), _option(record, "--modes")) == ("1.15", "voxel")
    assert calls.index(trains[0]) < calls.index(threshold) < calls.index(record)


@pytest.mark.parametrize("flag, mask", [("--brain-labels", "brain"), ("--white-matter-labels", "white_matter")])
def test_mask_model_manifests_label_each_synthetic_head_once_with_its_mask(tmp_path, flag, mask):
    mix = _load_benchmark("training_mix")
    rows = []
    for name in ("synth0000", "synth0001"):
        folder = tmp_path / "set" / name
        folder.mkdir(parents=True)
        for key in ("flair", "label", mask):
            (folder / f"{key}.nii.gz").write_bytes(b"")
        rows.append({"case": name, "patient": name, "center": "synthetic", "disease": "MS",
                     "flair": str(folder / "flair.nii.gz"), "label": str(folder / "label.nii.gz")})
    rows.append({"case": "case0001", "patient": "case0001", "center": "A", "disease": "MS", "flair": "f", "label": "l"})
    mix.write_rows(tmp_path / "mix.csv", rows + rows[:1])  # a head listed twice (a copy) is labelled once
    assert mix.main([flag, str(tmp_path / "mix.csv"), str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        out = list(csv.DictReader(handle))
    assert [r["case"] for r in out] == ["synth0000", "synth0001"]  # phantoms left out
    assert all(r["label"].endswith(f"/{mask}.nii.gz") for r in out)
    (tmp_path / "set" / "synth0001" / f"{mask}.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=f"no {mask} mask"):
        mix.main([flag, str(tmp_path / "mix.csv"), str(tmp_path / "out2.csv")])


def _real_out(folder: Path, reports: list[str]) -> Path:
    """A real_scans.sh output folder in miniature: one Lesjak case per report, two sanity heads."""
    header = "case,truth_ml,pred_ml,dice,hd95_mm,avd_percent,lesion_recall,lesion_f1\n"
    for i, report in enumerate(reports):
        (folder / report).mkdir(parents=True)
        (folder / report / "per_volume.csv").write_text(header + f"patient26,7.7,{8 + i},0.{6 + i % 3},12,14,0.6,\n")
        (folder / report / "summary.json").write_text(json.dumps({"flip_tta": True}))
    (folder / "sanity").mkdir()
    (folder / "sanity" / "sanity.csv").write_text("scan,pred_ml,lesions,outside_ml,marked_over_wm\n"
                                                  "FLAIR,2.95,70,0.0,1.3\nstudy1_FLAIR,0.2,4,0.01,\n")
    return folder


def test_record_real_data_reads_every_thickness_and_runs_without_8mm(tmp_path):
    record = _load_benchmark("record_real_data")
    every = list(record.REPORTS)
    figures = record.real_data_figures(_real_out(tmp_path / "new", every))
    assert set(figures["lesjak2017"]) == set(record.REPORTS.values())
    assert figures["lesjak2017"]["lesjak2017-8mm"]["patient26"]["pred_ml"] == 8 + every.index("report-8mm")
    assert figures["lesjak2017"]["lesjak2017-8mm"]["patient26"]["lesion_f1"] is None  # empty cell, not 0
    assert figures["whole_head_sanity"]["FLAIR(rorden)"]["pred_ml"] == 2.95
    assert figures["whole_head_sanity"]["study1_FLAIR"]["marked_over_wm"] is None
    assert figures["flip_tta"] is True
    # a folder from before 8 mm was measured still records, without the 8 mm set
    older = record.real_data_figures(_real_out(tmp_path / "old", [r for r in every if r != "report-8mm"]))
    assert "lesjak2017-8mm" not in older["lesjak2017"] and "lesjak2017-5mm" in older["lesjak2017"]
    # but a missing required report is an error, not a silent gap
    with pytest.raises(FileNotFoundError):
        record.real_data_figures(_real_out(tmp_path / "broken", [r for r in every if r != "report-5mm"]))
