"""DeepWML: one click from a FLAIR volume to an editable white matter hyperintensity segmentation.

A thin shell over the ``deepwml`` engine (shipped in this module's folder) and the Slicer-side
helpers in ``DeepWMLLib``. Qt is used only inside :class:`DeepWMLWidget`; :class:`DeepWMLLogic`
works from the Python console, in tests and in batch without any GUI. The panel runs inference
in a background process (the GUI stays responsive; Cancel ends the whole process tree);
``DeepWMLLogic.segment`` runs it in this process for scripts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import slicer
import vtk
from DeepWMLLib import dependencies, panel
from DeepWMLLib import segmentation as results
from DeepWMLLib.jobs import CANCELLED, FAILED, RUNNING, BackgroundJob, job_environment, python_command
from DeepWMLLib.segmentation import (MASK_HASH_ATTRIBUTE, SEGMENT_ID, SegmentationCancelled,  # noqa: F401
                                     SegmentationFailed, oriented_image_from_mask)
from DeepWMLLib.settings import ModelChoice
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

SAMPLE_NAME = "MS FLAIR (Lesjak 2016, patient 20)"
SAMPLE_FILE = "Lesjak2016-patient20-study2-FLAIR.nii.gz"
SAMPLE_SHA256 = "2f011e01366182593c0d8bca7b13cd5829b8e52826d323164881ef8fd0906d7e"


class DeepWML(ScriptedLoadableModule):
    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "DeepWML"
        parent.categories = ["Segmentation"]
        parent.dependencies = []
        parent.contributors = ["DeepWML team"]
        parent.helpText = (
            "Segment white matter hyperintensities (MS, NMOSD, small vessel disease) on a clinical "
            "2D FLAIR volume: pick the volume, click <b>Segment lesions</b>, then correct the result "
            "in Segment Editor. The bundled model is trained on synthetic images only (real anatomy, "
            "no patient FLAIR) and under-segments large lesion loads on real scans; see the "
            "model line on the panel and the model card before any clinical use.")
        parent.acknowledgementText = (
            "Implements the DeepWML method (2D U-Net on multi-center FLAIR). Sample FLAIR: Lesjak et al., "
            "Neuroinformatics 2016 (CC-BY), Laboratory of Imaging Technologies, University of Ljubljana.")
        if hasattr(slicer, "app"):
            slicer.app.connect("startupCompleted()", self.onStartupCompleted)

    def onStartupCompleted(self) -> None:
        from DeepWMLLib import terminology

        terminology.load_at_startup()
        registerSampleData(os.path.dirname(self.parent.path))


def sampleDataPath(moduleDir: Optional[str] = None) -> str:
    moduleDir = moduleDir or os.path.dirname(os.path.abspath(__file__))
    return os.path.join(moduleDir, "Resources", "SampleData", SAMPLE_FILE)


def registerSampleData(moduleDir: Optional[str] = None) -> None:
    """The shipped FLAIR in Sample Data, so a first-time user can try the module in one click."""
    import pathlib

    import SampleData

    path = sampleDataPath(moduleDir)
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DeepWML", sampleName=SAMPLE_NAME, uris=[pathlib.Path(path).as_uri()], fileNames=[SAMPLE_FILE],
        nodeNames=["MS_FLAIR"], thumbnailFileName=os.path.join(os.path.dirname(path), "..", "Icons", "DeepWML.png"),
        checksums=[f"SHA256:{SAMPLE_SHA256}"])


@dataclass
class InferenceRun:
    """A segmentation running in a background process (see ``DeepWMLLib.inference_worker``)."""

    job: BackgroundJob
    volumeNodeID: str
    workDir: str
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    total: int = 1
    log: List[str] = field(default_factory=list)
    error: str = ""

    def poll(self) -> List[str]:
        """New log lines; updates :attr:`done`/:attr:`total` and :attr:`error`."""
        from DeepWMLLib.inference_worker import ERROR_PREFIX, parse_progress

        shown = []
        for line in self.job.new_lines():
            step = parse_progress(line)
            if step is not None:
                self.done, self.total = step
                continue
            if line.startswith(ERROR_PREFIX):
                self.error = line[len(ERROR_PREFIX):].strip()
            shown.append(line)
        self.log.extend(shown)
        return shown

    @property
    def status(self) -> str:
        return self.job.status


class DeepWMLLogic(ScriptedLoadableModuleLogic):
    """Segmentation of volume nodes; usable without any GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._segmenter = None
        self._segmenter_key = None
        #: Probability maps kept per result node ID, so a threshold change never re-runs the network.
        self._probabilities: dict = {}

    def getParameterNode(self):
        from DeepWMLLib.parameters import DeepWMLParameterNode

        return DeepWMLParameterNode(super().getParameterNode())

    # --- engine -------------------------------------------------------------------------
    @staticmethod
    def modelPath(modelPath: Optional[str] = None) -> Optional[str]:
        """The model to run: the one given, else the one chosen in Slicer's settings, else bundled."""
        return modelPath or ModelChoice().current()

    def segmenter(self, modelPath: Optional[str] = None, device: str = "auto", precision: str = "auto",
                  backend: str = "auto", brainMask: bool = True, slidingSlabMm: float = 0.0,
                  whiteMatter: bool = True):
        """A cached engine Segmenter (model loading takes a moment; reuse it across runs)."""
        from deepwml.options import thin_slab_kwargs
        from deepwml.segmenter import Segmenter

        modelPath = self.modelPath(modelPath)
        key = (modelPath, device, precision, backend, brainMask, slidingSlabMm, whiteMatter)
        if self._segmenter is None or self._segmenter_key != key:
            self._segmenter = Segmenter(modelPath, device=device, precision=precision, backend=backend,
                                        brain_model="bundled" if brainMask else None,
                                        white_matter_model="bundled" if whiteMatter else None,
                                        **thin_slab_kwargs(sliding_slab_mm=slidingSlabMm))
            self._segmenter_key = key
        return self._segmenter

    @staticmethod
    def imageFromVolumeNode(volumeNode):
        """The volume as a SimpleITK image in LPS on its own voxel grid (parent transforms are
        not applied: the result is written on the same grid, under the same transform)."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(slicer.util.arrayFromVolume(volumeNode).astype(np.float32))
        image.SetSpacing(volumeNode.GetSpacing())
        ras_to_lps = np.diag([-1.0, -1.0, 1.0])
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASDirectionMatrix(matrix)
        directions = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
        image.SetDirection(tuple((ras_to_lps @ directions).ravel()))
        image.SetOrigin(tuple(ras_to_lps @ np.array(volumeNode.GetOrigin())))
        return image

    # --- segmentation nodes (kept for scripts; see DeepWMLLib.segmentation) ------------------
    @staticmethod
    def maskFromSegmentation(segmentationNode, referenceVolumeNode, segmentId: str = SEGMENT_ID):
        return results.mask_from_segmentation(segmentationNode, referenceVolumeNode, segmentId)

    @staticmethod
    def isEdited(segmentationNode, referenceVolumeNode) -> bool:
        return results.is_edited(segmentationNode, referenceVolumeNode)

    @staticmethod
    def outputFor(volumeNode):
        """The volume's newest DeepWML result, or None (what the output selector should show)."""
        return results.latest_result_of(volumeNode) if volumeNode is not None else None

    # --- from probabilities to a result node ---------------------------------------------
    def applyProbabilities(self, volumeNode, probabilities: np.ndarray, segmentationNode=None,
                           threshold: float = 0.5, info: Optional[dict] = None):
        """Threshold ``probabilities`` (``[k, j, i]`` on the volume's grid) into a result node
        chosen by :func:`DeepWMLLib.segmentation.choose_output`; return ``(node, summary)``."""
        import SimpleITK as sitk

        from deepwml.known_limits import cautions
        from deepwml.lesion_summary import lesion_summary

        info = dict(info or {})
        limits = info.get("known_limits") or {}
        mask = (probabilities >= threshold).astype(np.uint8)
        node, reason = results.choose_output(volumeNode, segmentationNode)
        if node is None:
            node = results.new_segmentation_node(volumeNode)
        results.write_mask(mask, volumeNode, node, threshold, info.get("model", ""))
        # the limits travel with the probabilities: a re-thresholded result keeps its cautions
        self._probabilities[node.GetID()] = (probabilities, volumeNode.GetID(), limits)
        mask_image = sitk.GetImageFromArray(mask)
        mask_image.CopyInformation(self.imageFromVolumeNode(volumeNode))
        summary = lesion_summary(mask_image)
        summary.update(info, node=node.GetName(), reason=reason, threshold=threshold,
                       lesions=results.lesion_table(mask, volumeNode),
                       cautions=cautions(limits, summary["total_volume_ml"]))
        return node, summary

    def hasProbabilities(self, segmentationNode) -> bool:
        return segmentationNode is not None and segmentationNode.GetID() in self._probabilities

    def rethreshold(self, segmentationNode, threshold: float):
        """Apply a new threshold to the kept probability map without re-running the network.
        An edited result is never changed: the new mask goes to a new node (reason says so)."""
        if not self.hasProbabilities(segmentationNode):
            raise ValueError(f"no probability map kept for {segmentationNode.GetName()}; run Segment lesions")
        probabilities, volumeID, limits = self._probabilities[segmentationNode.GetID()]
        volumeNode = segmentationNode.GetScene().GetNodeByID(volumeID)
        return self.applyProbabilities(volumeNode, probabilities, segmentationNode, threshold,
                                       {"model": segmentationNode.GetAttribute(results.MODEL_ATTRIBUTE) or "",
                                        "known_limits": limits})

    # --- in this process (console, batch, tests) --------------------------------------------
    def segment(self, volumeNode, segmentationNode=None, device: str = "auto",
                threshold: Optional[float] = None, modelPath: Optional[str] = None,
                progress: Optional[Callable[[int, int], Optional[bool]]] = None, backend: str = "auto",
                brainMask: bool = True, slidingSlabMm: float = 0.0, whiteMatter: bool = True):
        """Segment ``volumeNode``; return ``(segmentationNode, summary dict)``.

        Writes into ``segmentationNode`` (or, if None, the volume's own previous result) only if
        it belongs to this volume and holds exactly DeepWML's last, unedited output; otherwise a
        new node "<volume> WMH" is made. ``progress(done, total)`` returning False cancels:
        :class:`SegmentationCancelled` is raised and nothing is written.
        """
        import SimpleITK as sitk

        from deepwml.image_io import validate_flair
        from deepwml.segmenter import Cancelled

        if volumeNode is None:
            raise ValueError("no input volume selected")
        t0 = time.perf_counter()
        image = validate_flair(self.imageFromVolumeNode(volumeNode), volumeNode.GetName())
        segmenter = self.segmenter(modelPath, device, backend=backend, brainMask=brainMask, slidingSlabMm=slidingSlabMm,
                                   whiteMatter=whiteMatter)
        try:
            result = segmenter.segment(image, threshold, progress)
        except Cancelled as err:
            raise SegmentationCancelled(str(err)) from None
        probabilities = sitk.GetArrayFromImage(result.probabilities)
        info = result.panel_info()
        node, summary = self.applyProbabilities(volumeNode, probabilities, segmentationNode, result.threshold, info)
        summary["seconds"] = time.perf_counter() - t0
        return node, summary

    # --- in a background process (the panel) ---------------------------------------------
    def startSegmentation(self, volumeNode, device: str = "auto", backend: str = "auto",
                          modelPath: Optional[str] = None, precision: str = "auto",
                          brainMask: bool = True, slidingSlabMm: float = 0.0, whiteMatter: bool = True) -> InferenceRun:
        """Write the volume to a temporary file and start the worker; poll the returned run."""
        import SimpleITK as sitk

        from deepwml.image_io import validate_flair

        if volumeNode is None:
            raise ValueError("no input volume selected")
        image = validate_flair(self.imageFromVolumeNode(volumeNode), volumeNode.GetName())
        workDir = tempfile.mkdtemp(prefix="DeepWML-")
        sitk.WriteImage(image, os.path.join(workDir, "input.nrrd"))
        command = [*python_command(), "-m", "DeepWMLLib.inference_worker", os.path.join(workDir, "input.nrrd"),
                   os.path.join(workDir, "out"), "--device", device, "--backend", backend,
                   "--precision", precision]
        if not brainMask:
            command.append("--no-brain-mask")
        if not whiteMatter:
            command.append("--no-white-matter")
        if slidingSlabMm > 0:  # thin-slice volumes through sliding slabs (README "Sliding slabs")
            command += ["--sliding-slab-mm", f"{slidingSlabMm:g}"]
        model = self.modelPath(modelPath)
        if model:
            command += ["--model", model]
        job = BackgroundJob(command, os.path.join(workDir, "log.txt"), env=job_environment())
        return InferenceRun(job, volumeNode.GetID(), workDir)

    def finishSegmentation(self, run: InferenceRun, segmentationNode=None, threshold: Optional[float] = None):
        """Read a finished run's probabilities into a result node; ``(node, summary)``.
        Raises :class:`SegmentationCancelled` or :class:`SegmentationFailed`."""
        import SimpleITK as sitk

        status = run.job.wait()
        run.poll()
        try:
            if status == CANCELLED:
                raise SegmentationCancelled("segmentation cancelled")
            if status == FAILED:
                raise SegmentationFailed(run.error or f"the segmentation process exited with code "
                                         f"{run.job.returncode}; see the log")
            volumeNode = slicer.mrmlScene.GetNodeByID(run.volumeNodeID)
            if volumeNode is None:
                raise SegmentationFailed("the input volume was removed from the scene while segmenting")
            out = os.path.join(run.workDir, "out")
            with open(os.path.join(out, "result.json"), encoding="utf-8") as handle:
                info = json.load(handle)
            probabilities = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "probabilities.nrrd")))
            if probabilities.shape != slicer.util.arrayFromVolume(volumeNode).shape:
                raise SegmentationFailed("the input volume changed while segmenting; run again")
            threshold = info.get("model_threshold", 0.5) if threshold is None else threshold
            node, summary = self.applyProbabilities(volumeNode, probabilities, segmentationNode, threshold, info)
            summary["seconds"] = time.perf_counter() - run.started
            return node, summary
        finally:
            shutil.rmtree(run.workDir, ignore_errors=True)


class DeepWMLWidget(ScriptedLoadableModuleWidget):
    """The panel. Everything it decides comes from DeepWMLLib.panel (tested without Qt)."""

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        self._qt = qt
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepWML.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepWMLLogic()
        self.run: Optional[InferenceRun] = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._summary: Optional[dict] = None
        #: True while the panel itself moves the threshold slider (to show a result's threshold)
        self._quietThreshold = False
        from DeepWMLLib.parameters import BACKENDS, DEVICES, PRECISIONS, THIN_SLICES

        for combo, items in ((self.ui.deviceComboBox, DEVICES), (self.ui.backendComboBox, BACKENDS),
                             (self.ui.precisionComboBox, PRECISIONS), (self.ui.thinSlicesComboBox, list(THIN_SLICES))):
            if combo.count == 0:
                combo.addItems(items)
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onOpenSegmentEditor)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.outputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onOutputChanged)
        self.ui.thresholdSlider.connect("valueChanged(double)", self.onThresholdChanged)
        self.ui.deviceComboBox.connect("currentTextChanged(QString)", self.onDeviceChanged)
        self.ui.lesionTable.connect("cellClicked(int,int)", self.onLesionClicked)
        self.ui.modelLabel.text = panel.model_line(ModelChoice().current())
        self.initializeParameterNode()
        self.updateButtons()

    # --- parameter node (a saved scene restores the panel) ------------------------------
    def initializeParameterNode(self) -> None:
        try:
            node = self.logic.getParameterNode()
            if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNode = node
            self._parameterNodeGuiTag = node.connectGui(self.ui)
        except Exception as err:  # Slicer without parameterNodeWrapper: the panel still works
            logging.warning("DeepWML: parameter node not connected (%s)", err)

    def enter(self) -> None:
        self.ui.modelLabel.text = panel.model_line(ModelChoice().current())
        if self._parameterNodeGuiTag is None:
            self.initializeParameterNode()

    def cleanup(self) -> None:
        """Slicer is closing or the module is reloaded: no job may outlive the panel."""
        self.timer.stop()
        if self.run is not None and self.run.status == RUNNING:
            self.run.job.cancel(grace_s=1.0)
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)

    # --- state ------------------------------------------------------------------------------
    def updateButtons(self, *_) -> None:
        output = self.ui.outputSelector.currentNode()
        states = panel.button_states(self.ui.inputSelector.currentNode() is not None,
                                     self.run is not None, output is not None,
                                     self.logic.hasProbabilities(output))
        self.ui.segmentButton.enabled = states["segment"]
        self.ui.cancelButton.enabled = states["cancel"]
        self.ui.segmentEditorButton.enabled = states["segmentEditor"]
        self.ui.segmentationShow3DButton.enabled = states["show3D"]
        self.ui.progressBar.visible = self.run is not None

    def onInputChanged(self, volumeNode) -> None:
        # Never leave another volume's result selected: a follow-up on the baseline's grid
        # would otherwise be written over the baseline's segmentation.
        self.ui.outputSelector.setCurrentNode(self.logic.outputFor(volumeNode))
        self.updateButtons()

    def onOutputChanged(self, node) -> None:
        self.ui.segmentationShow3DButton.setSegmentationNode(node)
        self.updateButtons()

    def onDeviceChanged(self, text: str) -> None:
        if text == "cuda" and not dependencies.missing("torch"):
            import torch

            if not torch.cuda.is_available():
                slicer.util.warningDisplay("No CUDA device is available here; DeepWML will run on the CPU "
                                           "(a few seconds per volume).")
                self.ui.deviceComboBox.setCurrentText("auto")

    def log(self, lines: List[str]) -> None:
        for line in lines:
            self.ui.logTextEdit.appendPlainText(line)

    # --- actions ----------------------------------------------------------------------------
    def onSegment(self) -> None:
        from DeepWMLLib.parameters import THIN_SLICES

        self.ui.logTextEdit.clear()
        self.ui.resultLabel.text = ""
        with slicer.util.tryWithErrorDisplay("DeepWML could not start.", waitCursor=True):
            use = dependencies.use_for_segmentation(self.ui.deviceComboBox.currentText,
                                                    self.ui.backendComboBox.currentText)
            dependencies.ensure_in_slicer(use, ask=True, log=lambda text: self.log([text]))
            self.run = self.logic.startSegmentation(self.ui.inputSelector.currentNode(),
                                                    self.ui.deviceComboBox.currentText,
                                                    self.ui.backendComboBox.currentText,
                                                    precision=self.ui.precisionComboBox.currentText,
                                                    brainMask=self.ui.brainMaskCheckBox.checked,
                                                    whiteMatter=self.ui.whiteMatterCheckBox.checked,
                                                    slidingSlabMm=THIN_SLICES[self.ui.thinSlicesComboBox.currentText])
            self.ui.progressBar.setValue(0)
            self.ui.resultLabel.text = "Segmenting…"
            self.timer.start()
        self.updateButtons()

    def onCancel(self) -> None:
        if self.run is not None:
            self.run.job.cancel()  # the whole process tree; status becomes "cancelled"
            self.onPoll()

    def onPoll(self) -> None:
        run = self.run
        if run is None:
            self.timer.stop()
            return
        self.log(run.poll())
        self.ui.progressBar.setValue(int(100 * run.done / max(run.total, 1)))
        if run.status == RUNNING:
            return
        self.timer.stop()
        self.run = None
        try:
            # a new result is made at the model's own threshold (its card's, chosen with the model;
            # the slider's 0.5 default would over-mark with the bundled model, whose threshold is
            # 0.8); the slider then shows it and re-thresholds from there
            node, summary = self.logic.finishSegmentation(run, self.ui.outputSelector.currentNode())
        except SegmentationCancelled:
            self.ui.resultLabel.text = panel.outcome_line(CANCELLED)
        except SegmentationFailed as err:
            self.ui.resultLabel.text = panel.outcome_line(FAILED, str(err))
            slicer.util.errorDisplay(f"DeepWML segmentation failed: {err}", detailedText="\n".join(run.log))
        else:
            self.showResult(node, summary)
        self.updateButtons()

    def showResult(self, node, summary: dict) -> None:
        self._summary = summary
        wasBlocked = self.ui.outputSelector.blockSignals(True)
        self.ui.outputSelector.setCurrentNode(node)
        self.ui.outputSelector.blockSignals(wasBlocked)
        self.ui.segmentationShow3DButton.setSegmentationNode(node)
        self.ui.resultLabel.text = panel.result_line(summary)
        self._showThreshold(summary.get("threshold"))
        rows = panel.lesion_rows(summary.get("lesions", []))
        table = self.ui.lesionTable
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                table.setItem(r, c, self._qt.QTableWidgetItem(value))

    def _showThreshold(self, value: Optional[float]) -> None:
        """Put a result's threshold on the slider without re-thresholding the result."""
        if value is None:
            return
        self._quietThreshold = True
        try:
            self.ui.thresholdSlider.value = value
        finally:
            self._quietThreshold = False

    def onThresholdChanged(self, value: float) -> None:
        node = self.ui.outputSelector.currentNode()
        if self._quietThreshold or self.run is not None or not self.logic.hasProbabilities(node):
            return  # applied by the next run
        with slicer.util.tryWithErrorDisplay("Could not apply the threshold."):
            node, summary = self.logic.rethreshold(node, value)
            self.showResult(node, summary)

    def onLesionClicked(self, row: int, _column: int) -> None:
        lesions = (self._summary or {}).get("lesions", [])
        if 0 <= row < len(lesions):
            ras = lesions[row]["ras"]
            slicer.modules.markups.logic().JumpSlicesToLocation(ras[0], ras[1], ras[2], True)

    def onOpenSegmentEditor(self) -> None:
        node, volume = self.ui.outputSelector.currentNode(), self.ui.inputSelector.currentNode()
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(node)
        if hasattr(editor, "setSourceVolumeNode"):  # Slicer 5.4+
            editor.setSourceVolumeNode(volume)
        else:
            editor.setMasterVolumeNode(volume)


class DeepWMLTest(ScriptedLoadableModuleTest):
    """What "Reload and Test" runs; CI runs the same class under pytest with real MRML."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_SegmentPhantomAndKeepEdits()
        self.setUp()
        self.test_TransformedVolumeNoLeftovers()
        self.setUp()
        self.test_BackgroundRunAndCancel()

    def phantomVolume(self, name: str = "PhantomFLAIR"):
        """A phantom FLAIR as a volume node, and its truth mask ``[k, j, i]``."""
        import SimpleITK as sitk

        if dependencies.missing("phantoms"):
            try:  # as the peers do: tests install what they need, or say why they cannot run
                dependencies.ensure_in_slicer("phantoms", ask=False)
            except Exception as err:
                self.skipTest(f"phantom packages missing and not installable: {err}")
        from deepwml.phantom.generator import make_case

        case = make_case(4, 2027)
        flair = case.flair
        volume = slicer.util.addVolumeFromArray(sitk.GetArrayFromImage(flair).astype(np.float32), name=name)
        volume.SetSpacing(flair.GetSpacing())
        lps = np.array(flair.GetOrigin())
        volume.SetOrigin(-lps[0], -lps[1], lps[2])
        volume.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
        return volume, sitk.GetArrayFromImage(case.truth) > 0

    def test_SegmentPhantomAndKeepEdits(self) -> None:
        import os
        import tempfile

        from deepwml.evaluation.metrics import dice
        from deepwml.segmentation_io import SEGMENT_NAME

        self.delayDisplay("Making a phantom FLAIR volume")
        volume, truth = self.phantomVolume()

        self.delayDisplay("Segmenting")
        logic = DeepWMLLogic()
        node, summary = logic.segment(volume, device="cpu")
        self.assertEqual(node.GetName(), "PhantomFLAIR WMH")
        segment = node.GetSegmentation().GetSegment(SEGMENT_ID)
        self.assertIsNotNone(segment)
        self.assertEqual(segment.GetName(), SEGMENT_NAME)
        self.assertFalse(segment.GetNameAutoGenerated())
        self.assertFalse(segment.GetColorAutoGenerated())
        value = vtk.reference("")
        self.assertTrue(segment.GetTag(segment.GetTerminologyEntryTagName(), value))
        self.assertIn("Segmentation category and type - DeepWML~SCT^49755003", str(value))
        mask = logic.maskFromSegmentation(node, volume)
        self.assertEqual(mask.shape, slicer.util.arrayFromVolume(volume).shape)
        score = dice(truth, mask > 0)
        self.delayDisplay(f"Dice vs phantom truth {score:.3f}, {summary['total_volume_ml']:.2f} ml")
        self.assertGreater(score, self.minimumDice)
        spacing = volume.GetSpacing()
        self.assertAlmostEqual(summary["total_volume_ml"], mask.sum() * np.prod(spacing) / 1000, places=2)
        self.assertEqual(len(summary["lesions"]), summary["lesion_count"])

        self.delayDisplay("Saving and reloading .seg.nrrd")
        path = os.path.join(tempfile.mkdtemp(), "wmh.seg.nrrd")
        storage = node.CreateDefaultStorageNode()
        storage.SetFileName(path)
        self.assertTrue(storage.WriteData(node))
        reloaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "reloaded")
        reader = reloaded.CreateDefaultStorageNode()
        reader.SetFileName(path)
        self.assertTrue(reader.ReadData(reloaded))
        np.testing.assert_array_equal(logic.maskFromSegmentation(reloaded, volume), mask)
        slicer.mrmlScene.RemoveNode(reloaded)

        self.delayDisplay("Simulating a paint edit, then re-running")
        edited = mask.copy()
        edited[mask.shape[0] // 2, 10:14, 10:14] = 1  # the radiologist paints a lesion
        self.paint(node, volume, edited)
        self.assertTrue(logic.isEdited(node, volume))
        second, summary2 = logic.segment(volume, segmentationNode=node, device="cpu")
        self.assertIsNot(second, node)
        self.assertIn("was edited", summary2["reason"])
        np.testing.assert_array_equal(logic.maskFromSegmentation(node, volume), edited)
        np.testing.assert_array_equal(logic.maskFromSegmentation(second, volume), mask)
        # An unedited DeepWML node is updated in place, whether named or not.
        third, _ = logic.segment(volume, segmentationNode=second, device="cpu")
        self.assertIs(third, second)
        fourth, _ = logic.segment(volume, device="cpu")
        self.assertIs(fourth, second)

        self.delayDisplay("Cancelling from the progress callback")
        before = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(SegmentationCancelled):
            logic.segment(volume, device="cpu", progress=lambda done, total: False)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("DeepWML self-test passed")

    def test_TransformedVolumeNoLeftovers(self) -> None:
        """A registered follow-up (volume under a 20 mm translation): the result must sit on the
        volume in world space, re-runs reuse the node, and no helper nodes are left behind."""
        self.delayDisplay("Segmenting a volume under a parent transform")
        volume, _ = self.phantomVolume("FollowUp")
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 20.0)
        transform.SetMatrixTransformToParent(matrix)
        volume.SetAndObserveTransformNodeID(transform.GetID())
        counts = {c: slicer.mrmlScene.GetNumberOfNodesByClass(c) for c in
                  ("vtkMRMLColorTableNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLDisplayNode")}
        logic = DeepWMLLogic()
        node, summary = logic.segment(volume, device="cpu")
        self.assertEqual(node.GetTransformNodeID(), transform.GetID())
        mask = logic.maskFromSegmentation(node, volume)
        self.assertGreater(mask.sum(), 0)
        # Same frame as the volume: the labelmap's grid is the volume's IJK-to-RAS and both sit
        # under the same transform, so every voxel lands where the volume's voxel is drawn.
        labelmap = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(SEGMENT_ID, labelmap)
        imageToWorld, ijkToRas = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(imageToWorld)
        volume.GetIJKToRASMatrix(ijkToRas)
        for r in range(4):
            for c in range(4):
                self.assertAlmostEqual(imageToWorld.GetElement(r, c), ijkToRas.GetElement(r, c), places=4)
        lesion = np.argwhere(mask > 0)[0]  # (k, j, i)
        expected = results.world_point(volume, lesion[::-1])
        local = list(ijkToRas.MultiplyPoint([*map(float, lesion[::-1]), 1.0])[:3])
        drawn = [0.0, 0.0, 0.0]
        node.TransformPointToWorld(local, drawn)
        np.testing.assert_allclose(drawn, expected, atol=1e-4)
        self.assertAlmostEqual(drawn[0] - local[0], 20.0, places=4)
        again, _ = logic.segment(volume, device="cpu")
        self.assertIs(again, node)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLColorTableNode"),
                         counts["vtkMRMLColorTableNode"])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode"),
                         counts["vtkMRMLLabelMapVolumeNode"])
        # display nodes: the new segmentation's own, nothing orphaned
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLDisplayNode"),
                         counts["vtkMRMLDisplayNode"] + 1)

    def test_BackgroundRunAndCancel(self) -> None:
        """The panel's path: a background process with progress; cancel reports "cancelled"."""
        self.delayDisplay("Segmenting in a background process")
        volume, truth = self.phantomVolume()
        logic = DeepWMLLogic()
        run = logic.startSegmentation(volume, device="cpu")
        node, summary = logic.finishSegmentation(run)
        self.assertEqual(run.total, run.done)
        self.assertGreater(run.total, 1)
        reference, _ = DeepWMLLogic().segment(volume, device="cpu")
        self.assertIs(reference, node)  # same volume, unedited: updated in place
        self.assertTrue(logic.hasProbabilities(node))

        self.delayDisplay("Cancelling a background run")
        run = logic.startSegmentation(volume, device="cpu")
        run.job.cancel()
        with self.assertRaises(SegmentationCancelled):
            logic.finishSegmentation(run)
        self.assertEqual(run.status, CANCELLED)
        self.assertEqual(panel.outcome_line(run.status), "Cancelled: nothing was written.")
        self.delayDisplay("DeepWML background self-test passed")

    #: The bundled phantom model reaches far more; this guards against a broken pipeline.
    minimumDice = 0.5

    @staticmethod
    def paint(segmentationNode, volumeNode, mask: np.ndarray) -> None:
        """Write ``mask`` into the segment the way Segment Editor's effects do."""
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            oriented_image_from_mask(mask, volumeNode), segmentationNode, SEGMENT_ID,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
