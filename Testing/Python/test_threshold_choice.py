"""Choosing a model's threshold on its own validation cases (deepwml.training.threshold_choice; ``deepwml
choose-threshold``, ``train --choose-threshold``): the rule, its bound for a fine-tune, the card it writes and the lines
the command line and the Slicer panel show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import write_validation_manifest
from deepwml.cli import _inherited_reading_line, main
from deepwml.model_files import read_card, write_card
from deepwml.training import threshold_choice
from deepwml.training.threshold_choice import MIN_CASES, choose_threshold


def manifest_of(folder: Path, with_lesions: int, lesion_free: int) -> Path:
    """Cases with a 2x4x4 lesion, then lesion-free ones (marked for the stub network)."""
    truths = {}
    for i in range(with_lesions + lesion_free):
        truth = np.zeros((6, 32, 32), np.uint8)
        if i < with_lesions:
            truth[2:4, 10:14, 10:14] = 1
        truths[f"case{i:02d}"] = truth
    return write_validation_manifest(folder, truths, mark_healthy=True)


class Model:
    """A network's probabilities on every case: 0.9 on half the lesion, 0.75 on a quarter, 0.4 on the last quarter
    (Dice 1 at <= 0.4, 0.857 at 0.5-0.7, 0.667 at 0.8-0.9, 0 at 0.95); on a lesion-free case 0.45 on 10 voxels."""

    def segment(self, image):
        truth_like = np.zeros(sitk.GetArrayFromImage(image).shape, np.float32)
        truth_like[2:4, 10:14, 10:12] = 0.9
        truth_like[2:4, 10:14, 12:13] = 0.75
        truth_like[2:4, 10:14, 13:14] = 0.4
        if image.GetOrigin()[2] == 1.0:  # a healthy head
            truth_like[:] = 0
            truth_like[5, 0, :10] = 0.45
        out = sitk.GetImageFromArray(truth_like)
        out.CopyInformation(image)
        return type("Result", (), {"probabilities": out})()


class Parent:
    """The model a fine-tune started from: marks nothing on lesion-free cases at its own threshold."""

    def segment(self, image):
        out = sitk.GetImageFromArray(np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8))
        out.CopyInformation(image)
        return type("Result", (), {"mask": out})()


@pytest.fixture
def fine_tune(tiny_model_dir, tmp_path, monkeypatch):
    """A fine-tune's card (threshold and floor inherited from a parent at 0.7) and its parent's folder."""
    parent = tmp_path / "parent"
    shutil.copytree(tiny_model_dir, parent)
    card, path = read_card(parent)
    write_card({**card, "threshold": 0.7}, path)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    card, path = read_card(model)
    floor = {"factor": 1.15, "mode": "voxel", "inherited_from": "parent@1"}
    write_card({**card, "threshold": 0.7, "contrast_floor": floor,
                "training": {"initialised_from": {"model": "parent@1", "path": str(parent), "threshold": 0.7}},
                "metrics": {"threshold_selection": {"chosen": 0.7, "inherited_from": "parent@1"}}}, path)
    monkeypatch.setattr(threshold_choice, "one_pass_segmenter",
                        lambda folder: Parent() if Path(folder) == parent else Model())
    return model, parent


def test_a_model_from_random_weights_takes_the_highest_median(fine_tune, tmp_path):
    model, _ = fine_tune
    manifest = manifest_of(tmp_path, MIN_CASES, 2)
    choice = choose_threshold(model, manifest, parent=None)
    assert choice.chosen == 0.4 and choice.median_dice[0.4] == 1.0  # ties (0.3, 0.4) keep the higher
    assert choice.median_dice[0.6] == pytest.approx(0.8571, abs=1e-4) and choice.median_dice[0.95] == 0.0
    assert choice.lesion_free_ml[0.4] == pytest.approx(2 * 10 * 2 / 1000) and choice.lesion_free_ml[0.5] == 0
    assert read_card(model)[0]["threshold"] == 0.7  # not recorded unless asked


def test_a_fine_tune_never_marks_more_on_healthy_cases_than_its_parent(fine_tune, tmp_path):
    model, _ = fine_tune
    choice = choose_threshold(model, manifest_of(tmp_path, MIN_CASES, 2))
    # 0.3 and 0.4 mark 0.04 ml on the lesion-free cases where the parent marks none: the best of the rest
    assert choice.bound_ml == 0.0 and choice.chosen == 0.7 and "no more than parent@1" in choice.why


def test_without_healthy_cases_a_fine_tune_is_never_set_below_its_parent(fine_tune, tmp_path):
    model, _ = fine_tune
    manifest = manifest_of(tmp_path, MIN_CASES, 0)
    choice = choose_threshold(model, manifest)
    assert choice.chosen == 0.7 and choice.bound_ml is None and "at or above parent@1's threshold 0.7" in choice.why
    _, parent = fine_tune  # named by its folder (--parent DIR), it is named by its card's model id
    assert choose_threshold(model, manifest, parent=parent).why == choice.why.replace("parent@1", "tiny-test@0.0.1")


def test_too_few_cases_choose_nothing_and_leave_the_card_as_it_was(fine_tune, tmp_path):
    model, _ = fine_tune
    before = (model / "model.json").read_text()
    manifest = manifest_of(tmp_path, MIN_CASES - 1, 3)
    choice = choose_threshold(model, manifest, record=True)
    assert choice.chosen is None and not choice.recorded and f"fewer than {MIN_CASES}" in choice.why
    assert (model / "model.json").read_text() == before
    # an image-level split shares every case between parts: none is a validation case, and the reason says why
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"level": "image", "assignment": {f"case{i:02d}": ["train", "val"]
                                                                  for i in range(MIN_CASES + 2)}}))
    choice = choose_threshold(model, manifest, split, record=True)
    assert choice.cases_with_lesions == 0 and "image-level split" in choice.why


def test_the_choice_is_recorded_with_its_figures_and_the_lines_say_whose_floor_remains(fine_tune, tmp_path):
    model, _ = fine_tune
    manifest = manifest_of(tmp_path, MIN_CASES, 0)
    choose_threshold(model, manifest, parent=None, record=True)
    card = read_card(model)[0]
    selection = card["metrics"]["threshold_selection"]
    assert card["threshold"] == 0.4 and selection["chosen"] == 0.4
    assert selection["replaced"] == {"chosen": 0.7, "inherited_from": "parent@1"} and "inherited_from" not in selection
    assert selection["median_per_volume_dice"]["0.4"] == 1.0 and "no real evaluation scan" in selection["data"]
    assert card["contrast_floor"]["inherited_from"] == "parent@1"  # the floor stays the parent's
    assert _inherited_reading_line(model) == ("reads its output with its own threshold 0.4 (chosen on its validation "
                                              "cases) and parent@1's contrast floor 1.15x (above-median)")


def test_the_command_prints_the_sweep_records_and_refuses_a_missing_split(fine_tune, tmp_path, capsys):
    model, _ = fine_tune
    manifest = manifest_of(tmp_path, MIN_CASES, 2)
    assert main(["choose-threshold", str(model), str(manifest), "--record", "-q"]) == 0
    out = capsys.readouterr().out
    assert "threshold 0.7: median per-volume Dice 0.8571, 0.00 ml on the lesion-free cases" in out
    assert "chosen: 0.7" in out and "threshold 0.7 recorded in the model card" in out
    assert read_card(model)[0]["metrics"]["threshold_selection"]["bounded_by"] == {"model": "parent@1",
                                                                                  "lesion_free_ml_marked": 0.0}
    assert main(["choose-threshold", str(model), str(manifest), "--split", str(tmp_path / "nope.json"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.json" in err[0] and "split not found" in err[0]
    few = tmp_path / "few"
    few.mkdir()
    assert main(["choose-threshold", str(model), str(manifest_of(few, 2, 0)), "-q"]) == 1  # nothing chosen


def test_a_missing_parent_is_named_in_one_line(fine_tune, tmp_path, capsys):
    model, parent = fine_tune
    shutil.rmtree(parent)
    assert main(["choose-threshold", str(model), str(manifest_of(tmp_path, 2, 0)), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(parent) in err[0] and "--parent" in err[0]
    assert main(["choose-threshold", str(model), str(manifest_of(tmp_path, 2, 0)), "--parent", "none", "-q"]) == 1


def test_train_can_choose_the_threshold_after_training(phantom_set, tmp_path, capsys):
    """The wiring of ``train --choose-threshold`` with the real segmenter: a tiny run's few validation cases choose
    nothing, and the command says so and keeps the model's threshold."""
    run = tmp_path / "run"
    assert main(["train", str(phantom_set), "-o", str(run), "--epochs", "1", "--base-channels", "4",
                 "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "--choose-threshold", "-q"]) == 0
    out = capsys.readouterr().out
    split = json.loads((run / "split.json").read_text())
    val = sum(1 for part in split["assignment"].values() if part == "val")
    assert "threshold sweep on" in out and f"fewer than {MIN_CASES}" in out and val < MIN_CASES
    assert read_card(run / "model")[0]["threshold"] == 0.5


def test_the_threshold_sweep_reports_what_each_threshold_marks_on_lesion_free_cases(tmp_path, validation_manifest):
    """threshold_choice.dice_by_candidate: Dice only on the cases with lesions (the choice is
    unchanged), and, when asked, the volume each threshold marks on the lesion-free ones; a case drawn
    with lesions whose truth ended empty counts in neither."""
    import SimpleITK as sitk

    sweep = threshold_choice
    lesion = np.zeros((6, 32, 32), np.uint8)
    lesion[2:4, 10:14, 10:14] = 1
    manifest = validation_manifest(tmp_path, {"with": lesion, "free": np.zeros_like(lesion),
                                               "faint": np.zeros_like(lesion)}, drawn=("faint",))

    class Stub:  # probability 0.9 on a 2x4x4 block, 0.5 on a 1x2x2 block beside it: 64 / 72 mm3
        def segment(self, image):
            prob = np.zeros(sitk.GetArrayFromImage(image).shape, np.float32)
            prob[2:4, 10:14, 10:14] = 0.9
            prob[4, 10:12, 10:12] = 0.5
            out = sitk.GetImageFromArray(prob)
            out.CopyInformation(image)
            return type("Result", (), {"probabilities": out})()

    threshold = lambda prob, image, t: prob >= t  # noqa: E731
    assert sweep.dice_by_candidate(Stub(), str(manifest), "-", "val", (0.4, 0.8), threshold) == {
        0.4: [pytest.approx(2 * 32 / (32 + 36))], 0.8: [1.0]}
    free: dict = {}
    scores = sweep.dice_by_candidate(Stub(), str(manifest), "-", "val", (0.4, 0.8), threshold, free)
    assert scores[0.8] == [1.0] and free == {"cases": 1, 0.4: pytest.approx(0.072), 0.8: pytest.approx(0.064)}


def test_the_bounded_threshold_rule_chooses_only_thresholds_within_the_reference_marks():
    """threshold_choice.bounded_choice: the highest median among the thresholds marking no more
    on lesion-free cases than the reference; ties keep the higher threshold; none within: None."""
    sweep = threshold_choice
    scores = {0.5: [0.7, 0.7], 0.8: [0.6, 0.6], 0.9: [0.6, 0.6], 0.95: [0.4, 0.4]}
    free = {"cases": 2, 0.5: 9.0, 0.8: 3.0, 0.9: 2.0, 0.95: 1.0}
    assert sweep.bounded_choice(scores, free, 100.0) == 0.5
    assert sweep.bounded_choice(scores, free, 3.0) == 0.9  # 0.8 and 0.9 tie on the median
    assert sweep.bounded_choice(scores, free, 1.5) == 0.95
    assert sweep.bounded_choice(scores, free, 0.5) is None
    assert sweep.BOUNDED_THRESHOLDS[-3:] == (0.85, 0.9, 0.95) and 0.8 in sweep.BOUNDED_THRESHOLDS


def test_the_bound_is_what_the_reference_marks_on_the_lesion_free_cases_alone(tmp_path, validation_manifest):
    """threshold_choice.lesion_free_ml_at_card_threshold segments only the lesion-free cases
    and sums the volume of their masks; a case drawn with lesions whose truth ended empty is not
    lesion-free (the judge's definition) and is not segmented."""
    import SimpleITK as sitk

    sweep = threshold_choice
    lesion = np.zeros((4, 16, 16), np.uint8)
    lesion[1, 2:4, 2:4] = 1
    empty = np.zeros_like(lesion)
    manifest = validation_manifest(tmp_path, {"with": lesion, "free": empty, "free2": empty, "faint": empty},
                                    drawn=("faint",))
    seen = []

    class Stub:  # marks 5 voxels of 2 mm3 on every case it is given
        def segment(self, image):
            seen.append(image)
            mask = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
            mask[0, 0, :5] = 1
            out = sitk.GetImageFromArray(mask)
            out.CopyInformation(image)
            return type("Result", (), {"mask": out})()

    assert sweep.lesion_free_ml_at_card_threshold(Stub(), str(manifest), "-") == pytest.approx(2 * 5 * 2 / 1000)
    assert len(seen) == 2
