"""The white-matter restriction: marked components away from the white matter are dropped (deepwml.white_matter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import synthetic_flair
from deepwml.cli import main
from deepwml.errors import ModelFileError
from deepwml.model_files import ModelCard, save_model
from deepwml.segmenter import Segmenter
from deepwml.unet import UNet2D, UNetConfig
from deepwml.white_matter import MAX_DROPPED_ML, MIN_NEAR_FRACTION, far_components, near_white_matter


@pytest.fixture(scope="module")
def tiny_white_matter_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(2)
    net = UNet2D(UNetConfig(base_channels=4, input_pool=2))
    out = tmp_path_factory.mktemp("tiny_wm")
    save_model(net, ModelCard("tiny-wm", "0.0.1", net.config, notes="random weights, tests only",
                              task="white-matter"), out)
    return out


def test_far_components_drops_whole_components_by_their_share_near_the_white_matter():
    marked = np.zeros((3, 20, 20), bool)
    marked[1, 2:6, 2:6] = True      # A: 16 voxels, 12 near (kept)
    marked[1, 10:14, 10:14] = True  # B: 16 voxels, 4 near (dropped)
    marked[0:3, 17, 17] = True      # C: 3 voxels across slices (26-connected), none near (dropped)
    near = np.zeros_like(marked)
    near[1, 2:5, 2:6] = True
    near[1, 10, 10:14] = True
    drop, count = far_components(marked, near)
    assert count == 2
    assert not drop[1, 2:6, 2:6].any()
    assert drop[1, 10:14, 10:14].all() and drop[0:3, 17, 17].all()
    assert not (drop & ~marked).any()  # only marked voxels are ever dropped
    # exactly at the share: kept (fewer than MIN_NEAR_FRACTION is what drops)
    half = np.zeros_like(marked)
    half[1, 10:12, 10:14] = True
    assert MIN_NEAR_FRACTION == 0.5 and not far_components(marked, half)[0][1, 10:14, 10:14].any()
    assert far_components(np.zeros_like(marked), near)[1] == 0
    # a component larger than the cap is never dropped, however far from the white matter (B has 16 voxels)
    capped, n = far_components(marked, near, max_voxels=15)
    assert n == 1 and capped[0:3, 17, 17].all() and not capped[1, 10:14, 10:14].any()


def test_near_white_matter_grows_in_plane_by_whole_pixels_of_its_grid():
    white = np.zeros((2, 15, 15), bool)
    white[0, 7, 7] = True
    grown = near_white_matter(white, grid_pixel_mm=1.9, near_mm=2.0)  # 2 mm on a 1.9 mm grid: 2 pixels
    assert grown[0, 7, 9] and grown[0, 7, 5] and not grown[0, 7, 10]
    assert not grown[1].any()  # in-plane only
    assert np.array_equal(near_white_matter(white, grid_pixel_mm=1.9, near_mm=0.0), white)


def test_white_matter_models_are_used_only_for_their_task(tiny_model_dir, tiny_white_matter_model_dir):
    with pytest.raises(ModelFileError, match="is a lesion model, not a white-matter model"):
        Segmenter(str(tiny_model_dir), device="cpu", white_matter_model=str(tiny_model_dir))
    with pytest.raises(ModelFileError, match="is a white-matter model, not a lesion model"):
        Segmenter(str(tiny_white_matter_model_dir), device="cpu", white_matter_model=None)


def _left_half(batch: np.ndarray) -> np.ndarray:
    logits = np.full(batch.shape, -5.0, np.float32)
    logits[..., : batch.shape[-1] // 2] = 5.0
    return logits


def test_segmenter_drops_marks_away_from_the_white_matter_and_records_it(tiny_model_dir, tiny_white_matter_model_dir):
    """End to end on the input's grid: a white-matter network that calls the left half of the window white matter
    keeps the marks there exactly, removes the components that lie in the right half, and says how much."""
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    plain = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None, white_matter_model=None)
    restricted = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None,
                           white_matter_model=str(tiny_white_matter_model_dir))
    restricted.white_matter_network = _left_half
    for segmenter in (plain, restricted):  # marks: two blobs, one in each half of the canvas
        segmenter.network = _two_blobs
    a = sitk.GetArrayFromImage(plain.segment(image, threshold=0.5).probabilities)
    result = restricted.segment(image, threshold=0.5)
    b = sitk.GetArrayFromImage(result.probabilities)
    entry = result.white_matter_summary()
    assert entry["applied"] and entry["model"] == "tiny-wm@0.0.1" and entry["removed_components"] == 1
    assert entry["max_dropped_ml"] == MAX_DROPPED_ML
    assert entry["sha256"] == json.loads((tiny_white_matter_model_dir / "model.json").read_text())["weights_sha256"]
    lost = (a >= 0.5) & (b < 0.5)
    assert lost.any() and ((b >= 0.5) & (a >= 0.5)).any()  # one blob gone, the other kept
    assert np.all((b == a) | (b == 0))  # kept exactly or zeroed
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000
    assert entry["removed_ml"] == pytest.approx(np.count_nonzero(lost) * voxel_ml, abs=1e-3)
    assert "white_matter_network" in result.timings_s


def _two_blobs(batch: np.ndarray) -> np.ndarray:
    logits = np.full(batch.shape, -5.0, np.float32)
    w = batch.shape[-1]
    h = batch.shape[-2]
    logits[..., h // 2 - 3:h // 2 + 3, w // 4 - 3:w // 4 + 3] = 5.0
    logits[..., h // 2 - 3:h // 2 + 3, 3 * w // 4 - 3:3 * w // 4 + 3] = 5.0
    return logits


def test_a_white_matter_mask_that_finds_almost_nothing_is_not_applied(tiny_model_dir, tiny_white_matter_model_dir,
                                                                     caplog):
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    restricted = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None,
                           white_matter_model=str(tiny_white_matter_model_dir))
    restricted.white_matter_network = lambda batch: np.full(batch.shape, -5.0, np.float32)
    restricted.network = _two_blobs
    result = restricted.segment(image, threshold=0.5)
    assert not result.white_matter.applied and "not trusted" in result.white_matter.reason
    assert "not trusted" in caplog.text
    assert np.count_nonzero(sitk.GetArrayFromImage(result.probabilities) >= 0.5) > 0


def test_cli_and_cohort_carry_the_white_matter_setting(phantom_flair, tiny_model_dir, tiny_white_matter_model_dir,
                                                       tmp_path):
    from deepwml.cohort import CohortSettings

    assert main(["segment", str(phantom_flair), "-o", str(tmp_path / "on"), "--model", str(tiny_model_dir),
                 "--white-matter-model", str(tiny_white_matter_model_dir), "-q"]) == 0
    assert main(["segment", str(phantom_flair), "-o", str(tmp_path / "off"), "--model", str(tiny_model_dir),
                 "--no-white-matter", "-q"]) == 0
    on = json.loads((tmp_path / "on" / "flair.summary.json").read_text())
    off = json.loads((tmp_path / "off" / "flair.summary.json").read_text())
    assert off["white_matter"] is None and on["white_matter"]["model"] == "tiny-wm@0.0.1"
    with_wm, without = CohortSettings(white_matter_model="x"), CohortSettings(white_matter_model=None)
    assert with_wm.fingerprint(0.8)["white_matter"] is True and "white_matter" not in without.fingerprint(0.8)
    assert with_wm.segmenter_key() != without.segmenter_key()


def test_synthetic_heads_carry_their_white_matter_truth():
    from deepwml.synthesis.generator import make_case

    case = make_case(0, 96, version=3)
    white = sitk.GetArrayFromImage(case.white_matter) > 0
    truth = sitk.GetArrayFromImage(case.truth) > 0
    brain = sitk.GetArrayFromImage(case.brain) > 0
    assert case.white_matter.GetSpacing() == case.flair.GetSpacing()
    assert not (truth & ~white).any()  # the lesions lie in it by definition
    assert 0.25 < white.sum() / brain.sum() < 0.6  # white matter is a large part of the brain, not all of it
    assert (white & ~brain).sum() < 0.02 * white.sum()


def test_bundled_white_matter_model_is_the_default_and_finds_the_phantom_white_matter(phantom_flair):
    """The shipped white-matter network on a phantom head (one template brain; it was trained on real-anatomy heads):
    on by default, a plausible white-matter share, and its ONNX graph reproduces its weights."""
    from deepwml.model_files import load_model
    from deepwml.onnx_backend import OnnxNetwork, check_reproduces_weights, onnx_file_of
    from deepwml.white_matter import WHITE_MATTER_MODEL_DIR, load_white_matter_model

    model = load_white_matter_model()
    assert model.card["task"] == "white-matter" and model.path.parent == WHITE_MATTER_MODEL_DIR
    assert "synthetic" in model.card["notes"] and "no real scan" in model.card["notes"]
    segmenter = Segmenter(device="cpu")
    assert segmenter.white_matter_model is not None and segmenter.white_matter_ran_file["file"] == "model.onnx"
    prepared = segmenter.prepare(sitk.ReadImage(str(phantom_flair)))
    segmenter.run_network(prepared)
    share = segmenter._mask_share(prepared, prepared.white_matter, prepared.brain.regions(0.0)[0])
    assert 0.2 < share < 0.7, share  # white matter, not the whole brain and not nothing
    numpy_model = load_model(WHITE_MATTER_MODEL_DIR, framework="numpy")
    path = onnx_file_of(numpy_model)
    assert check_reproduces_weights(OnnxNetwork(path, numpy_model.config.divisor), numpy_model, path) < 1e-3
