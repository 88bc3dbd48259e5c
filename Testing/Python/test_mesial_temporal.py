"""The mesial-temporal exclusion: marked components lying mostly on the hippocampus and amygdala are dropped
(deepwml.mesial_temporal, part of the white-matter restriction)."""

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
from deepwml.mesial_temporal import MAX_MESIAL_TEMPORAL_SHARE, MIN_INSIDE_FRACTION
from deepwml.model_files import ModelCard, save_model
from deepwml.segmenter import Segmenter
from deepwml.unet import UNet2D, UNetConfig
from deepwml.white_matter import MAX_DROPPED_ML, inside_components


def _tiny_mask_model(out: Path, name: str, task: str) -> Path:
    torch.manual_seed(3)
    net = UNet2D(UNetConfig(base_channels=4, input_pool=2))
    save_model(net, ModelCard(name, "0.0.1", net.config, notes="random weights, tests only", task=task), out)
    return out


@pytest.fixture(scope="module")
def mask_models(tmp_path_factory) -> tuple[Path, Path]:
    """(white-matter, mesial-temporal) tiny models; the tests replace their networks."""
    return (_tiny_mask_model(tmp_path_factory.mktemp("wm"), "tiny-wm", "white-matter"),
            _tiny_mask_model(tmp_path_factory.mktemp("mt"), "tiny-mt", "mesial-temporal"))


def test_inside_components_drops_whole_components_by_their_share_inside():
    marked = np.zeros((3, 20, 20), bool)
    marked[1, 2:6, 2:6] = True      # A: 16 voxels, 4 inside (kept)
    marked[1, 10:14, 10:14] = True  # B: 16 voxels, 8 inside: exactly half (dropped)
    marked[0:3, 17, 17] = True      # C: 3 voxels across slices (26-connected), all inside (dropped)
    inside = np.zeros_like(marked)
    inside[1, 2, 2:6] = True
    inside[1, 10:12, 10:14] = True
    inside[:, 17, 17] = True
    drop, count = inside_components(marked, inside, MIN_INSIDE_FRACTION)
    assert MIN_INSIDE_FRACTION == 0.5 and count == 2
    assert not drop[1, 2:6, 2:6].any() and drop[1, 10:14, 10:14].all() and drop[0:3, 17, 17].all()
    assert not (drop & ~marked).any()
    capped, n = inside_components(marked, inside, MIN_INSIDE_FRACTION, max_voxels=15)  # B is above the cap
    assert n == 1 and capped[0:3, 17, 17].all() and not capped[1, 10:14, 10:14].any()
    assert inside_components(np.zeros_like(marked), inside, 0.5)[1] == 0


def _everything(batch: np.ndarray) -> np.ndarray:
    return np.full(batch.shape, 5.0, np.float32)


def _right_blob(batch: np.ndarray) -> np.ndarray:
    """The right one of :func:`_two_blobs`' blobs and a little around it (a small share of the head)."""
    logits = np.full(batch.shape, -5.0, np.float32)
    h, w = batch.shape[-2:]
    logits[..., h // 2 - 6:h // 2 + 6, 3 * w // 4 - 6:3 * w // 4 + 6] = 5.0
    return logits


def _two_blobs(batch: np.ndarray) -> np.ndarray:
    logits = np.full(batch.shape, -5.0, np.float32)
    h, w = batch.shape[-2:]
    logits[..., h // 2 - 3:h // 2 + 3, w // 4 - 3:w // 4 + 3] = 5.0
    logits[..., h // 2 - 3:h // 2 + 3, 3 * w // 4 - 3:3 * w // 4 + 3] = 5.0
    return logits


def _segmenters(tiny_model_dir: Path, mask_models: tuple[Path, Path]) -> tuple[Segmenter, Segmenter]:
    """(white-matter restriction only, with the mesial-temporal exclusion); every mark lies in white matter."""
    white, mesial = mask_models
    plain = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None, white_matter_model=str(white),
                      mesial_temporal_model=None)
    excluding = Segmenter(str(tiny_model_dir), device="cpu", brain_model=None, white_matter_model=str(white),
                          mesial_temporal_model=str(mesial))
    for segmenter in (plain, excluding):
        segmenter.network = _two_blobs
        segmenter.white_matter_network = _everything
    return plain, excluding


def test_segmenter_drops_marks_on_the_mesial_temporal_mask_and_records_it(tiny_model_dir, mask_models):
    """End to end on the input's grid: a mesial-temporal network that calls the right blob's place hippocampus
    removes the blob there exactly, keeps the other, and the white-matter record says how much."""
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    plain, excluding = _segmenters(tiny_model_dir, mask_models)
    excluding.mesial_temporal_network = _right_blob
    a = sitk.GetArrayFromImage(plain.segment(image, threshold=0.5).probabilities)
    result = excluding.segment(image, threshold=0.5)
    b = sitk.GetArrayFromImage(result.probabilities)
    entry = result.white_matter_summary()
    assert entry["removed_components"] == 0 and plain.segment(image, threshold=0.5).white_matter_summary()[
        "mesial_temporal"] is None
    mesial = entry["mesial_temporal"]
    assert mesial["applied"] and mesial["model"] == "tiny-mt@0.0.1" and mesial["removed_components"] == 1
    assert mesial["min_fraction"] == MIN_INSIDE_FRACTION and mesial["max_dropped_ml"] == MAX_DROPPED_ML
    assert mesial["sha256"] == json.loads((mask_models[1] / "model.json").read_text())["weights_sha256"]
    lost = (a >= 0.5) & (b < 0.5)
    assert lost.any() and ((b >= 0.5) & (a >= 0.5)).any()  # one blob gone, the other kept
    assert np.all((b == a) | (b == 0))
    assert mesial["removed_ml"] == pytest.approx(np.count_nonzero(lost) * float(np.prod(image.GetSpacing())) / 1000,
                                                 abs=1e-3)
    assert "mesial_temporal_network" in result.timings_s


def test_a_mesial_temporal_mask_that_covers_too_much_is_not_applied(tiny_model_dir, mask_models, caplog):
    image = synthetic_flair(size=(64, 64, 6), spacing=(1.0, 1.0, 5.0))
    plain, excluding = _segmenters(tiny_model_dir, mask_models)
    excluding.mesial_temporal_network = _everything
    result = excluding.segment(image, threshold=0.5)
    mesial = result.white_matter_summary()["mesial_temporal"]
    assert not mesial["applied"] and "not trusted" in mesial["reason"] and f"{MAX_MESIAL_TEMPORAL_SHARE:.0%}" in \
        mesial["reason"]
    assert "not trusted" in caplog.text
    assert np.array_equal(sitk.GetArrayFromImage(result.probabilities),
                          sitk.GetArrayFromImage(plain.segment(image, threshold=0.5).probabilities))


def test_mesial_temporal_models_are_used_only_for_their_task_and_only_with_the_white_matter(tiny_model_dir,
                                                                                          mask_models):
    white, mesial = mask_models
    with pytest.raises(ModelFileError, match="not a mesial-temporal model"):
        Segmenter(str(tiny_model_dir), device="cpu", white_matter_model=str(white), mesial_temporal_model=str(white))
    without_white = Segmenter(str(tiny_model_dir), device="cpu", white_matter_model=None,
                              mesial_temporal_model=str(mesial))
    assert without_white.mesial_temporal_model is None  # part of the white-matter restriction


def test_cli_and_cohort_carry_the_mesial_temporal_setting(phantom_flair, tiny_model_dir, mask_models, tmp_path):
    from deepwml.cohort import CohortSettings

    white, mesial = mask_models
    base = ["segment", str(phantom_flair), "--model", str(tiny_model_dir), "--white-matter-model", str(white), "-q"]
    assert main(base + ["-o", str(tmp_path / "on"), "--mesial-temporal-model", str(mesial)]) == 0
    assert main(base + ["-o", str(tmp_path / "off"), "--mesial-temporal-model", str(mesial),
                        "--no-mesial-temporal"]) == 0
    on = json.loads((tmp_path / "on" / "flair.summary.json").read_text())
    off = json.loads((tmp_path / "off" / "flair.summary.json").read_text())
    assert on["white_matter"]["mesial_temporal"]["model"] == "tiny-mt@0.0.1"
    assert off["white_matter"]["mesial_temporal"] is None
    with_mt = CohortSettings(white_matter_model="w", mesial_temporal_model="m")
    without = CohortSettings(white_matter_model="w", mesial_temporal_model=None)
    no_white = CohortSettings(white_matter_model=None, mesial_temporal_model="m")
    assert with_mt.fingerprint(0.8)["mesial_temporal"] is True
    assert "mesial_temporal" not in without.fingerprint(0.8) and "mesial_temporal" not in no_white.fingerprint(0.8)
    assert with_mt.segmenter_key() != without.segmenter_key()


def test_synthetic_heads_carry_their_mesial_temporal_truth():
    from deepwml.synthesis.generator import make_case

    case = make_case(0, 96, version=12)
    mesial = sitk.GetArrayFromImage(case.mesial_temporal) > 0
    truth = sitk.GetArrayFromImage(case.truth) > 0
    brain = sitk.GetArrayFromImage(case.brain) > 0
    white = sitk.GetArrayFromImage(case.white_matter) > 0
    assert case.mesial_temporal.GetSpacing() == case.flair.GetSpacing()
    assert not (mesial & truth).any()  # never a lesion
    assert 0.002 < mesial.sum() / brain.sum() < 0.03  # hippocampus + amygdala: ~1 % of a brain
    assert (mesial & white).sum() < 0.1 * mesial.sum() and (mesial & ~brain).sum() < 0.05 * mesial.sum()
