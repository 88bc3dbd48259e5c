"""DeepWMLLib against real headless MRML (slicer-core) and real processes: which node a result
goes to, transforms, no leftover nodes, re-thresholding, background jobs and their cancel, the
dependency list, the model choice, and what the panels show (widget logic without Qt)."""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parent / "slicer_shim"


@pytest.fixture(scope="module")
def slicer():
    if "slicer" in sys.modules and not hasattr(sys.modules["slicer"], "ScriptedLoadableModuleTest"):
        pytest.skip("slicer was imported before the test shim was on sys.path")
    for path in (SHIM, ROOT / "DeepWML", ROOT / "DeepWMLTraining"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import slicer

    return slicer


@pytest.fixture()
def scene(slicer):
    slicer.mrmlScene.Clear(0)
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(0)


def volume(slicer, name, shape=(12, 40, 48), spacing=(0.9, 0.9, 5.0), seed=0):
    rng = np.random.default_rng(seed)
    node = slicer.util.addVolumeFromArray(rng.normal(100, 10, shape).astype(np.float32), name=name)
    node.SetSpacing(spacing)
    node.SetOrigin(-20.0, 15.0, 3.0)
    node.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    return node


def blobs(shape=(12, 40, 48), centres=((5, 10, 10), (7, 25, 30))):
    """A probability map with one bright cube per centre ``(k, j, i)``."""
    probabilities = np.zeros(shape, np.float32)
    for k, j, i in centres:
        probabilities[k - 1:k + 2, j - 3:j + 3, i - 3:i + 3] = 0.9
        probabilities[k, j - 5:j + 5, i - 5:i + 5] = np.maximum(probabilities[k, j - 5:j + 5, i - 5:i + 5], 0.4)
    return probabilities


@pytest.fixture()
def logic(slicer):
    import DeepWML

    return DeepWML.DeepWMLLogic()


# --- where a result goes ---------------------------------------------------------------------
def test_follow_up_on_the_baselines_grid_never_replaces_the_baselines_result(slicer, scene, logic):
    """Issue 12 item 6: the output selector still shows the baseline's result when the
    follow-up (resampled onto the baseline's grid) is segmented."""
    from DeepWMLLib import segmentation as results

    baseline, follow_up = volume(slicer, "Baseline"), volume(slicer, "FollowUp", seed=1)
    base_node, _ = logic.applyProbabilities(baseline, blobs(), None, 0.5)
    base_mask = logic.maskFromSegmentation(base_node, baseline).copy()
    base_hash = base_node.GetAttribute(results.MASK_HASH_ATTRIBUTE)

    node, summary = logic.applyProbabilities(follow_up, blobs(centres=((6, 20, 20),)), base_node, 0.5)
    assert node is not base_node
    assert node.GetName() == "FollowUp WMH"
    assert "belongs to Baseline" in summary["reason"]
    np.testing.assert_array_equal(logic.maskFromSegmentation(base_node, baseline), base_mask)
    assert base_node.GetAttribute(results.MASK_HASH_ATTRIBUTE) == base_hash
    assert results.source_volume_of(base_node) is baseline and results.source_volume_of(node) is follow_up
    # what the panel selects when the input changes: each volume's own result
    assert logic.outputFor(baseline) is base_node and logic.outputFor(follow_up) is node
    # re-running the follow-up updates its own result, not the baseline's, with no new node
    again, summary = logic.applyProbabilities(follow_up, blobs(centres=((6, 20, 20),)), None, 0.5)
    assert again is node and summary["reason"] == "updated FollowUp WMH"
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2


def test_edited_or_foreign_results_get_a_new_node(slicer, scene, logic):
    from DeepWMLLib import segmentation as results

    flair = volume(slicer, "FLAIR")
    node, _ = logic.applyProbabilities(flair, blobs(), None, 0.5)
    # a segmentation the radiologist made by hand (no DeepWML hash) is never written into
    manual = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "manual")
    manual.GetSegmentation().AddEmptySegment("tumour")
    target, reason = results.choose_output(flair, manual)
    assert target is None and "was edited" in reason
    # an empty one is used (and tied to the volume)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    assert results.choose_output(flair, empty) == (empty, "updated empty")
    # an added segment counts as an edit
    node.GetSegmentation().AddEmptySegment("extra")
    assert results.is_edited(node, flair)


def test_rethreshold_uses_the_kept_map_and_keeps_edits(slicer, scene, logic):
    from DeepWMLLib.segmentation import SEGMENT_ID, oriented_image_from_mask

    flair = volume(slicer, "FLAIR")
    node, summary = logic.applyProbabilities(flair, blobs(), None, 0.5)
    high = logic.maskFromSegmentation(node, flair).sum()
    assert logic.hasProbabilities(node)
    same, low_summary = logic.rethreshold(node, 0.3)
    assert same is node and low_summary["threshold"] == 0.3
    assert logic.maskFromSegmentation(node, flair).sum() > high
    assert low_summary["total_volume_ml"] > summary["total_volume_ml"]
    assert node.GetAttribute("DeepWML.Threshold") == "0.3"
    # after an edit, a threshold change goes to a new node; the edit stays
    edited = logic.maskFromSegmentation(node, flair).copy()
    edited[0, :3, :3] = 1
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        oriented_image_from_mask(edited, flair), node, SEGMENT_ID, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    other, reason_summary = logic.rethreshold(node, 0.5)
    assert other is not node and "was edited" in reason_summary["reason"]
    np.testing.assert_array_equal(logic.maskFromSegmentation(node, flair), edited)


def test_a_result_keeps_its_cautions_when_rethresholded(slicer, scene, logic):
    """The model's measured limits travel with the kept probabilities (deepwml.known_limits):
    the heavy-load caution comes and goes with the volume at each threshold."""
    from DeepWMLLib import panel
    from deepwml.known_limits import HEAVY, HEAVY_LOAD_ML, known_limits
    from deepwml.model_files import DEFAULT_MODEL_DIR, read_card

    flair = volume(slicer, "FLAIR", shape=(10, 60, 60), spacing=(1.0, 1.0, 5.0))
    probabilities = np.zeros((10, 60, 60), np.float32)
    probabilities[2:8, 5:55, 5:55] = 0.9  # 75 ml at 0.5
    probabilities[4, 20:30, 20:30] = 0.95
    limits = known_limits(read_card(DEFAULT_MODEL_DIR)[0], slice_thickness_mm=5.0)
    node, summary = logic.applyProbabilities(flair, probabilities, None, 0.5, {"known_limits": limits})
    assert [c["code"] for c in summary["cautions"]] == [HEAVY]
    assert "\nCaution: Heavy lesion load" in panel.result_line(summary)
    _, light = logic.rethreshold(node, 0.92)  # only the small bright square is left
    assert light["total_volume_ml"] < HEAVY_LOAD_ML and light["cautions"] == []
    assert "Caution" not in panel.result_line(light)
    _, heavy_again = logic.rethreshold(node, 0.5)
    assert [c["code"] for c in heavy_again["cautions"]] == [HEAVY]


def test_the_panel_segments_at_the_models_threshold_and_shows_it_without_rethresholding(slicer):
    """The panel's Segment lesions must not pass the slider's 0.5 default (the bundled model's
    threshold is 0.8: Slicer marked more than the command line); the slider then shows the
    result's threshold, and showing it does not re-threshold. The widget's own methods run on
    stand-ins for its Qt widgets (the application cannot be started here)."""
    from types import SimpleNamespace
    from unittest import mock

    import DeepWML
    from DeepWMLLib.jobs import FINISHED

    widget = DeepWML.DeepWMLWidget.__new__(DeepWML.DeepWMLWidget)

    class Slider:  # a QSlider emits valueChanged when its value is set
        _value = 0.5

        @property
        def value(self):
            return self._value

        @value.setter
        def value(self, v):
            self._value = v
            widget.onThresholdChanged(v)

    node = object()
    widget.ui = mock.MagicMock()
    widget.ui.thresholdSlider = Slider()
    widget.ui.outputSelector.currentNode.return_value = node
    widget._qt, widget.timer, widget._quietThreshold, widget._summary = mock.MagicMock(), mock.MagicMock(), False, None
    widget.logic = mock.MagicMock()
    widget.logic.hasProbabilities.return_value = True
    summary = {"threshold": 0.8, "total_volume_ml": 1.0, "lesion_count": 1, "node": "FLAIR WMH", "reason": "new",
               "lesions": [{"lesion": 1, "volume_ml": 1.0, "first_slice": 2, "last_slice": 3}]}
    widget.logic.finishSegmentation.return_value = (node, summary)
    widget.run = SimpleNamespace(poll=lambda: [], done=1, total=1, status=FINISHED)
    widget.onPoll()
    assert widget.logic.finishSegmentation.call_args.args[1:] == (node,)  # no threshold: the model's
    assert not widget.logic.finishSegmentation.call_args.kwargs
    assert widget.ui.thresholdSlider.value == 0.8 and not widget.logic.rethreshold.called
    widget.logic.rethreshold.return_value = (node, dict(summary, threshold=0.6))
    widget.ui.thresholdSlider.value = 0.6  # the user moves it: re-thresholded once
    widget.logic.rethreshold.assert_called_once_with(node, 0.6)


def test_transformed_volume_result_follows_the_volume_and_leaves_no_helper_nodes(slicer, scene, logic):
    """Items 4 and 5 without the network: same parent transform, one node across re-runs,
    no colour tables, labelmaps or orphaned display nodes."""
    import vtk

    flair = volume(slicer, "FollowUp")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 20.0)
    transform.SetMatrixTransformToParent(matrix)
    flair.SetAndObserveTransformNodeID(transform.GetID())
    slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)  # always there in the app
    before = scene.GetNumberOfNodes()
    node, summary = logic.applyProbabilities(flair, blobs(), None, 0.5)
    assert scene.GetNumberOfNodes() == before + 2  # the segmentation and its display node
    for _ in range(3):
        again, _ = logic.applyProbabilities(flair, blobs(), None, 0.5)
        assert again is node
    assert scene.GetNumberOfNodes() == before + 2
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 0
    assert node.GetTransformNodeID() == transform.GetID()
    # lesion table points are in world coordinates (where the slice views must jump)
    lesion = summary["lesions"][0]  # equal sizes: the first cube, k 4..6, j and i 7..12
    ijk = vtk.vtkMatrix4x4()
    flair.GetIJKToRASMatrix(ijk)
    local = ijk.MultiplyPoint([9.5, 9.5, 5.0, 1.0])[:3]
    assert lesion["ras"] == pytest.approx([local[0] + 20.0, local[1], local[2]])
    centre_local = [0.0] * 3
    # the transform moves the segmentation with the volume
    matrix.SetElement(1, 3, -7.0)
    transform.SetMatrixTransformToParent(matrix)
    moved = [0.0] * 3
    node.TransformPointToWorld(centre_local, moved)
    assert moved == pytest.approx([20.0, -7.0, 0.0])


def test_lesion_table_volumes_and_slices(slicer, scene, logic):
    flair = volume(slicer, "FLAIR")
    node, summary = logic.applyProbabilities(flair, blobs(), None, 0.5)
    table = summary["lesions"]
    assert len(table) == summary["lesion_count"] == 2
    voxel_ml = 0.9 * 0.9 * 5.0 / 1000
    assert [r["voxels"] for r in table] == [108, 108]
    assert table[0]["volume_ml"] == pytest.approx(108 * voxel_ml)
    # acquisition axis is k (5 mm): cubes span k-1..k+1, 1-based
    assert {(r["first_slice"], r["last_slice"]) for r in table} == {(5, 7), (7, 9)}
    assert sum(r["volume_ml"] for r in table) == pytest.approx(summary["total_volume_ml"], abs=1e-3)


def test_sample_flair_is_the_attributed_file_and_segments(slicer, scene, logic):
    """The shipped sample is byte-identical to its SOURCE.md checksum and runs through the logic."""
    import DeepWML
    import SimpleITK as sitk

    path = Path(DeepWML.sampleDataPath())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DeepWML.SAMPLE_SHA256
    assert DeepWML.SAMPLE_SHA256 in (path.parent / "SOURCE.md").read_text(encoding="utf-8")
    assert path.stat().st_size < 2_000_000
    image = sitk.ReadImage(str(path))
    node = slicer.util.addVolumeFromArray(sitk.GetArrayFromImage(image).astype(np.float32), name="MS_FLAIR")
    node.SetSpacing(image.GetSpacing())
    node, summary = logic.segment(node, device="cpu")
    assert summary["lesion_count"] == len(summary["lesions"])
    assert node.GetName() == "MS_FLAIR WMH"


# --- background jobs -------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    from DeepWMLLib.jobs import _alive as alive

    return alive(pid)


def test_cancel_ends_the_whole_process_tree_and_reads_cancelled(slicer, tmp_path):
    """Item 8: like PythonSlicer, the job's process starts the real worker as a child (which
    starts its own); cancel must end all of them, and the status is "cancelled"."""
    from DeepWMLLib.jobs import CANCELLED, BackgroundJob

    script = tmp_path / "tree.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        depth = int(sys.argv[1])
        if depth:
            subprocess.Popen([sys.executable, __file__, str(depth - 1)])
        print("pid", depth, __import__("os").getpid(), flush=True)
        time.sleep(120)
    """))
    job = BackgroundJob([sys.executable, str(script), "2"], tmp_path / "log.txt")
    pids, deadline = {}, time.monotonic() + 30
    while len(pids) < 3 and time.monotonic() < deadline:
        for line in job.new_lines():
            _, depth, pid = line.split()
            pids[int(depth)] = int(pid)
        time.sleep(0.05)
    assert len(pids) == 3, job.log_text()
    job.cancel(grace_s=2.0)
    assert job.status == CANCELLED and not job.running()
    time.sleep(0.2)
    assert not [pid for pid in pids.values() if _alive(pid)]
    assert "pid 0" in (tmp_path / "log.txt").read_text()


def test_job_status_finished_and_failed(slicer, tmp_path):
    from DeepWMLLib.jobs import FAILED, FINISHED, BackgroundJob

    ok = BackgroundJob([sys.executable, "-c", "print('a\\rb')"])
    assert ok.wait(30) == FINISHED and ok.log_text().splitlines() == ["a", "b"]
    bad = BackgroundJob([sys.executable, "-c", "raise SystemExit(3)"])
    assert bad.wait(30) == FAILED and bad.returncode == 3


def test_worker_progress_and_error_lines(slicer, scene, logic, tmp_path):
    """The panel's path fails with the worker's own one-line reason, not a traceback."""
    from DeepWMLLib.inference_worker import parse_progress
    from DeepWMLLib.segmentation import SegmentationFailed

    assert parse_progress("PROGRESS 3 24") == (3, 24)
    assert parse_progress("PROGRESS x 24") is None and parse_progress("epoch 3") is None
    flair = volume(slicer, "FLAIR")
    run = logic.startSegmentation(flair, device="cpu", modelPath=str(tmp_path / "no-such-model"))
    with pytest.raises(SegmentationFailed, match="no-such-model"):
        logic.finishSegmentation(run)
    assert not os.path.exists(run.workDir)


def test_panel_path_runs_the_int8_graph_when_asked(slicer, scene, logic):
    """The Advanced "Precision: int8" choice reaches the worker: the bundled model's quantised
    graph runs (no PyTorch needed) and the result records it."""
    flair = volume(slicer, "FLAIR")
    run = logic.startSegmentation(flair, device="cpu", precision="int8")
    node, summary = logic.finishSegmentation(run)
    assert node is not None and "--precision" in run.job.command and "int8" in run.job.command
    assert summary["precision"] == "int8" and summary["backend"] == "onnx"
    assert not os.path.exists(run.workDir)


def test_panel_path_sees_thin_slices_through_sliding_slabs_when_asked(slicer, scene, logic):
    """The Advanced "Thin slices" choice reaches the worker: a 1 mm volume is seen through sliding
    3 mm slabs, and the result's thin-slice caution quotes the card's figures for that choice."""
    from DeepWMLLib import parameters

    assert list(parameters.THIN_SLICES.values()) == [0.0, 3.0]
    flair = volume(slicer, "FLAIR3D", shape=(20, 40, 48), spacing=(1.0, 1.0, 1.0))
    run = logic.startSegmentation(flair, device="cpu", slidingSlabMm=parameters.THIN_SLICES["sliding 3 mm slabs"])
    node, summary = logic.finishSegmentation(run)
    assert node is not None and run.job.command[-2:] == ["--sliding-slab-mm", "3"]
    thin = [c["text"] for c in summary["cautions"] if c["code"] == "thin_slices"]
    assert thin and "sliding 3 mm slabs" in thin[0]
    plain = logic.startSegmentation(flair, device="cpu")
    assert "--sliding-slab-mm" not in plain.job.command
    _, plain_summary = logic.finishSegmentation(plain)
    assert "sliding" not in [c["text"] for c in plain_summary["cautions"] if c["code"] == "thin_slices"][0]


# --- one dependency list ---------------------------------------------------------------------
def test_dependencies_missing_and_install_order(slicer):
    from DeepWMLLib import dependencies as deps

    present = {"numpy", "SimpleITK", "torch", "safetensors", "scipy", "tqdm", "slicerio", "matplotlib"}
    versions = {"torch": "2.0.1", "numpy": "1.26.4"}

    def find_spec(name):
        return object() if name in present else None

    assert [r.module for r in deps.missing("segment", find_spec, versions.get)] == ["onnxruntime", "onnx"]
    missing = deps.missing("torch", find_spec, versions.get)
    assert [r.module for r in missing] == ["torch", "onnxruntime", "onnx"]  # torch below its floor
    assert [r.module for r in deps.missing("train", find_spec, versions.get)] == ["torch", "onnxruntime", "onnx"]
    assert {r.module for r in deps.missing("phantoms", find_spec, versions.get)} >= {"nibabel", "nilearn"}

    calls = []
    deps.install(missing, pip_install=lambda spec: calls.append(("pip", spec)),
                 torch_installer=lambda req: calls.append(("torch", req)) or "torch", log=lambda _: None)
    assert calls == [("torch", f">={deps.TORCH_FLOOR}"), ("pip", "onnxruntime>=1.16"), ("pip", "onnx>=1.16")]
    with pytest.raises(deps.DependencyError, match="PyTorch"):
        deps.install(missing[:1], pip_install=calls.append, torch_installer=lambda req: None, log=lambda _: None)
    bundled = [r for r in deps.REQUIREMENTS if r.bundled]
    with pytest.raises(deps.DependencyError, match="5.6"):
        deps.install(bundled, pip_install=calls.append, log=lambda _: None)


def test_cpu_segmentation_never_asks_for_pytorch(slicer):
    """Plain CPU segmentation (device auto/cpu, backend auto/onnx) needs onnxruntime etc. but
    not PyTorch; CUDA, the PyTorch backend and training do."""
    from DeepWMLLib import dependencies as deps

    assert {r.module for r in deps.REQUIREMENTS if r.needed_for in deps.GROUPS["segment"]} >= {
        "onnxruntime", "safetensors", "numpy", "SimpleITK"}
    assert "torch" not in {r.module for r in deps.REQUIREMENTS if r.needed_for in deps.GROUPS["segment"]}
    for device in ("auto", "cpu"):
        for backend in ("auto", "onnx"):
            assert deps.use_for_segmentation(device, backend) == "segment"
    assert deps.use_for_segmentation("cuda", "auto") == "torch"
    assert deps.use_for_segmentation("cpu", "torch") == "torch"
    assert {"torch"} <= {r.module for r in deps.REQUIREMENTS if r.needed_for in deps.GROUPS["train"]}
    nothing_but_torch = deps.missing("segment", lambda name: None if name == "torch" else object(),
                                     lambda _package: None)
    assert nothing_but_torch == []


# --- model choice in Slicer's settings -----------------------------------------------------
def test_model_choice_verifies_and_reverts(slicer, tiny_model_dir, tmp_path):
    from deepwml.errors import ModelFileError
    from DeepWMLLib.settings import MODEL_KEY, MemoryStore, ModelChoice

    store = MemoryStore()
    choice = ModelChoice(store)
    assert choice.current() is None
    assert choice.use(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    assert store[MODEL_KEY] == str(tiny_model_dir.resolve()) and choice.current() == store[MODEL_KEY]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{}")
    with pytest.raises(ModelFileError):
        choice.use(str(broken))
    assert choice.current() == str(tiny_model_dir.resolve())  # a bad model is never stored
    choice.revert()
    assert choice.current() is None and MODEL_KEY not in store


# --- what the panels show (no Qt) -----------------------------------------------------------
def test_the_model_line_names_the_reading_a_fine_tune_inherited(slicer, tmp_path):
    """A fine-tune's card (deepwml train --init) says whose threshold and floor it reads its output with; the panel says
    so beside the model's name."""
    import json

    from DeepWMLLib import panel

    (tmp_path / "model.json").write_text(json.dumps({
        "name": "deepwml-synth-unet16", "version": "site-1", "threshold": 0.7, "notes": "Fine-tuned on our scans",
        "metrics": {"threshold_selection": {"chosen": 0.7, "inherited_from": "deepwml-synth-unet16@1.8.0"}}}))
    line = panel.model_line(str(tmp_path))
    assert line == ("Model: deepwml-synth-unet16 site-1 (your model). Fine-tuned on our scans. Threshold and contrast "
                    "floor as deepwml-synth-unet16@1.8.0.")
    # after deepwml choose-threshold: its own threshold, its parent's floor
    (tmp_path / "model.json").write_text(json.dumps({
        "name": "deepwml-synth-unet16", "version": "site-1", "threshold": 0.8, "notes": "Fine-tuned on our scans",
        "contrast_floor": {"factor": 1.15, "inherited_from": "deepwml-synth-unet16@1.8.0"},
        "metrics": {"threshold_selection": {"chosen": 0.8,
                                            "replaced": {"inherited_from": "deepwml-synth-unet16@1.8.0"}}}}))
    assert panel.model_line(str(tmp_path)).endswith(
        "Threshold chosen on its validation cases; contrast floor as deepwml-synth-unet16@1.8.0.")


def test_panel_lines(slicer, tiny_model_dir):
    from DeepWMLLib import panel

    bundled = panel.model_line(None)
    assert "deepwml-synth-unet16" in bundled and "(bundled)" in bundled
    assert "synthetic" in bundled.lower() and "Not validated on patients" in bundled
    assert "tiny-test" in panel.model_line(str(tiny_model_dir))
    assert "Threshold and contrast floor as" not in panel.model_line(str(tiny_model_dir))
    line = panel.result_line({"total_volume_ml": 2.345, "lesion_count": 1, "node": "FLAIR WMH_1",
                              "reason": "new node: FLAIR WMH was edited and is kept as it is",
                              "threshold": 0.4, "seconds": 1.94, "device": "cpu", "backend": "onnx"})
    assert line.startswith("2.35 ml in 1 lesion;") and "FLAIR WMH_1" in line and "was edited" in line
    assert "1.9 s on cpu (onnx)" in line and "int8" not in line
    fast = {"total_volume_ml": 1.0, "lesion_count": 1, "seconds": 0.8, "device": "cpu", "backend": "onnx"}
    assert "0.8 s on cpu (onnx, int8)" in panel.result_line({**fast, "precision": "int8", "int8_fallback": None})
    bright = panel.result_line({**fast, "precision": "float32", "int8_fallback": {
        "head_share_above_input_range": 0.0652, "input_range_max": 2.75, "limit": 0.01}})
    assert "int8 asked, float32 ran: 6.5 % of the head" in bright and "(onnx)" in bright
    assert panel.outcome_line("cancelled") == "Cancelled: nothing was written."
    assert panel.outcome_line("failed", "bad spacing").startswith("Failed: bad spacing")
    idle = panel.button_states(True, False, True, True)
    busy = panel.button_states(True, True, True, True)
    assert idle["segment"] and not idle["cancel"] and idle["segmentEditor"] and idle["rethreshold"]
    assert not busy["segment"] and busy["cancel"] and not busy["rethreshold"]
    assert not panel.button_states(False, False, False, False)["segment"]
    rows = panel.lesion_rows([{"lesion": 1, "volume_ml": 0.1234, "first_slice": 3, "last_slice": 5},
                              {"lesion": 2, "volume_ml": 0.01, "first_slice": 7, "last_slice": 7}])
    assert rows == [["1", "0.123", "3–5"], ["2", "0.010", "7"]]


def test_result_line_says_what_the_brain_mask_removed(slicer):
    from DeepWMLLib import panel

    base = {"total_volume_ml": 2.0, "lesion_count": 3, "node": "FLAIR WMH", "reason": "new", "threshold": 0.8}
    assert "outside the brain" not in panel.result_line(base)
    applied = {**base, "brain_mask": {"applied": True, "removed_ml": 0.4321}}
    assert "0.43 ml outside the brain removed" in panel.result_line(applied)
    assert "brain mask not applied" in panel.result_line({**base, "brain_mask": {"applied": False}})
    assert "white matter" not in panel.result_line(base)
    floored = {**base, "contrast_floor": {"factor": 1.15, "white_matter_level": 812.0, "removed_voxels": 40}}
    assert "marks below 1.15x white matter removed" in panel.result_line(floored)
    skipped = {**base, "contrast_floor": {"factor": 1.15, "white_matter_level": None, "not_applied": "no brain mask"}}
    assert "contrast floor not applied (no brain mask)" in panel.result_line(skipped)
    white = {"applied": True, "removed_ml": 0.25, "mesial_temporal": None}
    assert "0.25 ml away from the white matter removed" in panel.result_line({**base, "white_matter": white})
    assert "hippocampus" not in panel.result_line({**base, "white_matter": white})
    mesial = {**white, "mesial_temporal": {"applied": True, "removed_ml": 0.9876}}
    assert "0.99 ml on the hippocampus/amygdala removed" in panel.result_line({**base, "white_matter": mesial})
    untrusted = {**white, "mesial_temporal": {"applied": False, "removed_ml": 0.0}}
    assert "hippocampus/amygdala exclusion not applied" in panel.result_line({**base, "white_matter": untrusted})


def test_training_steps_enable_only_what_can_run(slicer, tmp_path, tiny_model_dir):
    from DeepWMLLib import panel

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case\n")
    for work in ("", "relative/folder"):  # never Slicer's current directory
        steps = panel.training_steps(str(manifest), work, False, None)
        assert not any(enabled for name, (enabled, _) in steps.items() if name != "cancel")
    work = tmp_path / "work"
    steps = panel.training_steps(str(manifest), str(work), False, None)
    assert steps["consensus"][0] and steps["train"][0] and steps["evaluate"][0]
    assert "bundled model" in steps["evaluate"][1]
    assert not steps["use"][0] and not steps["revert"][0] and not steps["cancel"][0]
    (work / "run" / "model").mkdir(parents=True)
    (work / "run" / "model" / "model.json").write_text("{}")
    steps = panel.training_steps(str(manifest), str(work), False, str(tiny_model_dir))
    assert steps["use"][0] and steps["revert"][0] and "trained model" in steps["evaluate"][1]
    running = panel.training_steps(str(manifest), str(work), True, str(tiny_model_dir))
    assert running["cancel"][0]
    assert not any(running[name][0] for name in ("consensus", "train", "evaluate", "use", "revert"))
    assert "h" in panel.training_estimate(200, 100, 64, "cpu")
    assert "GPU" in panel.training_estimate(200, 100, 64, "cuda")


def test_parameter_node_fields_are_bound_in_the_ui(slicer):
    """Every parameter has a widget carrying its SlicerParameterName, and nothing else does."""
    from DeepWMLLib import parameters

    tree = ET.parse(ROOT / "DeepWML" / "Resources" / "UI" / "DeepWML.ui")
    bound = {}
    for widget in tree.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("name")
    assert set(bound) == set(parameters.FIELDS) == set(parameters.DeepWMLParameterNode.__annotations__)
    for name, default in parameters.FIELDS.items():
        assert getattr(parameters.DeepWMLParameterNode, name) == default


def test_bf16_training_box_asks_the_cpu_only_when_it_matters(slicer):
    """Opt-in, and only where it speeds training up: never on a CPU without native bf16."""
    from DeepWMLLib import panel

    def never() -> bool:
        raise AssertionError("the CPU must not be probed")

    assert panel.training_precision_args(False, "cpu", never) == ([], "")
    args, note = panel.training_precision_args(True, "cuda", never)
    assert args == [] and "GPU" in note
    args, note = panel.training_precision_args(True, "cpu", lambda: False)
    assert args == [] and "float32" in note
    args, note = panel.training_precision_args(True, "cpu", lambda: True)
    assert args == ["--precision", "bf16"] and "2.7x" in note
