"""The thin-slice model (deepwml.thin_model): which volumes go to it, and what every output says ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import synthetic_flair

from deepwml import segmenter as segmenter_module
from deepwml import thin_model as thin_module
from deepwml.cli import main
from deepwml.cohort import CohortSettings
from deepwml.cohort.settings import model_identity
from deepwml.cohort.task import cached_segmenter
from deepwml.errors import DeepWMLError, ModelFileError
from deepwml.model_files import ModelCard, load_model, save_model
from deepwml.segmenter import Segmenter
from deepwml.thin_model import resolve_thin_model, sees_thin_slices
from deepwml.unet import UNet2D, UNetConfig


def _tiny(out: Path, name: str, seed: int, threshold: float = 0.5, task: str = "lesion", depth: int = 4) -> Path:
    torch.manual_seed(seed)
    net = UNet2D(UNetConfig(base_channels=4, depth=depth))
    save_model(net, ModelCard(name, "0.0.1", net.config, notes="random weights, tests only", threshold=threshold,
                              task=task), out)
    return out


@pytest.fixture(scope="module")
def thin_dir(tmp_path_factory) -> Path:
    """A lesion model of other weights and another threshold than tiny_model_dir's."""
    return _tiny(tmp_path_factory.mktemp("tiny_thin"), "tiny-thin", seed=1, threshold=0.3)


def _segmenter(model: Path, thin, **kwargs) -> Segmenter:
    return Segmenter(str(model), device="cpu", brain_model=None, thin_model=thin, **kwargs)


def test_only_thin_slices_go_to_the_thin_model(tiny_model_dir, thin_dir):
    seg = _segmenter(tiny_model_dir, str(thin_dir))
    thick = seg.segment(synthetic_flair(spacing=(0.9, 0.9, 5.0)))
    assert thick.model is seg.model and thick.threshold == 0.5 and thick.ran_file == seg.ran_file
    thin_image = synthetic_flair(spacing=(0.9, 0.9, 1.0))
    thin = seg.segment(thin_image)
    assert thin.model.model_id == "tiny-thin@0.0.1" and thin.threshold == 0.3  # the thin model's own threshold
    assert thin.ran_file["sha256"] == thin.model.card["weights_sha256"]  # PyTorch: its weights ran
    alone = _segmenter(thin_dir, None).segment(thin_image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(thin.probabilities),
                                  sitk.GetArrayFromImage(alone.probabilities))
    # seen as 3 mm slabs, the network sees thick slices: the lesion model runs
    slabs = _segmenter(tiny_model_dir, str(thin_dir), thin_slab_mm=3.0).segment(thin_image)
    assert slabs.slab_mm > 0 and slabs.model.model_id == "tiny-test@0.0.1"
    # a threshold the caller gives is used whichever model ran
    assert seg.segment(thin_image, threshold=0.6).threshold == 0.6


def test_sees_thin_slices():
    assert sees_thin_slices(1.0, None) and sees_thin_slices(1.99, None)
    assert not sees_thin_slices(2.0, None) and not sees_thin_slices(1.0, [(0, 3)])


def test_auto_pairs_only_with_the_bundled_model(tiny_model_dir, thin_dir, monkeypatch):
    tiny = load_model(tiny_model_dir, framework="numpy")
    assert resolve_thin_model("auto", tiny) is None  # a model the user chose is not replaced on thin slices
    assert resolve_thin_model(None, tiny) is None and resolve_thin_model("none", tiny) is None
    monkeypatch.setattr(thin_module, "DEFAULT_MODEL_DIR", tiny_model_dir)
    monkeypatch.setattr(thin_module, "THIN_MODEL_DIR", thin_dir)
    assert resolve_thin_model("auto", tiny).model_id == "tiny-thin@0.0.1"
    assert resolve_thin_model("bundled", tiny).model_id == "tiny-thin@0.0.1"
    monkeypatch.setattr(thin_module, "THIN_MODEL_DIR", tiny_model_dir.parent / "no-such-model")
    assert resolve_thin_model("auto", tiny) is None  # an extension built without one routes nothing
    with pytest.raises(ModelFileError, match="model card not found"):
        resolve_thin_model("bundled", tiny)


def test_a_wrong_thin_model_is_refused_in_one_line(tiny_model_dir, tmp_path):
    tiny = load_model(tiny_model_dir, framework="numpy")
    brain = _tiny(tmp_path / "brain", "tiny-brain", seed=2, task="brain")
    with pytest.raises(ModelFileError, match="is a brain model, not a lesion model; --thin-model"):
        resolve_thin_model(str(brain), tiny)
    shallow = _tiny(tmp_path / "shallow", "tiny-shallow", seed=3, depth=3)
    with pytest.raises(ModelFileError, match="divisible by 8, the lesion model's by 16"):
        resolve_thin_model(str(shallow), tiny)


def test_a_thin_model_that_cannot_run_here_is_refused_at_once(thin_dir, monkeypatch):
    with pytest.raises(ModelFileError, match="has no int8 graph"):  # refused at start, not at the first thin volume
        Segmenter(None, device="cpu", precision="int8", brain_model=None, thin_model=str(thin_dir))
    # float32 without an ONNX export needs PyTorch (the bundled lesion model itself runs in ONNX Runtime)
    monkeypatch.setattr(segmenter_module, "torch_installed", lambda: False)
    with pytest.raises(RuntimeError, match="tiny-thin@0.0.1 needs PyTorch here"):
        Segmenter(None, device="cpu", brain_model=None, thin_model=str(thin_dir))


def test_summary_names_the_model_that_ran(tiny_model_dir, thin_dir, tmp_path):
    for name, z_mm, expected, is_thin in (("thick", 5.0, "tiny-test@0.0.1", False),
                                          ("thin", 1.0, "tiny-thin@0.0.1", True)):
        path = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(synthetic_flair(spacing=(0.9, 0.9, z_mm)), str(path))
        assert main(["segment", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                     "--thin-model", str(thin_dir), "--no-brain-mask", "--device", "cpu", "-q"]) == 0
        summary = json.loads((tmp_path / "out" / f"{name}.summary.json").read_text())
        assert summary["model"]["id"] == expected and summary["model"]["thin_slice_model"] is is_thin
        assert summary["threshold"] == (0.3 if is_thin else 0.5)
        assert summary["model"]["weights_sha256"] == load_model(thin_dir if is_thin else tiny_model_dir,
                                                                framework="numpy").card["weights_sha256"]


def test_cohort_records_and_checks_the_thin_model(tiny_model_dir, thin_dir):
    main_id, thin_id = model_identity(str(tiny_model_dir), str(thin_dir))
    assert main_id.id == "tiny-test@0.0.1" and thin_id.id == "tiny-thin@0.0.1" and thin_id.threshold == 0.3
    assert model_identity(str(tiny_model_dir), "auto")[1] is None
    settings = CohortSettings(model=str(tiny_model_dir), device="cpu", thin_model=str(thin_dir), brain_model=None)
    # the fingerprint names the thin model by its weights, not by a path that differs between machines
    assert settings.fingerprint(0.5, thin_id)["thin_model"] == {"id": thin_id.id, "weights_sha256": thin_id.weights_sha256}
    assert CohortSettings().fingerprint(0.5)["thin_model"] is None
    assert cached_segmenter(settings, (main_id.weights_sha256, thin_id.weights_sha256)).thin_model is not None
    with pytest.raises(DeepWMLError, match="weights differ from the client's; give every worker the same --model "
                                           "and --thin-model"):
        cached_segmenter(settings, (main_id.weights_sha256, "0" * 64))
    with pytest.raises(DeepWMLError, match="weights differ"):
        cached_segmenter(settings, (main_id.weights_sha256,))  # the client resolved no thin model

