"""ONNX Runtime backend: same answers as PyTorch, chosen automatically on the CPU, refused when
the ONNX file does not belong to the weights."""

from __future__ import annotations

import json
import shutil

import pytest
import SimpleITK as sitk

from conftest import synthetic_flair
from deepwml.cli import main
from deepwml.errors import ModelFileError
from deepwml.image_io import load_flair
from deepwml.model_files import DEFAULT_MODEL_DIR, load_model
from deepwml.onnx_backend import ONNX_NAME, export_onnx
from deepwml.preprocessing import image_to_canvas
from deepwml.segmenter import Segmenter


@pytest.fixture()
def exported_tiny(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, model_dir)
    export_onnx(load_model(model_dir))
    return model_dir


def test_bundled_model_ships_onnx_and_auto_uses_it_on_cpu(phantom_flair):
    card = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert card["onnx"]["exported_from_weights_sha256"] == card["weights_sha256"]
    onnx = Segmenter(device="cpu", precision="float32")
    assert onnx.backend == "onnx"
    torch_seg = Segmenter(onnx.model, device="cpu", precision="float32", backend="torch")
    img = load_flair(phantom_flair)
    canvas, _, _ = image_to_canvas(img)
    p_onnx, p_torch = onnx.predict_canvas(canvas), torch_seg.predict_canvas(canvas)
    assert abs(p_onnx - p_torch).max() < 1e-3
    m_onnx, m_torch = p_onnx >= 0.5, p_torch >= 0.5
    assert m_torch.sum() > 50
    assert (m_onnx != m_torch).sum() <= 0.001 * m_torch.sum() + 2


def test_export_round_trip_records_provenance(exported_tiny):
    card = json.loads((exported_tiny / "model.json").read_text())
    assert card["onnx"]["file"] == ONNX_NAME and card["onnx"]["max_abs_logit_difference"] < 1e-3
    img = synthetic_flair()
    a = Segmenter(str(exported_tiny), device="cpu", backend="onnx").segment(img).probabilities
    b = Segmenter(str(exported_tiny), device="cpu", backend="torch").segment(img).probabilities
    diff = sitk.GetArrayFromImage(a) - sitk.GetArrayFromImage(b)
    assert abs(diff).max() < 1e-4


def test_altered_onnx_file_is_refused(exported_tiny, tmp_path, capsys):
    onnx = exported_tiny / ONNX_NAME
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        Segmenter(str(exported_tiny), device="cpu")
    flair = tmp_path / "flair.nii.gz"
    sitk.WriteImage(synthetic_flair(), str(flair))
    assert main(["segment", str(flair), "-o", str(tmp_path / "out"), "--model", str(exported_tiny), "-q"]) == 2
    err = capsys.readouterr().err
    assert "model.onnx" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "flair.seg.nrrd").exists()


def test_onnx_of_other_weights_is_refused(exported_tiny):
    card_path = exported_tiny / "model.json"
    card = json.loads(card_path.read_text())
    card["onnx"]["exported_from_weights_sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="other weights"):
        Segmenter(str(exported_tiny), device="cpu")


def test_onnx_backend_needs_an_export(tiny_model_dir, tmp_path, capsys):
    assert Segmenter(str(tiny_model_dir), device="cpu").backend == "torch"  # auto falls back
    with pytest.raises(RuntimeError, match="no ONNX export"):
        Segmenter(str(tiny_model_dir), device="cpu", backend="onnx")
    flair = tmp_path / "flair.nii.gz"
    sitk.WriteImage(synthetic_flair(), str(flair))
    code = main(["segment", str(flair), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                 "--backend", "onnx", "-q"])
    assert code == 2
    assert "export-onnx" in capsys.readouterr().err


def test_cli_export_onnx(tiny_model_dir, tmp_path, capsys):
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    assert main(["export-onnx", str(model_dir)]) == 0
    assert (model_dir / ONNX_NAME).exists()
    assert Segmenter(str(model_dir), device="cpu").backend == "onnx"
    before = json.loads((tiny_model_dir / "model.json").read_text())
    after = json.loads((model_dir / "model.json").read_text())
    assert after["weights_sha256"] == before["weights_sha256"]  # weights untouched, card extended
    assert "onnx" in after and "onnx" not in before


def test_auto_falls_back_to_torch_when_onnxruntime_cannot_run_the_file(exported_tiny, monkeypatch):
    """A verified file that this onnxruntime cannot load costs speed, not the result."""
    import deepwml.segmenter as segmenter_module

    def refuse(path, *_args, **_kwargs):
        raise ModelFileError(path, "cannot be loaded by ONNX Runtime (opset too new)")

    monkeypatch.setattr(segmenter_module, "OnnxNetwork", refuse)
    assert Segmenter(str(exported_tiny), device="cpu").backend == "torch"
    with pytest.raises(ModelFileError, match="ONNX Runtime"):
        Segmenter(str(exported_tiny), device="cpu", backend="onnx")


@pytest.mark.parametrize("fast_bf16", [True, False], ids=["host-bf16", "host-no-bf16"])
def test_default_is_float32_and_onnx_whatever_the_cpu(monkeypatch, exported_tiny, fast_bf16):
    """The default mask must not depend on the CPU: ``auto`` is float32 (ONNX Runtime) both
    on CPUs with native bf16 and without, and ``--backend onnx`` runs unless bf16 is asked for."""
    import deepwml.segmenter as segmenter_module

    monkeypatch.setattr(segmenter_module, "cpu_has_fast_bf16", lambda: fast_bf16)
    auto = Segmenter(str(exported_tiny), device="cpu")
    assert auto.precision_name == "float32" and auto.backend == "onnx"
    forced = Segmenter(auto.model, device="cpu", backend="onnx")
    assert forced.precision_name == "float32" and forced.backend == "onnx"
    img = synthetic_flair()
    a = sitk.GetArrayFromImage(auto.segment(img).probabilities)
    b = sitk.GetArrayFromImage(forced.segment(img).probabilities)
    assert (a == b).all()
    with pytest.raises(RuntimeError, match="float32"):
        Segmenter(auto.model, device="cpu", precision="bf16", backend="onnx")


@pytest.mark.parametrize("graph", ["lesion", "lesion-int8", "brain"])
def test_a_batch_split_between_sessions_gives_one_sessions_logits_bit_for_bit(graph):
    """OnnxNetwork splits a batch between two single-threaded sessions that run at once (README "Speed"): the images
    of a batch are independent, so every logit must be the one a single session gives, whatever the batch's size,
    and for the int8 graph and the brain network too. A lane count is never more than the cores it shares."""
    import numpy as np

    from deepwml.brain_mask import BRAIN_MODEL_DIR
    from deepwml.onnx_backend import OnnxNetwork

    folder = BRAIN_MODEL_DIR if graph == "brain" else DEFAULT_MODEL_DIR
    path = folder / ("model.int8.onnx" if graph.endswith("int8") else ONNX_NAME)
    single, split = OnnxNetwork(path, 16, threads=2, lanes=1), OnnxNetwork(path, 16, threads=2, lanes=2)
    assert len(single.sessions) == 1 and len(split.sessions) == 2
    assert len(OnnxNetwork(path, 16, threads=1, lanes=2).sessions) == 1
    batch = (np.random.default_rng(11).random((7, 1, 96, 64)) * 2.0).astype(np.float32)
    for size in (1, 2, 5, 7):
        got, expected = split(batch[:size]), single(batch[:size])
        assert got.shape == expected.shape and np.array_equal(got, expected)
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):  # a lane's error (ONNX Runtime's) reaches the caller
        split(np.zeros((4, 2, 32, 32), np.float32))
