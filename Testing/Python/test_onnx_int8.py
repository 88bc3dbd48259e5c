"""The int8 graph (``--precision int8``): made from calibration FLAIRs, recorded in the card,
close to float32, run without PyTorch's network, refused when it is not the model's."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import synthetic_flair
from deepwml.cli import main
from deepwml.errors import ModelFileError
from deepwml.model_files import load_model
from deepwml.onnx_int8 import (CALIBRATION_BATCH, INT8_INPUT_OVERFLOW_SHARE, INT8_ONNX_NAME, INT8_REPRODUCE_TOLERANCE,
                               calibration_canvases, calibration_files, graph_input_max, input_overflow_share,
                               int8_file_of, int8_input_max)
from deepwml.segmenter import Segmenter


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    for seed in (1, 2):
        sitk.WriteImage(synthetic_flair(seed=seed), str(folder / f"head{seed}.nii.gz"))
    return folder


def random_model(folder, seed: int):
    """A width-4 random-weight U-Net saved as a model (seed 0 is the session's tiny model)."""
    import torch

    from deepwml.model_files import ModelCard, save_model
    from deepwml.unet import UNet2D, UNetConfig

    torch.manual_seed(seed)
    net = UNet2D(UNetConfig(base_channels=4))
    save_model(net, ModelCard("tiny-test", f"0.0.{seed}", net.config, notes="random weights, tests only"), folder)
    return folder


@pytest.fixture(scope="module")
def int8_tiny(calibration_folder, tmp_path_factory):
    # seed 2: a random network whose logits are not near-constant (seed 0's spread only 0.01 on
    # the probe, so quantisation noise is 40 % of it: its export is refused, tested below)
    model_dir = random_model(tmp_path_factory.mktemp("int8") / "tiny", 2)
    assert main(["export-onnx", str(model_dir), "--int8", "--calibration", str(calibration_folder),
                 "--calibration-note", "two synthetic test heads", "-q"]) == 0
    return model_dir


def test_int8_export_is_recorded_with_its_calibration(int8_tiny):
    card = json.loads((int8_tiny / "model.json").read_text())
    entry = card["onnx_int8"]
    assert (int8_tiny / INT8_ONNX_NAME).exists() and (int8_tiny / "model.onnx").exists()
    assert entry["exported_from_weights_sha256"] == card["weights_sha256"]
    assert entry["calibration"]["data"] == "two synthetic test heads"
    assert entry["calibration"]["slices"] % CALIBRATION_BATCH == 0 and entry["calibration"]["slices"] > 0
    assert 0 < entry["probe_max_logit_difference_of_spread"] <= INT8_REPRODUCE_TOLERANCE
    assert entry["input_max"] == pytest.approx(graph_input_max(int8_tiny / INT8_ONNX_NAME), abs=1e-5)
    assert entry["quantization"]["float32_nodes"]  # the logits' convolution stays float32
    assert card["weights_sha256"] == load_model(int8_tiny).card["weights_sha256"]
    from deepwml.model_files import sha256_of

    assert sha256_of(int8_tiny / "model.safetensors") == card["weights_sha256"]  # weights untouched


def test_int8_export_refuses_a_network_quantisation_breaks(tiny_model_dir, calibration_folder, tmp_path, capsys):
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    assert main(["export-onnx", str(model_dir), "--int8", "--calibration", str(calibration_folder), "-q"]) == 2
    err = capsys.readouterr().err
    assert "keep float32" in err and "Traceback" not in err
    assert not (model_dir / INT8_ONNX_NAME).exists() and "onnx_int8" not in load_model(model_dir).card


def test_int8_segments_close_to_float32_and_names_the_graph_it_ran(int8_tiny, tmp_path):
    int8 = Segmenter(str(int8_tiny), device="cpu", precision="int8")
    assert int8.backend == "onnx" and int8.precision_name == "int8"
    assert int8.ran_file["file"] == INT8_ONNX_NAME
    float32 = Segmenter(int8.model, device="cpu", precision="float32")
    img = synthetic_flair(seed=5)
    a = sitk.GetArrayFromImage(int8.segment(img).probabilities)
    b = sitk.GetArrayFromImage(float32.segment(img).probabilities)
    assert a.shape == b.shape and not (a == b).all()  # really another graph
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    flair = tmp_path / "flair.nii.gz"
    sitk.WriteImage(img, str(flair))
    assert main(["segment", str(flair), "-o", str(tmp_path / "out"), "--model", str(int8_tiny),
                 "--precision", "int8", "-q"]) == 0
    summary = json.loads((tmp_path / "out" / "flair.summary.json").read_text())
    assert "int8" in json.dumps(summary) and INT8_ONNX_NAME in json.dumps(summary)


def test_int8_needs_a_graph_and_the_cpu(tiny_model_dir, int8_tiny, tmp_path, capsys):
    with pytest.raises(ModelFileError, match="no int8 graph"):
        Segmenter(str(tiny_model_dir), device="cpu", precision="int8")
    with pytest.raises(RuntimeError, match="CPU only"):
        Segmenter(str(int8_tiny), device="cpu", precision="int8", backend="torch")
    flair = tmp_path / "flair.nii.gz"
    sitk.WriteImage(synthetic_flair(), str(flair))
    code = main(["segment", str(flair), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                 "--precision", "int8", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "export-onnx" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_int8_export_needs_calibration(tiny_model_dir, tmp_path, capsys):
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    assert main(["export-onnx", str(model_dir), "--int8", "-q"]) == 2
    assert "--calibration" in capsys.readouterr().err
    assert not (model_dir / INT8_ONNX_NAME).exists()
    assert main(["export-onnx", str(model_dir), "--int8", "--calibration", str(tmp_path / "missing.nii.gz"),
                 "-q"]) == 2
    assert "missing.nii.gz" in capsys.readouterr().err


def test_altered_or_foreign_int8_graph_is_refused(int8_tiny, tmp_path, calibration_folder):
    altered = tmp_path / "altered"
    shutil.copytree(int8_tiny, altered)
    data = bytearray((altered / INT8_ONNX_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (altered / INT8_ONNX_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        Segmenter(str(altered), device="cpu", precision="int8")

    # another network's int8 graph, with the card rewritten to match it: the probe refuses it
    foreign = random_model(tmp_path / "foreign", 1)
    assert main(["export-onnx", str(foreign), "--int8", "--calibration", str(calibration_folder), "-q"]) == 0
    swapped = tmp_path / "swapped"
    shutil.copytree(int8_tiny, swapped)
    shutil.copy(foreign / INT8_ONNX_NAME, swapped / INT8_ONNX_NAME)
    card = json.loads((swapped / "model.json").read_text())
    card["onnx_int8"]["sha256"] = json.loads((foreign / "model.json").read_text())["onnx_int8"]["sha256"]
    (swapped / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="not this model's safetensors weights rounded"):
        Segmenter(str(swapped), device="cpu", precision="int8")


def test_a_close_fine_tunes_int8_graph_is_refused_by_its_weights(int8_tiny, tmp_path):
    """A fine-tune's graph computes nearly the same logits (1.5.0's int8 graph against 1.6.0's
    weights: 0.088 of the spread, inside the probe's 0.10); its stored weights give it away."""
    from deepwml.model_files import ModelCard, read_card, save_model, write_card
    from deepwml.onnx_backend import OnnxNetwork, check_reproduces_weights
    from deepwml.onnx_int8 import check_int8_weights, head_probe

    parent = load_model(int8_tiny)
    assert check_int8_weights(int8_tiny / INT8_ONNX_NAME, parent) <= 0.5 + 1e-3  # its own graph passes
    network = parent.network
    state = network.state_dict()
    state["bottom.2.weight"] = state["bottom.2.weight"] * 1.05  # one layer of a 'fine-tune' moved by 5 %
    network.load_state_dict(state)
    child = tmp_path / "child"
    save_model(network, ModelCard("tiny-test", "0.0.9", network.config, notes="close fine-tune"), child)
    shutil.copy(int8_tiny / INT8_ONNX_NAME, child / INT8_ONNX_NAME)  # the parent's graph, the card rewritten
    card, card_path = read_card(child)
    card["onnx_int8"] = {**read_card(int8_tiny)[0]["onnx_int8"], "exported_from_weights_sha256": card["weights_sha256"]}
    write_card(card, card_path)
    child_model = load_model(child)
    probe = check_reproduces_weights(OnnxNetwork(child / INT8_ONNX_NAME, child_model.config.divisor), child_model,
                                     child / INT8_ONNX_NAME, float("inf"), relative=True, probe=head_probe())
    assert probe <= INT8_REPRODUCE_TOLERANCE  # the probe alone would let it through
    with pytest.raises(ModelFileError, match="quantisation steps off"):
        Segmenter(str(child), device="cpu", precision="int8")


def test_calibration_reads_manifests_folders_and_spreads_slices(calibration_folder, phantom_set, tmp_path):
    manifest = tmp_path / "train.csv"
    names = sorted(p.name for p in calibration_folder.glob("*.nii.gz"))
    manifest.write_text("case,center,disease,flair\n"
                        + "".join(f"c{i},C1,MS,{calibration_folder / n}\n" for i, n in enumerate(names)))
    assert calibration_files([manifest]) == calibration_files([calibration_folder])
    # a folder with a manifest (deepwml phantom / synth output): its FLAIRs, not its label files
    phantoms = calibration_files([phantom_set.parent])
    assert len(phantoms) == 9 and all(p.name == "flair.nii.gz" for p in phantoms)
    slices = calibration_canvases(calibration_files([calibration_folder]), max_slices=8)
    assert slices.shape[0] == 8 and slices.shape[1] == 1 and slices.dtype == np.float32
    assert (slices.reshape(8, -1) > 0).any(1).all()  # only slices with head


def test_bundled_int8_graph_agrees_with_float32(phantom_flair):
    """The shipped int8 graph is the shipped weights, quantised: masks close to float32's, not
    the same (README "Speed": Dice 0.97 on the benchmark phantom's large load, 0.83 on this
    1.3 ml one, int8 marking 7 % more)."""
    from deepwml.image_io import load_flair

    int8 = Segmenter(device="cpu", precision="int8")
    float32 = Segmenter(int8.model, device="cpu", precision="float32")
    img = load_flair(phantom_flair)
    a = sitk.GetArrayFromImage(int8.segment(img).mask) > 0
    b = sitk.GetArrayFromImage(float32.segment(img).mask) > 0
    assert b.sum() > 100
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.75
    assert 0.8 < a.sum() / b.sum() < 1.25


def test_int8_input_range_is_read_from_the_card_or_the_graph():
    """The bundled card records its int8 graph's input range (experiment 58); a card without it is read from the
    graph, and the two agree. The overflow share counts head pixels (> 0) only."""
    from deepwml.preprocessing import CLIP_MAX

    model = load_model("bundled", framework="numpy")
    recorded = int8_input_max(model)
    assert 1.0 < recorded < CLIP_MAX  # calibrated below the canvas's range: why the fallback exists
    assert recorded == pytest.approx(graph_input_max(int8_file_of(model)), abs=1e-5)
    del model.card["onnx_int8"]["input_max"]
    assert int8_input_max(model) == pytest.approx(recorded, abs=1e-5)
    canvas = np.zeros((2, 1, 4, 4), np.float32)
    canvas[0, 0, :2] = 1.0
    canvas[1, 0, 0, :2] = 3.0  # 2 of 10 head pixels above 2.75; the 22 air pixels do not count
    assert input_overflow_share(canvas, 2.75) == pytest.approx(0.2)
    assert input_overflow_share(np.zeros((1, 1, 4, 4), np.float32), 2.75) == 0.0


def brightened(image: sitk.Image, share: float = 0.15, factor: float = 4.0) -> sitk.Image:
    """``image`` with its brightest ``share`` of head voxels ``factor`` x brighter: a head the int8 graph's input
    range does not cover (like experiment 58's failing heads)."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    head = array > np.percentile(array, 50)
    array[head & (array > np.percentile(array[head], 100 * (1 - share)))] *= factor
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def test_a_volume_beyond_the_int8_input_range_runs_float32(phantom_flair, tmp_path, capsys, caplog):
    """Under --precision int8 a head brighter than the int8 graph's input range runs the float32 graph (the int8
    graph lost marks there, up to all of them: experiment 58): the very float32 probabilities, a warning, and the
    summary names the file that ran and why."""
    from deepwml.image_io import load_flair

    bright = brightened(load_flair(phantom_flair))
    # no brain network (its int8 graph differs); TTA on both (int8's default is off)
    int8 = Segmenter(device="cpu", precision="int8", brain_model=None, flip_tta=True)
    float32 = Segmenter(int8.model, device="cpu", precision="float32", brain_model=None, flip_tta=True)
    result = int8.segment(bright)
    assert result.precision == "float32" and result.ran_file["file"] == "model.onnx"
    assert result.int8_fallback["head_share_above_input_range"] > INT8_INPUT_OVERFLOW_SHARE
    assert np.array_equal(sitk.GetArrayFromImage(result.probabilities),
                          sitk.GetArrayFromImage(float32.segment(bright).probabilities))
    plain = int8.segment(load_flair(phantom_flair))  # the same segmenter goes on in int8 where it can
    assert plain.precision == "int8" and plain.int8_fallback is None and plain.ran_file["file"] == INT8_ONNX_NAME
    flair = tmp_path / "bright.nii.gz"
    sitk.WriteImage(bright, str(flair))
    caplog.clear()
    assert main(["segment", str(flair), "-o", str(tmp_path / "out"), "--precision", "int8", "-q",
                 "--summary", str(tmp_path / "all.csv")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert [r.levelname for r in caplog.records if "runs in float32" in r.getMessage()] == ["WARNING"]
    summary = json.loads((tmp_path / "out" / "bright.summary.json").read_text())
    assert summary["precision"] == "float32" and summary["model"]["ran"]["file"] == "model.onnx"
    assert summary["int8_fallback"]["limit"] == INT8_INPUT_OVERFLOW_SHARE
    row = next(csv.DictReader((tmp_path / "all.csv").open()))
    assert row["precision"] == "float32" and float(row["int8_fallback"]) > INT8_INPUT_OVERFLOW_SHARE
