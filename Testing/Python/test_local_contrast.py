"""The local contrast test (deepwml.local_contrast; docs/EXPERIMENTS.md, experiment 56): a small mark no brighter than
the tissue right around it is dropped, a bright one, a large one and one without surrounding tissue are kept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from deepwml.contrast_floor import ContrastFloor, card_contrast_floor
from deepwml.errors import ModelFileError
from deepwml.local_contrast import LocalContrast, apply_local_contrast, shell_footprint
from deepwml.model_files import load_model

SETTING = LocalContrast(1.10, shell_mm=3.0, max_ml=1.0, tissue_factor=0.8, min_shell_voxels=20)


def white_matter_with_marks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """White matter at 100 with a ventricle (CSF, 20); marked (0.9): a bright lesion (150), a faint blob (105) in the
    white matter, a faint blob (105) against the ventricle, and a mark on bright tissue (cortex-like 120) that is as
    bright as the tissue around it. 1 mm voxels."""
    flair = np.full((4, 60, 60), 100.0, np.float32)
    brain = np.ones(flair.shape, bool)
    probs = np.zeros(flair.shape, np.float32)
    flair[:, 40:55, 5:20] = 20.0  # the ventricle
    flair[1:3, 10:14, 10:14], probs[1:3, 10:14, 10:14] = 150.0, 0.9  # bright lesion
    flair[1:3, 10:14, 30:34], probs[1:3, 10:14, 30:34] = 105.0, 0.9  # faint blob in white matter
    flair[1:3, 36:40, 10:14], probs[1:3, 36:40, 10:14] = 105.0, 0.9  # faint blob on the ventricle's edge
    flair[:, 25:35, 40:58] = 120.0  # bright grey matter ...
    probs[1:3, 28:32, 46:50] = 0.9  # ... marked in its middle
    return flair, brain, probs


def test_a_faint_small_mark_goes_and_a_bright_one_stays():
    flair, brain, probs = white_matter_with_marks()
    kept, applied = apply_local_contrast(probs, flair, brain, 100.0, 0.5, SETTING, (1.0, 1.0), 0.001)
    assert (kept[1:3, 10:14, 10:14] == 0.9).all()  # 150 against 100: a lesion
    assert (kept[1:3, 10:14, 30:34] == 0).all()  # 105 against 100: below 1.10x
    # the ventricle is not the reference (CSF below 0.8x the white matter): 105 against the white matter beside it
    assert (kept[1:3, 36:40, 10:14] == 0).all()
    assert (kept[1:3, 28:32, 46:50] == 0).all()  # as bright as the tissue around it
    assert applied.removed_components == 3 and applied.judged_components == 4 and applied.no_shell_components == 0
    assert applied.removed_ml == pytest.approx(3 * 32 * 0.001)
    assert (probs[1:3, 10:14, 30:34] == 0.9).all()  # input untouched
    # at a lower ratio the faint blobs (1.05x) stay
    assert apply_local_contrast(probs, flair, brain, 100.0, 0.5, LocalContrast(1.04), (1.0, 1.0), 0.001
                                )[1].removed_components == 1


def test_large_marks_and_marks_without_surrounding_tissue_are_kept():
    flair, brain, probs = white_matter_with_marks()
    big = apply_local_contrast(probs, flair, brain, 100.0, 0.5, LocalContrast(1.10, max_ml=0.01), (1.0, 1.0), 0.001)
    assert big[1].judged_components == 0 and big[0] is probs  # 32 voxels of 1 ul: above 0.01 ml, never judged
    no_brain = np.zeros_like(brain)
    kept, applied = apply_local_contrast(probs, flair, no_brain, 100.0, 0.5, SETTING, (1.0, 1.0), 0.001)
    assert kept is probs and applied.no_shell_components == 4 and applied.removed_components == 0
    assert apply_local_contrast(np.zeros_like(probs), flair, brain, 100.0, 0.5, SETTING, (1.0, 1.0), 0.001
                                )[1].judged_components == 0


def test_the_shell_is_in_millimetres_in_plane():
    assert shell_footprint(3.0, (1.0, 1.0)).shape == (1, 7, 7)
    assert shell_footprint(3.0, (0.5, 1.5)).shape == (1, 13, 5)  # 6 rows and 2 columns each side
    assert shell_footprint(3.0, (4.0, 4.0)).shape == (1, 3, 3)  # at least one pixel


@pytest.mark.parametrize("entry", [{"ratio": 0}, {"ratio": "bright"}, {"shell_mm": 3}, {"ratio": 1.1, "radius": 2},
                                   [1.1]])
def test_a_malformed_card_entry_refuses_the_model(tiny_model_dir, tmp_path, entry):
    model = with_floor(tiny_model_dir, tmp_path / "model", {"factor": 1.15, "local": entry})
    with pytest.raises(ModelFileError, match="contrast_floor.local"):
        card_contrast_floor(load_model(model, framework="numpy"))


def test_the_card_entry_round_trips_and_a_floor_option_keeps_it(tiny_model_dir, tmp_path):
    from deepwml.segmenter import Segmenter

    model = with_floor(tiny_model_dir, tmp_path / "model", {"factor": 1.15, "local": {"ratio": 1.1}})
    floor = card_contrast_floor(load_model(model, framework="numpy"))
    assert floor.local == LocalContrast(1.1) and LocalContrast.from_card(floor.local.as_dict()) == floor.local
    assert "1.1x the tissue within 3 mm" in floor.describe()
    loaded = load_model(model, framework="numpy")
    assert Segmenter(str(model), brain_model=None, contrast_floor=ContrastFloor(1.3)).contrast_floor_of(
        loaded).local == LocalContrast(1.1)


def test_segment_records_the_test_and_removes_only_small_marks(phantom_flair, tmp_path):
    """End to end with the bundled networks: the card's test runs last, removes whole small components only, and the
    summary says what it did; without it the marks are the bundled card's."""
    from deepwml.model_files import DEFAULT_MODEL_DIR
    from deepwml.segmenter import Segmenter

    image = sitk.ReadImage(str(phantom_flair))
    plain = Segmenter(str(DEFAULT_MODEL_DIR), device="cpu").segment(image, threshold=0.3)
    floor = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["contrast_floor"]
    strict = with_floor(DEFAULT_MODEL_DIR, tmp_path / "strict", {**floor, "local": {"ratio": 3.0}})
    result = Segmenter(str(strict), device="cpu").segment(image, threshold=0.3)
    local = result.contrast_floor_summary()["local"]
    assert "local" not in plain.contrast_floor_summary() and local["ratio"] == 3.0
    a, b = (sitk.GetArrayFromImage(r.mask) > 0 for r in (plain, result))
    assert not (b & ~a).any()  # only removes
    gone = a & ~b
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000
    assert local["removed_components"] > 0 and local["removed_ml"] == pytest.approx(gone.sum() * voxel_ml, abs=1e-4)
    # 3x its surroundings: no small mark on this phantom is that bright, so every judged one with a shell went
    assert local["removed_components"] == local["judged_components"] - local["no_shell_components"]
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(a.astype(np.uint8)), True))
    for label in np.unique(labels[gone]):  # whole components, each at most 1 ml
        assert gone[labels == label].all() and (labels == label).sum() * voxel_ml <= 1.0


def with_floor(model_dir, out, entry):
    shutil.copytree(model_dir, out)
    card = json.loads((out / "model.json").read_text())
    card["contrast_floor"] = entry
    (out / "model.json").write_text(json.dumps(card))
    return out
