"""DeepWML: one click from a FLAIR volume to an editable white matter hyperintensity segmentation.

A thin shell over the ``deepwml`` engine (shipped in this module's folder). Qt is used only
inside :class:`DeepWMLWidget`; :class:`DeepWMLLogic` works from the Python console, in tests
and in batch without any GUI.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable

import numpy as np
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

#: Python packages the engine needs beyond what 3D Slicer ships (name -> pip requirement).
ENGINE_REQUIREMENTS = {"torch": "torch", "safetensors": "safetensors", "scipy": "scipy",
                       "slicerio": "slicerio", "tqdm": "tqdm", "onnxruntime": "onnxruntime"}
#: Attribute on segmentation nodes written by DeepWML: a hash of the mask as written, so a
#: re-run can tell whether the radiologist has edited it since.
MASK_HASH_ATTRIBUTE = "DeepWML.MaskHash"
SEGMENT_ID = "WMH"


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
            "in Segment Editor. The bundled model is trained on synthetic phantoms only; see the "
            "model card before any clinical use.")
        parent.acknowledgementText = "Implements the DeepWML method (2D U-Net on multi-center FLAIR)."


def missing_requirements() -> list[str]:
    """pip requirements of the engine not importable in this Python."""
    import importlib.util

    return [req for module, req in ENGINE_REQUIREMENTS.items() if importlib.util.find_spec(module) is None]


def register_segmentation_converters() -> None:
    """Make binary labelmaps constructible. The app's Segmentations module registers these
    rules at start-up; headless MRML (tests, batch) has to do it itself."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.ConstructRepresentationObjectByRepresentation("Binary labelmap") is not None:
        return
    for rule in ("vtkBinaryLabelmapToClosedSurfaceConversionRule",
                 "vtkClosedSurfaceToBinaryLabelmapConversionRule"):
        factory.RegisterConverterRule(getattr(slicer, rule)())


def oriented_image_from_mask(mask: np.ndarray, volumeNode):
    """A ``[k, j, i]`` mask as vtkOrientedImageData on the volume's grid (what effects write)."""
    scene = volumeNode.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "DeepWML temporary")
    try:
        slicer.util.updateVolumeFromArray(labelmap, (mask > 0).astype(np.uint8))
        labelmap.CopyOrientation(volumeNode)
        image = slicer.vtkOrientedImageData()
        image.DeepCopy(labelmap.GetImageData())
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetIJKToRASMatrix(matrix)
        image.SetImageToWorldMatrix(matrix)
        return image
    finally:
        scene.RemoveNode(labelmap)


def segment_tag(segment, name: str) -> str:
    """A segment's tag value (the C++ API returns it through an output argument)."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else ""


def mask_hash(mask: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(mask > 0).tobytes()).hexdigest()


class DeepWMLLogic(ScriptedLoadableModuleLogic):
    """Segmentation of volume nodes; usable without any GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._segmenter = None
        self._segmenter_key = None

    # --- engine -------------------------------------------------------------------------
    def segmenter(self, modelPath: str | None = None, device: str = "auto", precision: str = "auto"):
        """A cached engine Segmenter (model loading takes a moment; reuse it across runs)."""
        from deepwml.segmenter import Segmenter
        from deepwml.user_settings import preferred_model

        modelPath = modelPath or preferred_model()
        key = (modelPath, device, precision)
        if self._segmenter is None or self._segmenter_key != key:
            self._segmenter = Segmenter(modelPath, device=device, precision=precision)
            self._segmenter_key = key
        return self._segmenter

    @staticmethod
    def imageFromVolumeNode(volumeNode):
        """The volume as a SimpleITK image in LPS (what the engine expects), voxels copied."""
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

    # --- segmentation nodes --------------------------------------------------------------
    @staticmethod
    def maskFromSegmentation(segmentationNode, referenceVolumeNode, segmentId: str = SEGMENT_ID) -> np.ndarray | None:
        """The segment as a ``[k, j, i]`` array on the reference volume's grid (None if absent)."""
        segmentation = segmentationNode.GetSegmentation()
        if segmentation.GetSegment(segmentId) is None:
            return None
        scene = segmentationNode.GetScene()
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "DeepWML temporary")
        try:
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segmentId)
            slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, ids, labelmap, referenceVolumeNode)
            return slicer.util.arrayFromVolume(labelmap).copy()
        finally:
            scene.RemoveNode(labelmap)

    def isEdited(self, segmentationNode, referenceVolumeNode) -> bool:
        """True when the node holds anything other than exactly what DeepWML last wrote."""
        written = segmentationNode.GetAttribute(MASK_HASH_ATTRIBUTE)
        if written is None:
            return segmentationNode.GetSegmentation().GetNumberOfSegments() > 0
        mask = self.maskFromSegmentation(segmentationNode, referenceVolumeNode)
        return mask is None or mask_hash(mask) != written

    @staticmethod
    def newSegmentationNode(volumeNode):
        scene = volumeNode.GetScene()
        name = scene.GenerateUniqueName(f"{volumeNode.GetName()} WMH")
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        # Place it in the input's study, where the radiologist will look for it.
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        if shNode is not None:
            volumeItem = shNode.GetItemByDataNode(volumeNode)
            parent = shNode.GetItemParent(volumeItem)
            if parent and parent != shNode.GetSceneItemID():
                shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)
        return node

    def writeMask(self, mask: np.ndarray, volumeNode, segmentationNode) -> None:
        """Replace the WMH segment of ``segmentationNode`` with ``mask`` (``[k, j, i]``)."""
        from deepwml.segmentation_io import SEGMENT_COLOR, SEGMENT_NAME, terminology_string

        register_segmentation_converters()
        segmentation = segmentationNode.GetSegmentation()
        if segmentation.GetSegment(SEGMENT_ID) is not None:
            segmentation.RemoveSegment(SEGMENT_ID)
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentation.AddEmptySegment(SEGMENT_ID, SEGMENT_NAME, list(SEGMENT_COLOR))
        segment = segmentation.GetSegment(SEGMENT_ID)
        segment.SetTag("TerminologyEntry", terminology_string())
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            oriented_image_from_mask(mask, volumeNode), segmentationNode, SEGMENT_ID,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        segmentationNode.SetAttribute(MASK_HASH_ATTRIBUTE, mask_hash(mask))

    # --- the one call ----------------------------------------------------------------------
    def segment(self, volumeNode, segmentationNode=None, device: str = "auto",
                threshold: float | None = None, modelPath: str | None = None,
                progress: Callable[[int, int], bool | None] | None = None):
        """Segment ``volumeNode``; return ``(segmentationNode, summary dict)``.

        Writes into ``segmentationNode`` only if it is empty or holds exactly DeepWML's last,
        unedited output; otherwise (or if None) a new node "<volume> WMH" is created, so an
        edited segmentation is never overwritten.
        """
        import SimpleITK as sitk

        from deepwml.image_io import validate_flair
        from deepwml.lesion_summary import lesion_summary

        if volumeNode is None:
            raise ValueError("no input volume selected")
        t0 = time.perf_counter()
        image = validate_flair(self.imageFromVolumeNode(volumeNode), volumeNode.GetName())
        result = self.segmenter(modelPath, device).segment(image, threshold, progress)
        mask = sitk.GetArrayFromImage(result.mask)
        if segmentationNode is None or self.isEdited(segmentationNode, volumeNode):
            if segmentationNode is not None:
                logging.info("%s was edited; writing to a new segmentation node", segmentationNode.GetName())
            segmentationNode = self.newSegmentationNode(volumeNode)
        self.writeMask(mask, volumeNode, segmentationNode)
        summary = lesion_summary(result.mask)
        summary.update(timings_s=result.timings_s, device=result.device, precision=result.precision,
                       backend=result.backend,
                       model=self.segmenter(modelPath, device).model.model_id,
                       seconds=time.perf_counter() - t0)
        return segmentationNode, summary


class DeepWMLWidget(ScriptedLoadableModuleWidget):
    """The panel: input, output, device, threshold, Segment lesions, result line."""

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DeepWML.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DeepWMLLogic()
        self.ui.deviceComboBox.addItems(["auto", "cpu", "cuda"])
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButton)
        self.ui.deviceComboBox.connect("currentTextChanged(QString)", self.onDeviceChanged)
        self.updateButton()
        self._cancel = False
        self._qt = qt

    def updateButton(self, *_):
        self.ui.segmentButton.enabled = self.ui.inputSelector.currentNode() is not None

    def onDeviceChanged(self, text: str) -> None:
        if text == "cuda" and not missing_requirements():
            import torch

            if not torch.cuda.is_available():
                slicer.util.warningDisplay("No CUDA device is available here; DeepWML will run on the CPU "
                                           "(a few seconds per volume).")
                self.ui.deviceComboBox.setCurrentText("auto")

    def ensureDependencies(self) -> bool:
        missing = missing_requirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                f"DeepWML needs these Python packages: {', '.join(missing)}. Install them now? "
                "(PyTorch is large; this takes a few minutes once.)"):
            return False
        if "torch" in missing:
            try:
                import PyTorchUtils  # the PyTorch extension's helper, when installed

                PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
                missing.remove("torch")
            except ImportError:
                pass
        if missing:
            slicer.util.pip_install(" ".join(missing))
        return not missing_requirements()

    def onSegment(self) -> None:
        qt = self._qt
        if not self.ensureDependencies():
            return
        volume = self.ui.inputSelector.currentNode()
        dialog = qt.QProgressDialog("Segmenting lesions…", "Cancel", 0, 100, slicer.util.mainWindow())
        dialog.setWindowModality(qt.Qt.WindowModal)
        dialog.show()

        def progress(done: int, total: int) -> bool:
            dialog.setValue(int(100 * done / max(total, 1)))
            slicer.app.processEvents()
            return not dialog.wasCanceled

        try:
            with slicer.util.tryWithErrorDisplay("DeepWML segmentation failed.", waitCursor=True):
                node, summary = self.logic.segment(
                    volume, self.ui.outputSelector.currentNode(), device=self.ui.deviceComboBox.currentText,
                    threshold=self.ui.thresholdSlider.value, progress=progress)
                self.ui.outputSelector.setCurrentNode(node)
                self.ui.resultLabel.text = (
                    f"{summary['total_volume_ml']:.2f} ml in {summary['lesion_count']} lesions, "
                    f"{summary['seconds']:.1f} s on {summary['device']} ({summary['backend']})")
        finally:
            dialog.close()


class DeepWMLTest(ScriptedLoadableModuleTest):
    """What "Reload and Test" runs; CI runs the same class under pytest with real MRML."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear(0)

    def runTest(self) -> None:
        self.setUp()
        self.test_SegmentPhantomAndKeepEdits()

    def test_SegmentPhantomAndKeepEdits(self) -> None:
        import os
        import tempfile

        import SimpleITK as sitk

        from deepwml.evaluation.metrics import dice
        from deepwml.phantom.generator import make_case
        from deepwml.segmentation_io import SEGMENT_NAME

        self.delayDisplay("Making a phantom FLAIR volume")
        case = make_case(4, 2027)
        flair = case.flair
        volume = slicer.util.addVolumeFromArray(
            sitk.GetArrayFromImage(flair).astype(np.float32), name="PhantomFLAIR")
        volume.SetSpacing(flair.GetSpacing())
        lps = np.array(flair.GetOrigin())
        volume.SetOrigin(-lps[0], -lps[1], lps[2])
        volume.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)

        self.delayDisplay("Segmenting")
        logic = DeepWMLLogic()
        node, summary = logic.segment(volume, device="cpu")
        self.assertEqual(node.GetName(), "PhantomFLAIR WMH")
        segment = node.GetSegmentation().GetSegment(SEGMENT_ID)
        self.assertIsNotNone(segment)
        self.assertEqual(segment.GetName(), SEGMENT_NAME)
        self.assertIn("SCT^52988006^Lesion", segment_tag(segment, "TerminologyEntry"))
        mask = logic.maskFromSegmentation(node, volume)
        self.assertEqual(mask.shape, slicer.util.arrayFromVolume(volume).shape)
        truth = sitk.GetArrayFromImage(case.truth) > 0
        score = dice(truth, mask > 0)
        self.delayDisplay(f"Dice vs phantom truth {score:.3f}, {summary['total_volume_ml']:.2f} ml")
        self.assertGreater(score, self.minimumDice)
        self.assertAlmostEqual(summary["total_volume_ml"], mask.sum() * np.prod(flair.GetSpacing()) / 1000, places=2)

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

        self.delayDisplay("Simulating a paint edit, then re-running")
        edited = mask.copy()
        edited[mask.shape[0] // 2, 10:14, 10:14] = 1  # the radiologist paints a lesion
        self.paint(node, volume, edited)
        self.assertTrue(logic.isEdited(node, volume))
        second, _ = logic.segment(volume, segmentationNode=node, device="cpu")
        self.assertIsNot(second, node)
        np.testing.assert_array_equal(logic.maskFromSegmentation(node, volume), edited)
        np.testing.assert_array_equal(logic.maskFromSegmentation(second, volume), mask)
        # An unedited DeepWML node is updated in place.
        third, _ = logic.segment(volume, segmentationNode=second, device="cpu")
        self.assertIs(third, second)
        self.delayDisplay("DeepWML self-test passed")

    #: The bundled phantom model reaches far more; this guards against a broken pipeline.
    minimumDice = 0.5

    @staticmethod
    def paint(segmentationNode, volumeNode, mask: np.ndarray) -> None:
        """Write ``mask`` into the segment the way Segment Editor's effects do."""
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            oriented_image_from_mask(mask, volumeNode), segmentationNode, SEGMENT_ID,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
