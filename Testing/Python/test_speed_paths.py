"""Issue 14's single-machine paths: segmentation without PyTorch, and pipelined batches that
give the sequential results in bounded memory. (Speed itself lives in the benchmark.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import synthetic_flair
from deepwml.batch import segment_files
from deepwml.cli import main
from deepwml.pipeline import segment_file
from deepwml.read_ahead import ReadAhead
from deepwml.segmenter import Segmenter

BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_segment_runs_without_pytorch_and_matches_the_torch_path(phantom_flair, tmp_path):
    """`deepwml segment` with torch unimportable: works, never imports it, and its mask equals
    the PyTorch backend's; asking for what needs PyTorch then fails in one line."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    probe = "import deepwml.cli, deepwml.segmenter, deepwml.pipeline, sys"
    check = subprocess.run([sys.executable, "-c", f"{probe}; import torch"], env=env, capture_output=True,
                           text=True)
    assert check.returncode != 0 and "import of torch halted" in check.stderr  # the blocker works
    code = ("import sys; from deepwml.cli import main; rc = main(sys.argv[1:]); "
            "assert sys.modules.get('torch') is None, 'torch was imported'; sys.exit(rc)")
    out = tmp_path / "onnx"
    run = subprocess.run([sys.executable, "-c", code, "segment", str(phantom_flair), "-o", str(out), "-q",
                          "--probabilities"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(next(out.glob("*.summary.json")).read_text())
    assert summary["backend"] == "onnx" and summary["device"] == "cpu"
    assert main(["segment", str(phantom_flair), "-o", str(tmp_path / "torch"), "-q", "--backend", "torch"]) == 0
    name = next(out.glob("*.seg.nrrd")).name
    no_torch, with_torch = _read(out / name) > 0, _read(tmp_path / "torch" / name) > 0
    assert with_torch.sum() > 50
    assert (no_torch != with_torch).sum() <= 0.001 * with_torch.sum() + 2  # ONNX vs PyTorch kernels
    # the console command's own exit (no interpreter teardown after `segment`), int8 without PyTorch
    # too: report line printed, outputs complete, exit code kept
    int8 = subprocess.run([sys.executable, "-m", "deepwml.cli", "segment", str(phantom_flair), "-o",
                           str(tmp_path / "int8"), "--precision", "int8"], env=env, capture_output=True, text=True)
    assert int8.returncode == 0 and " ml in " in int8.stdout, int8.stderr
    summary = json.loads(next((tmp_path / "int8").glob("*.summary.json")).read_text())
    assert summary["precision"] == "int8" and summary["model"]["ran"]["file"] == "model.int8.onnx"
    assert (_read(tmp_path / "int8" / name) > 0).sum() > 0.75 * with_torch.sum()
    refused = subprocess.run([sys.executable, "-m", "deepwml.cli", "segment", str(phantom_flair), "-o",
                              str(tmp_path / "x"), "-q", "--device", "cuda"], env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "PyTorch is not installed" in refused.stderr
    assert "Traceback" not in refused.stderr


def _inputs(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = tmp_path / "in" / f"case{i}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        sitk.WriteImage(synthetic_flair(seed=i), str(path))
        paths.append(str(path))
    return paths


def test_pipelined_batch_equals_sequential_and_reports_bad_inputs_in_order(tiny_model_dir, tmp_path):
    inputs = _inputs(tmp_path, 5)
    bad = tmp_path / "in" / "broken.nii.gz"
    bad.write_bytes(b"not an image")
    inputs.insert(2, str(bad))
    seg = Segmenter(str(tiny_model_dir), device="cpu")
    seen: list[tuple[int, bool]] = []
    segment_files(inputs, tmp_path / "pipe", seg, lambda i, _p, s, e: seen.append((i, e is None)),
                  probabilities=True)
    assert seen == [(0, True), (1, True), (2, False), (3, True), (4, True), (5, True)]
    for path in inputs:
        if path == str(bad):
            continue
        segment_file(path, tmp_path / "seq", seg, probabilities=True)
        stem = Path(path).name[:-len(".nii.gz")]
        np.testing.assert_array_equal(_read(tmp_path / "pipe" / f"{stem}_probabilities.nii.gz"),
                                      _read(tmp_path / "seq" / f"{stem}_probabilities.nii.gz"))
        np.testing.assert_array_equal(_read(tmp_path / "pipe" / f"{stem}.seg.nrrd"),
                                      _read(tmp_path / "seq" / f"{stem}.seg.nrrd"))
    assert not list((tmp_path / "pipe").glob("broken*"))


def test_pipelined_batch_holds_a_bounded_number_of_volumes(tiny_model_dir, tmp_path, monkeypatch):
    """However many inputs, only a few volumes are in memory at once (bounded queues)."""
    seg = Segmenter(str(tiny_model_dir), device="cpu")
    in_flight, peak, lock = [0], [0], threading.Lock()
    prepare, finish = seg.prepare, seg.finish

    def counting_prepare(image):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        return prepare(image)

    def counting_finish(*args, **kwargs):
        with lock:
            in_flight[0] -= 1
        return finish(*args, **kwargs)

    monkeypatch.setattr(seg, "prepare", counting_prepare)
    monkeypatch.setattr(seg, "finish", counting_finish)
    inputs = _inputs(tmp_path, 3) * 4  # 12 inputs (same files, distinct output names)
    names = [f"v{i}" for i in range(len(inputs))]
    done: list[int] = []
    segment_files(inputs, tmp_path / "out", seg, lambda i, _p, s, e: done.append(i), names=names, depth=1)
    assert done == list(range(len(inputs)))
    assert peak[0] <= 5  # 1 being read + 1 queued + 1 in the network + 1 queued + 1 being written


def test_cli_batch_exit_codes_with_the_pipeline(tiny_model_dir, tmp_path, capsys):
    inputs = _inputs(tmp_path, 2)
    missing = str(tmp_path / "in" / "missing.nii.gz")
    code = main(["segment", *inputs, missing, "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "-q"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deepwml: error: {missing}: file not found"]
    assert main(["segment", missing, "-o", str(tmp_path / "out2"), "--model", str(tiny_model_dir), "-q"]) == 2


def test_one_input_is_read_while_the_model_loads_with_the_same_outputs_and_errors(tiny_model_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    """``segment`` of one input reads it in a thread during model loading (the cold start):
    the outputs are those of reading in place, reading errors keep their one line, and a
    read-ahead of another file is refused."""
    from deepwml import image_io

    path = _inputs(tmp_path, 1)[0]
    threads: list[str] = []
    load = image_io.load_flair

    def recording_load(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return load(*args, **kwargs)

    monkeypatch.setattr(image_io, "load_flair", recording_load)
    assert main(["segment", path, "-o", str(tmp_path / "ahead"), "--model", str(tiny_model_dir), "-q",
                 "--probabilities"]) == 0
    assert threads == ["deepwml-read-ahead"]
    segment_file(path, tmp_path / "inplace", Segmenter(str(tiny_model_dir), device="cpu"), probabilities=True)
    stem = Path(path).name[:-len(".nii.gz")]
    for suffix in ("_probabilities.nii.gz", ".seg.nrrd"):
        np.testing.assert_array_equal(_read(tmp_path / "ahead" / f"{stem}{suffix}"),
                                      _read(tmp_path / "inplace" / f"{stem}{suffix}"))
    ahead = json.loads((tmp_path / "ahead" / f"{stem}.summary.json").read_text())
    assert ahead["total_volume_ml"] == json.loads((tmp_path / "inplace" / f"{stem}.summary.json").read_text())[
        "total_volume_ml"]
    assert 0 <= ahead["timings_s"]["read"] <= ahead["timings_s"]["end_to_end"]

    bad = tmp_path / "in" / "broken.nii.gz"
    bad.write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["segment", str(bad), "-o", str(tmp_path / "bad"), "--model", str(tiny_model_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"deepwml: error: {bad}: ")
    # a model that cannot load: its own one line, and the reader is waited for
    assert main(["segment", path, "-o", str(tmp_path / "nomodel"), "--model", str(tmp_path / "none"), "-q"]) == 2
    assert "model card not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="read_ahead reads"):
        segment_file(path, tmp_path / "other", Segmenter(str(tiny_model_dir), device="cpu"),
                     read_ahead=ReadAhead(str(bad)))
