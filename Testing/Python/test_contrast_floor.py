"""The white-matter contrast floor (deepwml.contrast_floor; docs/EXPERIMENTS.md, experiment 40): marks no brighter
than the scan's own white matter are removed, by voxel or by component, from the card or an option."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from deepwml.cli import main
from deepwml.cohort.settings import CohortSettings
from deepwml.contrast_floor import (ENVELOPE_LEVEL, ContrastFloor, apply_contrast_floor, card_contrast_floor,
                                    floor_setting)
from deepwml.errors import ModelFileError
from deepwml.model_files import load_model


def brain_with_marks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A brain of white matter at 100 (its largest bright class) and grey matter at 80 in air, a bright
    lesion (150) with a faint rim (105), and a faint blob (108) apart from it; probabilities 0.9 on
    the lesion, its rim and the blob."""
    flair = np.zeros((6, 40, 40), np.float32)  # air at the box's edges, as in a scan
    flair[:, 1:39, 1:39] = 80.0
    flair[:, 5:35, 5:35] = 100.0
    brain = np.zeros(flair.shape, bool)
    brain[:, 2:38, 2:38] = True
    probs = np.zeros(flair.shape, np.float32)
    flair[2:4, 10:17, 10:17], probs[2:4, 10:17, 10:17] = 105.0, 0.9  # rim (48 voxels) ...
    flair[2:4, 11:16, 11:16] = 150.0  # ... around a bright core (50): one component, median 150
    flair[2:4, 25:29, 25:29], probs[2:4, 25:29, 25:29] = 108.0, 0.9  # the faint blob
    return flair, brain, probs


def test_voxel_floor_removes_every_voxel_below_it_whatever_the_threshold():
    flair, brain, probs = brain_with_marks()
    kept, applied = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "voxel"))
    assert applied.white_matter_level == pytest.approx(100.0, abs=2.0)
    assert (kept[flair < 115] == 0).all()  # the rim and the blob (and the air), at any later threshold too
    assert (kept[flair >= 115] == probs[flair >= 115]).all() and kept[2:4, 11:16, 11:16].min() == pytest.approx(0.9)
    assert applied.removed_voxels == int(((probs >= 0.5) & (flair < 115)).sum()) == 2 * (49 - 25) + 2 * 16
    assert probs.max() == pytest.approx(0.9) and (probs[2:4, 25:29, 25:29] == 0.9).all()  # input untouched


def test_component_floor_keeps_a_bright_lesion_with_its_faint_rim_and_drops_the_faint_blob():
    flair, brain, probs = brain_with_marks()
    kept, applied = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "component"))
    assert (kept[2:4, 10:17, 10:17] == 0.9).all()  # median of the component 150 > 115: all of it stays
    assert (kept[2:4, 25:29, 25:29] == 0).all() and applied.removed_voxels == 2 * 16
    # below the floor the blob would stay too
    assert apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.05, "component"))[1].removed_voxels == 0


def test_a_volume_without_a_readable_white_matter_level_is_left_as_it_is_and_says_why():
    flair, brain, probs = brain_with_marks()
    kept, applied = apply_contrast_floor(probs, flair, np.zeros_like(brain), 0.5, ContrastFloor(1.15))  # no brain
    assert kept is probs and applied.removed_voxels == 0 and applied.white_matter_level is None
    assert "white-matter level" in applied.not_applied


@pytest.mark.parametrize("mode", ["voxel", "component"])
def test_an_intensity_offset_does_not_move_the_floor(mode):
    """A ratio needs zero to mean no signal: +1000 (a DICOM rescale intercept) lifted every voxel towards
    the white matter's ratio and removed true lesions (a phantom's 1.33 ml became 0.52); measured from the
    air level, as normalisation measures the head, the floor removes the same voxels."""
    flair, brain, probs = brain_with_marks()
    floor = ContrastFloor(1.15, mode)
    kept, applied = apply_contrast_floor(probs, flair, brain, 0.5, floor)
    shifted, applied_shifted = apply_contrast_floor(probs, flair + 1000.0, brain, 0.5, floor)
    assert applied.removed_voxels > 0 and (shifted == kept).all()
    assert applied_shifted.removed_voxels == applied.removed_voxels
    assert applied_shifted.white_matter_level == pytest.approx(applied.white_matter_level, rel=0.01)


@pytest.mark.parametrize("factor, mode", [(0.0, "voxel"), (float("nan"), "voxel"), (1.1, "median")])
def test_bad_floors_are_refused(factor, mode):
    with pytest.raises(ValueError):
        ContrastFloor(factor, mode)
    with pytest.raises(ValueError, match="level"):
        ContrastFloor(1.15, "voxel", "mode-of-everything")


def folded_cortex_brain() -> tuple[np.ndarray, np.ndarray]:
    """A brain whose grey matter (130) is its largest class, folded with fluid (30) in 2-pixel gyri and
    sulci around a flat white-matter core (100): the heads experiments 43-45 found misread (docs/EXPERIMENTS.md)."""
    rng = np.random.default_rng(0)
    flair = np.zeros((4, 80, 80), np.float32)
    brain = np.zeros(flair.shape, bool)
    brain[:, 4:76, 4:76] = True
    rows = np.arange(80)[:, None] % 4 < 2  # 2 pixels of cortex, 2 of sulcal fluid, over and over
    flair[:, 4:76, 4:76] = np.where(rows, 130.0, 30.0)[4:76, :72]
    flair[:, 22:58, 22:58] = 100.0  # white matter: 1,296 of 5,184 voxels a slice; cortex 1,944
    flair += rng.normal(0, 2, flair.shape).astype(np.float32) * brain
    return flair, brain


def test_the_flat_level_reads_white_matter_where_bright_folded_cortex_outnumbers_it():
    """Grey matter is the larger, brighter class on FLAIR: the first level (the mode above the brain's
    median) then reads the cortex, and a floor at 1.15x of that removes every lesion up to 1.5x white
    matter; the flat third above the 25th percentile reads the white matter."""
    flair, brain = folded_cortex_brain()
    from deepwml.evaluation.mark_contrast import white_matter_level
    assert white_matter_level(flair, brain, "above-median") == pytest.approx(130, abs=4)
    assert white_matter_level(flair, brain, "flat-above-p25") == pytest.approx(100, abs=3)
    # the gradient is in millimetres: at 0.5 mm pixels it spans twice the pixels and still finds the core
    assert white_matter_level(flair, brain, "flat-above-p25", (0.5, 0.5)) == pytest.approx(100, abs=3)
    probs = np.zeros(flair.shape, np.float32)
    flair[1:3, 35:40, 35:40], probs[1:3, 35:40, 35:40] = 135.0, 0.9  # a lesion at 1.35x white matter
    for level, kept_voxels in (("above-median", 0), ("flat-above-p25", 50)):
        kept, applied = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "voxel", level))
        assert int((kept >= 0.5).sum()) == kept_voxels and applied.level == level
        assert applied.as_dict()["level"] == level


@pytest.mark.parametrize("pixel_mm", [(1.0, 1.0), (0.47, 0.47), (0.9, 0.45)])
def test_the_flat_third_is_read_slice_by_slice_with_the_whole_images_values(pixel_mm):
    """The flat level's gradient is filtered slice by slice inside each slice's own box (a fraction of the work): the
    values must be the whole image's, bit for bit, for brains of every size per slice, one touching the image edge
    (where the filter's reflection is the image's own) and a slice without brain."""
    from scipy import ndimage

    from deepwml.evaluation.mark_contrast import _flattest_third
    rng = np.random.default_rng(3)
    flair = rng.gamma(4.0, 30.0, (6, 90, 70)).astype(np.float32)
    brain = np.zeros(flair.shape, bool)
    brain[0, 30:50, 20:40] = True  # a small slice
    brain[1, 5:85, 4:66] = True  # a wide one
    brain[2, 0:40, 50:70] = True  # on the image's edge
    brain[4, 10:80, 10:30] = True  # slice 3: no brain; slice 5 neither
    brain[4, 40:45, 50:60] = True  # two pieces on one slice
    low = float(np.percentile(flair[brain], 25))
    sigma = (0.0, 1.0 / pixel_mm[0], 1.0 / pixel_mm[1])
    rows = ndimage.gaussian_filter(flair, sigma, order=(0, 1, 0))
    cols = ndimage.gaussian_filter(flair, sigma, order=(0, 0, 1))
    upper = brain & (flair >= np.float64(low))
    steepness = np.hypot(rows[upper] / np.float32(pixel_mm[0]), cols[upper] / np.float32(pixel_mm[1]))
    expected = flair[upper][steepness <= np.percentile(steepness, 100 / 3)].astype(np.float64)
    got = _flattest_third(flair, brain, np.float64(low), pixel_mm)
    assert got.size > 100 and np.array_equal(got, expected)


def test_the_envelope_level_keeps_a_lesion_in_the_white_matter_and_removes_as_bright_a_mark_on_the_cortex():
    """Experiment 52: inside the white matter's envelope the floor reads the true white matter (flat level), outside
    it the level bright cortex pulls up; without an envelope it is the first level everywhere."""
    flair, brain = folded_cortex_brain()
    probs = np.zeros(flair.shape, np.float32)
    flair[1:3, 35:40, 35:40], probs[1:3, 35:40, 35:40] = 135.0, 0.9  # a lesion at 1.35x, in the white matter
    flair[1:3, 8:10, 30:35], probs[1:3, 8:10, 30:35] = 135.0, 0.9  # as bright, on the cortex
    envelope = np.zeros(flair.shape, bool)
    envelope[:, 22:58, 22:58] = True
    floor = ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL)
    kept, applied = apply_contrast_floor(probs, flair, brain, 0.5, floor, envelope=envelope)
    assert (kept[1:3, 35:40, 35:40] == 0.9).all() and (kept[1:3, 8:10, 30:35] == 0).all()
    assert applied.envelope_level == pytest.approx(100, abs=3)
    assert applied.white_matter_level == pytest.approx(130, abs=4)
    assert applied.as_dict()["envelope_level"] == pytest.approx(100, abs=3) and applied.level == ENVELOPE_LEVEL
    assert applied.removed_voxels == 2 * 10
    # experiment 53: the envelope's level only for marked components larger than a load (here 50 voxels each)
    for load_voxels, lesion_kept in ((49, True), (50, False)):
        gated = apply_contrast_floor(probs, flair, brain, 0.5, floor, envelope=envelope, load_voxels=load_voxels)[0]
        assert (gated[1:3, 35:40, 35:40] == 0.9).all() == lesion_kept and not (gated[1:3, 8:10, 30:35] >= 0.5).any()
    # experiment 54: the envelope's level only on a scan whose load in such components reaches min_load_ml (the lesion
    # in the envelope is 50 voxels of 0.001 ml = 0.05 ml; the load counts only what lies inside the envelope)
    for min_load_ml, lesion_kept in ((0.05, True), (0.051, False)):
        gate = ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, min_load_ml)
        gated, record = apply_contrast_floor(probs, flair, brain, 0.5, gate, envelope=envelope, load_voxels=9)
        assert (gated[1:3, 35:40, 35:40] == 0.9).all() == lesion_kept and not (gated[1:3, 8:10, 30:35] >= 0.5).any()
        assert record.envelope_load_ml == pytest.approx(0.05) and record.envelope_used == lesion_kept
        assert record.as_dict()["envelope_used"] == lesion_kept
        assert (record.envelope_level == pytest.approx(100, abs=3)) if lesion_kept else record.envelope_level is None
    with pytest.raises(ValueError, match="min_load_ml"):
        ContrastFloor(1.15, "voxel", "above-median", 20.0)  # a gate means something only with the envelope's level
    with pytest.raises(ValueError, match="min_load_ml"):
        ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, -1.0)
    # the gate cannot open when the marks in all stay under it: the envelope is then never made, the load not read
    made = []
    lazy = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 0.071),
                                envelope=lambda box: made.append(box) or envelope, load_voxels=9)[1]
    assert made == [] and lazy.envelope_load_ml is None and not lazy.envelope_used  # 70 voxels marked: 0.07 ml
    lazy = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 0.05),
                                envelope=lambda box: made.append(box) or envelope, load_voxels=9)[1]
    assert lazy.envelope_used and made == [(slice(8, 40), slice(30, 40))]  # only inside the loads' box
    # a box without the envelope in it: the load reads 0, as a whole envelope with none of it on the loads gives
    empty = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 0.05),
                                 envelope=lambda box: np.zeros(flair.shape, bool), load_voxels=9)[1]
    whole = apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 0.05),
                                 envelope=np.pad(np.ones((4, 2, 2), bool), ((0, 0), (0, 78), (0, 78))),
                                 load_voxels=9)[1]
    assert empty.envelope_load_ml == whole.envelope_load_ml == 0.0 and not empty.envelope_used
    # no envelope (no white-matter network, or one not trusted): today's floor everywhere, and the record says so
    alone, plain = apply_contrast_floor(probs, flair, brain, 0.5, floor, envelope=None)
    assert not (alone >= 0.5).any() and plain.envelope_level is None and plain.as_dict()["envelope_level"] is None
    # a floor of another level does not carry the envelope's entry in its record
    assert "envelope_level" not in apply_contrast_floor(probs, flair, brain, 0.5, ContrastFloor(1.15))[1].as_dict()
    with pytest.raises(ValueError, match="voxel"):
        ContrastFloor(1.15, "component", ENVELOPE_LEVEL)


def test_segment_with_the_envelope_floor_removes_a_subset_of_what_todays_floor_removes(phantom_flair, tmp_path):
    """End to end with the bundled networks. Below its load gate experiment 54's floor gives the bundled floor's result
    voxel for voxel and says the gate stayed shut; with the gate open (53's form) the envelope's level is read, is never
    above the other, and every mark the bundled floor keeps is kept."""
    from deepwml.model_files import DEFAULT_MODEL_DIR
    from deepwml.segmenter import Segmenter

    image = sitk.ReadImage(str(phantom_flair))
    card = {"factor": 1.15, "mode": "voxel"}  # 1.7.0's floor (experiment 40), whatever the bundled card names now
    today = Segmenter(str(with_card_floor(DEFAULT_MODEL_DIR, tmp_path / "today", card)), device="cpu").segment(
        image, threshold=0.3)
    gated = {**card, "level": ENVELOPE_LEVEL, "min_load_ml": 20.0}  # experiment 54's floor
    bundled = Segmenter(str(with_card_floor(DEFAULT_MODEL_DIR, tmp_path / "gated", gated)), device="cpu").segment(
        image, threshold=0.3)
    shut, before = bundled.contrast_floor_summary(), today.contrast_floor_summary()
    # the phantom's marks in all stay under 20 ml, so its load is not even read (the envelope is never made)
    assert shut["envelope_used"] is False and shut["envelope_load_ml"] is None and shut["envelope_level"] is None
    marked_ml = float((sitk.GetArrayFromImage(bundled.mask) > 0).sum()) * float(np.prod(image.GetSpacing())) / 1000
    assert marked_ml < 20.0
    assert (sitk.GetArrayFromImage(bundled.mask) == sitk.GetArrayFromImage(today.mask)).all()
    assert shut["removed_voxels"] == before["removed_voxels"] and before["level"] == "above-median"
    model = with_card_floor(DEFAULT_MODEL_DIR, tmp_path / "envelope", {**gated, "min_load_ml": 0.0})
    result = Segmenter(str(model), device="cpu").segment(image, threshold=0.3)
    summary = result.contrast_floor_summary()
    assert summary["level"] == ENVELOPE_LEVEL and summary["white_matter_level"] == before["white_matter_level"]
    assert summary["envelope_used"] and 0 < summary["envelope_level"] <= summary["white_matter_level"]
    a, b = (sitk.GetArrayFromImage(r.mask) > 0 for r in (today, result))
    assert not (a & ~b).any() and summary["removed_voxels"] <= before["removed_voxels"]


def test_settings_from_the_option_and_from_the_card(tiny_model_dir, tmp_path):
    assert floor_setting(None) == "card" and floor_setting(0) is None and floor_setting(1.2) == ContrastFloor(1.2)
    assert card_contrast_floor(load_model(tiny_model_dir, framework="numpy")) is None  # no entry: no floor
    bad = with_card_floor(tiny_model_dir, tmp_path / "bad", {"factor": "bright"})
    with pytest.raises(ModelFileError, match="contrast_floor"):
        card_contrast_floor(load_model(bad, framework="numpy"))
    good = with_card_floor(tiny_model_dir, tmp_path / "good", {"factor": 1.15, "mode": "component"})
    # cards written before levels existed read the white matter as they were chosen with: above the median
    assert card_contrast_floor(load_model(good, framework="numpy")) == ContrastFloor(1.15, "component", "above-median")
    flat = with_card_floor(tiny_model_dir, tmp_path / "flat", {"factor": 1.2, "level": "flat-above-p25"})
    assert card_contrast_floor(load_model(flat, framework="numpy")) == ContrastFloor(1.2, "voxel", "flat-above-p25")
    unknown = with_card_floor(tiny_model_dir, tmp_path / "unknown", {"factor": 1.2, "level": "guess"})
    with pytest.raises(ModelFileError, match="contrast_floor"):
        card_contrast_floor(load_model(unknown, framework="numpy"))


def with_card_floor(model_dir, out, entry):
    shutil.copytree(model_dir, out)
    card = json.loads((out / "model.json").read_text())
    card["contrast_floor"] = entry
    (out / "model.json").write_text(json.dumps(card))
    return out


def test_a_ramp_blends_the_envelope_level_in_so_the_result_never_jumps_at_the_gate():
    """Experiment 60: with ``full_load_ml`` the envelope's level comes in gradually, from the scan's level at
    ``min_load_ml`` (bit for bit the floor without the envelope) to the envelope's own at ``full_load_ml`` (bit for bit
    the step gate's), a geometric blend between; the record says how much of it the scan got."""
    flair, brain = folded_cortex_brain()
    probs = np.zeros(flair.shape, np.float32)
    flair[1:3, 35:40, 35:40], probs[1:3, 35:40, 35:40] = 135.0, 0.9  # 50 voxels in the envelope: a load of 0.05 ml
    envelope = np.zeros(flair.shape, bool)
    envelope[:, 22:58, 22:58] = True

    def floored(floor):
        return apply_contrast_floor(probs, flair, brain, 0.5, floor, envelope=envelope, load_voxels=9)

    stepped, step = floored(ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 0.05))
    shut, scan_level = floored(ContrastFloor(1.15))
    assert step.envelope_used and step.envelope_level < scan_level.white_matter_level  # ~100 against ~130
    levels = []
    for start, weight in ((0.03, 1.0), (0.035, 0.75), (0.04, 0.5), (0.045, 0.25), (0.05, 0.0)):
        ramp = ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, start, start + 0.02)
        kept, record = floored(ramp)
        assert ramp.envelope_weight(0.05) == pytest.approx(weight) and record.envelope_weight == pytest.approx(weight)
        assert record.as_dict()["envelope_weight"] == pytest.approx(weight) and record.envelope_load_ml == 0.05
        if weight == 1.0:  # the ramp's top: the step gate's floor, voxel for voxel
            assert np.array_equal(kept, stepped) and record.envelope_level == step.envelope_level
        elif weight == 0.0:  # its foot: the floor without the envelope
            assert np.array_equal(kept, shut) and not record.envelope_used and record.envelope_level is None
        else:
            wm, flat = step.white_matter_level, step.envelope_level
            assert record.envelope_level == pytest.approx(wm * (flat / wm) ** weight, rel=1e-6)
        levels.append(record.envelope_level if record.envelope_used else record.white_matter_level)
    assert levels == sorted(levels) and len(set(levels)) == len(levels)  # the level rises step by step, no jump
    assert "envelope_weight" not in step.as_dict()  # a step gate's record is as before
    with pytest.raises(ValueError, match="full_load_ml"):
        ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 20.0, 20.0)  # a ramp must rise
    with pytest.raises(ValueError, match="full_load_ml"):
        ContrastFloor(1.15, "voxel", "above-median", 0.0, 20.0)
    assert "from 10 ml, in part" in ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 10.0, 20.0).describe()


def test_the_floor_study_records_the_gated_envelope_floor_and_refuses_a_gate_without_it(tiny_model_dir, tmp_path):
    """benchmarks/contrast_floor_study.py --record writes experiment 54's floor (the envelope's level, its load gate)
    into a card the segmenter then reads back; a gate with another level is refused before the card is touched."""
    import subprocess
    import sys
    from pathlib import Path

    from deepwml.segmenter import Segmenter

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "contrast_floor_study.py"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = (model / "model.json").read_text()
    bad = subprocess.run([sys.executable, str(script), "--record", str(model), "--factors", "1.15", "--modes", "voxel",
                          "--min-load-ml", "20"], capture_output=True, text=True)
    assert bad.returncode != 0 and "min_load_ml" in bad.stderr and "Traceback" not in bad.stderr
    assert (model / "model.json").read_text() == before
    subprocess.run([sys.executable, str(script), "--record", str(model), "--factors", "1.15", "--modes", "voxel",
                    "--levels", ENVELOPE_LEVEL, "--min-load-ml", "20", "--why", "test"], check=True,
                   capture_output=True, text=True)
    entry = json.loads((model / "model.json").read_text())["contrast_floor"]
    assert entry == {"factor": 1.15, "mode": "voxel", "level": ENVELOPE_LEVEL, "min_load_ml": 20.0, "chosen": "test"}
    segmenter = Segmenter(str(model), brain_model=None)
    assert segmenter.contrast_floor_of(segmenter.model) == ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 20.0)
    # experiment 60's ramp travels the same way; a ramp that does not rise is refused before the card is touched
    before = (model / "model.json").read_text()
    flat = subprocess.run([sys.executable, str(script), "--record", str(model), "--factors", "1.15", "--modes", "voxel",
                           "--levels", ENVELOPE_LEVEL, "--min-load-ml", "20", "--full-load-ml", "15"],
                          capture_output=True, text=True)
    assert flat.returncode != 0 and "full_load_ml" in flat.stderr and "Traceback" not in flat.stderr
    assert (model / "model.json").read_text() == before
    subprocess.run([sys.executable, str(script), "--record", str(model), "--factors", "1.15", "--modes", "voxel",
                    "--levels", ENVELOPE_LEVEL, "--min-load-ml", "10", "--full-load-ml", "20", "--why", "ramp"],
                   check=True, capture_output=True, text=True)
    ramp = Segmenter(str(model), brain_model=None)
    assert ramp.contrast_floor_of(ramp.model) == ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, 10.0, 20.0)
    assert ramp.contrast_floor_setting()["full_load_ml"] == 20.0
    # --contrast-floor K keeps the card's level, gate and ramp
    ramp.contrast_floor = ContrastFloor(1.3)
    assert ramp.contrast_floor_of(ramp.model) == ContrastFloor(1.3, "voxel", ENVELOPE_LEVEL, 10.0, 20.0)


def test_segment_applies_the_cards_floor_records_it_and_the_option_overrides_it(phantom_flair, tiny_model_dir,
                                                                                tmp_path, capsys):
    model = with_card_floor(tiny_model_dir, tmp_path / "model", {"factor": 50.0, "mode": "voxel"})
    runs = {"card": [], "off": ["--contrast-floor", "0"], "low": ["--contrast-floor", "0.01"]}
    summaries = {}
    for name, extra in runs.items():
        assert main(["segment", str(phantom_flair), "-o", str(tmp_path / name), "--model", str(model),
                     "--threshold", "0.3", "-q", *extra]) == 0
        summaries[name] = json.loads((tmp_path / name / "flair.summary.json").read_text())
    card, off, low = summaries["card"], summaries["off"], summaries["low"]
    assert off["contrast_floor"] is None and off["total_volume_ml"] > 0  # the random tiny network marks plenty
    # 50x the white-matter level: nothing is that bright, so the card's floor removes every mark
    assert card["contrast_floor"]["factor"] == 50.0 and card["contrast_floor"]["white_matter_level"] > 0
    assert card["total_volume_ml"] == 0 and card["contrast_floor"]["removed_voxels"] > 0
    # 0.01x: only marks on air-dark voxels go, exactly those of the run without a floor
    marked = sitk.GetArrayFromImage(sitk.ReadImage(off["segmentation"])) > 0
    flair = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom_flair)))
    air = marked & (flair < 0.01 * low["contrast_floor"]["white_matter_level"])
    assert low["contrast_floor"]["removed_voxels"] == int(air.sum()) < int(marked.sum())
    assert low["total_volume_ml"] < off["total_volume_ml"]
    bad = with_card_floor(tiny_model_dir, tmp_path / "bad", {"factor": -1})
    assert main(["segment", str(phantom_flair), "-o", str(tmp_path / "refused"), "--model", str(bad), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "contrast_floor" in err[0] and not (tmp_path / "refused").exists()


def test_a_floor_given_without_a_level_reads_the_white_matter_as_the_cards_floor_does(tiny_model_dir, tmp_path):
    """``--contrast-floor K`` changes the factor, not how the level is read: a factor was chosen with its level."""
    from deepwml.segmenter import Segmenter

    flat = load_model(with_card_floor(tiny_model_dir, tmp_path / "flat", {"factor": 1.2, "level": "flat-above-p25"}),
                      framework="numpy")
    plain = load_model(tiny_model_dir, framework="numpy")
    segmenter = Segmenter(str(tiny_model_dir), brain_model=None, contrast_floor=ContrastFloor(1.3))
    assert segmenter.contrast_floor_of(flat) == ContrastFloor(1.3, "voxel", "flat-above-p25")
    assert segmenter.contrast_floor_of(plain) == ContrastFloor(1.3, "voxel", "above-median")
    chosen = Segmenter(str(tiny_model_dir), brain_model=None, contrast_floor=ContrastFloor(1.3, "voxel", "above-median"))
    assert chosen.contrast_floor_of(flat).level == "above-median"  # a level given is kept
    gated = load_model(with_card_floor(tiny_model_dir, tmp_path / "gated", {"factor": 1.15, "level": "flat-in-envelope",
                                                                              "min_load_ml": 20}), framework="numpy")
    assert segmenter.contrast_floor_of(gated) == ContrastFloor(1.3, "voxel", "flat-in-envelope", 20.0)  # and its gate


def test_cohort_fingerprint_changes_only_when_the_floor_is_asked_for():
    card, off, asked = CohortSettings(), CohortSettings(contrast_floor=0.0), CohortSettings(contrast_floor=1.15)
    assert "contrast_floor" not in card.fingerprint(0.8)  # earlier cohorts resume: the weights name the card's
    assert off.fingerprint(0.8)["contrast_floor"] == 0.0 and asked.fingerprint(0.8)["contrast_floor"] == 1.15
    assert len({card.segmenter_key(), off.segmenter_key(), asked.segmenter_key()}) == 3


def test_without_a_brain_mask_the_floor_is_not_applied_and_the_result_says_why(tiny_model_dir, tmp_path):
    from conftest import synthetic_flair
    from deepwml.segmenter import Segmenter

    model = with_card_floor(tiny_model_dir, tmp_path / "model", {"factor": 50.0, "mode": "voxel"})
    image = synthetic_flair(size=(64, 64, 6))
    result = Segmenter(str(model), brain_model=None).segment(image, threshold=0.3)
    summary = result.contrast_floor_summary()
    assert summary["removed_voxels"] == 0 and summary["white_matter_level"] is None
    assert "no brain mask" in summary["not_applied"]
    assert sitk.GetArrayFromImage(result.mask).any()  # at 50x white matter it would have removed every mark


def test_the_judges_cache_tells_a_floors_level_apart_and_keeps_the_keys_cached_before_levels(tmp_path):
    """benchmarks/judge_candidate.sh caches a model's reports under a key of its weights, threshold and
    floor: the same weights and factor read against another level are another model (experiment 45's
    candidate would otherwise have been given 1.7.0's cached reports)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "judge_candidate.sh"
    keys = []
    for name, floor in (("none", None), ("plain", {"factor": 1.15, "mode": "voxel"}),
                        ("flat", {"factor": 1.15, "mode": "voxel", "level": "flat-above-p25"}),
                        ("gated", {"factor": 1.15, "mode": "voxel", "level": "flat-in-envelope", "min_load_ml": 20.0})):
        folder = tmp_path / name
        folder.mkdir()
        card = {"weights_sha256": "54ab79715179ffff", "threshold": 0.7, **({"contrast_floor": floor} if floor else {})}
        (folder / "model.json").write_text(json.dumps(card))
        run = subprocess.run(["bash", "-c", f"BIN={Path(sys.executable).parent}; "
                              f"source <(sed -n '/^key()/,/; }}$/p' {script}); key {folder}"],
                             capture_output=True, text=True, check=True)
        keys.append(run.stdout.strip())
    assert keys == ["54ab79715179-t0.7", "54ab79715179-t0.7-voxel1.15", "54ab79715179-t0.7-voxel1.15-flat-above-p25",
                    "54ab79715179-t0.7-voxel1.15-flat-in-envelope-load20.0"]


def test_a_scan_read_ahead_with_its_flat_level_started_floors_as_one_call_does():
    """The segmenter reads the scan (FloorScan) on a second thread and may start the flat level before the marks say
    whether the gate opens: the probabilities and the record are those of apply_contrast_floor in one go, gate open
    or shut, and a flat level started for a shut gate is never read into the record."""
    from deepwml.contrast_floor import FloorScan, floor_marks

    flair, brain = folded_cortex_brain()
    probs = np.zeros(flair.shape, np.float32)
    flair[1:3, 35:40, 35:40], probs[1:3, 35:40, 35:40] = 135.0, 0.9
    envelope = np.zeros(flair.shape, bool)
    envelope[:, 22:58, 22:58] = True
    for min_load_ml in (0.05, 0.06):
        floor = ContrastFloor(1.15, "voxel", ENVELOPE_LEVEL, min_load_ml)
        once = apply_contrast_floor(probs, flair, brain, 0.5, floor, envelope=envelope, load_voxels=9)
        for start_flat in (True, False):
            ahead = floor_marks(probs, FloorScan(flair, brain, floor, start_flat=start_flat), 0.5,
                                envelope=envelope, load_voxels=9)
            np.testing.assert_array_equal(ahead[0], once[0])
            assert ahead[1] == once[1] and ahead[1].envelope_used == (min_load_ml == 0.05)


def test_the_scan_read_ahead_by_run_network_gives_what_finish_reads_itself(phantom_flair, tmp_path):
    """run_network starts the floor's scan (with the envelope floor's flat level) while the white-matter networks run;
    finish given canvas probabilities without it (prepared elsewhere) reads it itself. Both must give the same
    probabilities and the same floor record, voxel for voxel, gate open (53's form) or the bundled floor."""
    from deepwml.model_files import DEFAULT_MODEL_DIR
    from deepwml.segmenter import Segmenter

    image = sitk.ReadImage(str(phantom_flair))
    card = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["contrast_floor"]
    envelope = with_card_floor(DEFAULT_MODEL_DIR, tmp_path / "envelope",
                               {**card, "level": ENVELOPE_LEVEL, "min_load_ml": 0.0, "full_load_ml": 0.0})  # 53's form
    for model in (None, str(envelope)):
        segmenter = Segmenter(model, device="cpu")
        prepared = segmenter.prepare(image)
        probs = segmenter.run_network(prepared)
        assert prepared.floor_scan is not None  # read ahead
        ahead = segmenter.finish(prepared, probs, threshold=0.3)
        prepared.floor_scan = None
        itself = segmenter.finish(prepared, probs, threshold=0.3)
        assert (sitk.GetArrayFromImage(ahead.probabilities) == sitk.GetArrayFromImage(itself.probabilities)).all()
        assert ahead.contrast_floor_summary() == itself.contrast_floor_summary()
        assert ahead.contrast_floor_summary()["removed_voxels"] > 0
    assert ahead.contrast_floor_summary()["envelope_used"]
