"""Results in the MRML scene: which node a result goes to, and writing it there.

Rules a radiologist can rely on:
- A result is tied to its source volume (node reference ``DeepWMLSourceVolume``). A result is
  written into an existing node only if that node belongs to the same volume and still holds
  exactly what DeepWML last wrote (hash attribute); otherwise a new node is made, and the reason
  is returned for the panel. So a follow-up on the baseline's grid never replaces the baseline's
  result, and an edited result is never replaced.
- The segmentation sits under the same parent transform as its volume: the mask is written on
  the volume's own voxel grid, so it must move with the volume (a registered follow-up).
- Re-running on a volume updates its own unedited result instead of adding another node.
- No helper nodes are left behind (no temporary labelmaps, colour tables or display nodes).
"""

from __future__ import annotations

import hashlib
from typing import List, Optional, Tuple

import numpy as np
import slicer
import vtk

SEGMENT_ID = "WMH"
#: Hash of the mask as written, so a re-run can tell whether the radiologist edited it.
MASK_HASH_ATTRIBUTE = "DeepWML.MaskHash"
#: Threshold and model that produced the node (shown on the panel, saved with the scene).
THRESHOLD_ATTRIBUTE = "DeepWML.Threshold"
MODEL_ATTRIBUTE = "DeepWML.Model"
#: Node reference from a result to the volume it was computed from.
SOURCE_VOLUME_ROLE = "DeepWMLSourceVolume"


def mask_hash(mask: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(mask > 0).tobytes()).hexdigest()


def register_segmentation_converters() -> None:
    """Make binary labelmaps constructible. The app's Segmentations module registers these
    rules at start-up; headless MRML (tests, batch) has to do it itself."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.ConstructRepresentationObjectByRepresentation("Binary labelmap") is not None:
        return
    for rule in ("vtkBinaryLabelmapToClosedSurfaceConversionRule",
                 "vtkClosedSurfaceToBinaryLabelmapConversionRule"):
        factory.RegisterConverterRule(getattr(slicer, rule)())


def _ijk_to_ras(volumeNode) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrix


def oriented_image_from_mask(mask: np.ndarray, volumeNode):
    """A ``[k, j, i]`` mask as vtkOrientedImageData on the volume's grid (what effects write),
    built directly: no temporary nodes in the scene."""
    from vtk.util import numpy_support

    mask = np.ascontiguousarray(mask > 0, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel(), deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    image.SetImageToWorldMatrix(_ijk_to_ras(volumeNode))
    return image


def mask_from_segmentation(segmentationNode, volumeNode, segmentId: str = SEGMENT_ID) -> Optional[np.ndarray]:
    """The segment as a ``[k, j, i]`` uint8 array on the volume's grid (None if absent).

    Reads in the segmentation's own coordinates and resamples onto the volume's voxel grid
    (no temporary labelmap node, so no colour table is created)."""
    from vtk.util import numpy_support

    if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
        return None
    dims = volumeNode.GetImageData().GetDimensions()
    labelmap = slicer.vtkOrientedImageData()
    segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    extent = labelmap.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return np.zeros(dims[::-1], dtype=np.uint8)
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reference.SetImageToWorldMatrix(_ijk_to_ras(volumeNode))
    resampled = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            labelmap, reference, resampled):
        return None
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars())
    return (values.reshape(dims[::-1]) > 0).astype(np.uint8)


def source_volume_of(segmentationNode):
    return segmentationNode.GetNodeReference(SOURCE_VOLUME_ROLE)


def is_edited(segmentationNode, volumeNode) -> bool:
    """True when the node holds anything other than exactly what DeepWML last wrote."""
    written = segmentationNode.GetAttribute(MASK_HASH_ATTRIBUTE)
    if written is None:
        return segmentationNode.GetSegmentation().GetNumberOfSegments() > 0
    if segmentationNode.GetSegmentation().GetNumberOfSegments() != 1:
        return True  # segments were added (or the WMH segment removed)
    mask = mask_from_segmentation(segmentationNode, volumeNode)
    return mask is None or mask_hash(mask) != written


def results_of(volumeNode) -> List:
    """DeepWML results computed from ``volumeNode``, oldest first."""
    scene = volumeNode.GetScene()
    nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    found = []
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        if node.GetAttribute(MASK_HASH_ATTRIBUTE) is not None and source_volume_of(node) is volumeNode:
            found.append(node)
    return found


def latest_result_of(volumeNode):
    """The volume's newest DeepWML result (what the output selector should show), or None."""
    found = results_of(volumeNode)
    return found[-1] if found else None


def choose_output(volumeNode, requested) -> Tuple[Optional[object], str]:
    """``(node to write into, or None for a new node; why, for the result line)``."""
    if requested is None:
        previous = latest_result_of(volumeNode)
        if previous is not None and not is_edited(previous, volumeNode):
            return previous, f"updated {previous.GetName()}"
        if previous is not None:
            return None, f"new node: {previous.GetName()} was edited and is kept as it is"
        return None, "new node"
    owner = source_volume_of(requested)
    if owner is not None and owner is not volumeNode:
        return None, (f"new node: {requested.GetName()} belongs to {owner.GetName()} "
                      "and is kept as it is")
    if is_edited(requested, volumeNode):
        return None, f"new node: {requested.GetName()} was edited and is kept as it is"
    return requested, f"updated {requested.GetName()}"


def new_segmentation_node(volumeNode):
    scene = volumeNode.GetScene()
    name = scene.GenerateUniqueName(f"{volumeNode.GetName()} WMH")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    # Place it in the input's study, where the radiologist will look for it.
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if shNode is not None:
        volumeItem = shNode.GetItemByDataNode(volumeNode)
        parent = shNode.GetItemParent(volumeItem) if volumeItem else 0
        if parent and parent != shNode.GetSceneItemID():
            shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)
    return node


def write_mask(mask: np.ndarray, volumeNode, segmentationNode, threshold: Optional[float] = None,
               model: str = "") -> None:
    """Replace the WMH segment of ``segmentationNode`` with ``mask`` (``[k, j, i]`` on the
    volume's grid) and tie the node to the volume (reference, parent transform)."""
    from deepwml.segmentation_io import SEGMENT_COLOR, SEGMENT_NAME, terminology_string

    register_segmentation_converters()
    segmentationNode.SetNodeReferenceID(SOURCE_VOLUME_ROLE, volumeNode.GetID())
    # Same parent transform as the volume: the mask is on the volume's local voxel grid.
    segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    segmentation = segmentationNode.GetSegmentation()
    wasModifying = segmentationNode.StartModify()
    try:
        if segmentation.GetSegment(SEGMENT_ID) is not None:
            segmentation.RemoveSegment(SEGMENT_ID)
        segmentation.AddEmptySegment(SEGMENT_ID, SEGMENT_NAME, list(SEGMENT_COLOR))
        segment = segmentation.GetSegment(SEGMENT_ID)
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_string())
        # Our name and colour were chosen on purpose: a terminology pick must not rename them.
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            oriented_image_from_mask(mask, volumeNode), segmentationNode, SEGMENT_ID,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        segmentationNode.SetAttribute(MASK_HASH_ATTRIBUTE, mask_hash(mask))
        if threshold is not None:
            segmentationNode.SetAttribute(THRESHOLD_ATTRIBUTE, f"{threshold:g}")
        if model:
            segmentationNode.SetAttribute(MODEL_ATTRIBUTE, model)
    finally:
        segmentationNode.EndModify(wasModifying)


def world_point(volumeNode, ijk) -> List[float]:
    """RAS (world, after the volume's parent transforms) of voxel ``(i, j, k)``."""
    local = _ijk_to_ras(volumeNode).MultiplyPoint([float(ijk[0]), float(ijk[1]), float(ijk[2]), 1.0])[:3]
    world = [0.0, 0.0, 0.0]
    volumeNode.TransformPointToWorld(list(local), world)
    return world


def lesion_table(mask: np.ndarray, volumeNode) -> List[dict]:
    """One row per 3D lesion (26-connected), largest first: volume (ml), slice range along
    the acquisition (thickest) axis (1-based), and the world RAS point to jump to."""
    from scipy import ndimage

    from deepwml.lesion_summary import CONNECTIVITY_26

    labels, count = ndimage.label(mask > 0, structure=CONNECTIVITY_26)
    if count == 0:
        return []
    spacing = volumeNode.GetSpacing()  # (i, j, k)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    axis_ijk = int(np.argmax(spacing))           # acquisition axis in (i, j, k)
    axis_array = 2 - axis_ijk                     # same axis in the [k, j, i] array
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    boxes = ndimage.find_objects(labels)
    centres = ndimage.center_of_mass(mask > 0, labels, index=np.arange(1, count + 1))
    rows = []
    for n in range(count):
        box = boxes[n][axis_array]
        kji = centres[n]
        rows.append({"volume_ml": float(sizes[n]) * voxel_ml, "voxels": int(sizes[n]),
                     "first_slice": box.start + 1, "last_slice": box.stop,
                     "ras": world_point(volumeNode, (kji[2], kji[1], kji[0]))})
    rows.sort(key=lambda r: -r["voxels"])
    for number, row in enumerate(rows, 1):
        row["lesion"] = number
    return rows


class SegmentationCancelled(Exception):
    """The user cancelled; nothing was written. Reported as "cancelled", never as a failure."""


class SegmentationFailed(RuntimeError):
    """The background run ended with an error; the message is the run's own one-line reason."""
