"""Segmentation metrics.

Per 2D image (the paper's): Dice, sensitivity, precision. A ratio with a zero denominator is
undefined (NaN), never silently 0 or 1:
- Dice is undefined when truth and prediction are both empty;
- sensitivity is undefined when the truth is empty;
- precision is undefined when the prediction is empty.
:func:`slice_metrics` keeps the counts so reports can say how many slices each rule drops.

Per volume (the MICCAI 2017 WMH challenge's, defined as its scoring code does): Dice, 95th
percentile Hausdorff distance between boundaries from an in-plane (x, y) erosion, in mm,
absolute volume difference in %, lesion recall and lesion F1 on 26-connected components.
And one of ours, :func:`far_false_positive_ml`: the volume marked farther than :data:`FAR_MM` from
every true lesion voxel, a false-positive figure that a lesion's rim cannot inflate.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from ..lesion_summary import CONNECTIVITY_26


#: Millimetres (physical, 3D) beyond which a mark is far from every true lesion (:func:`far_false_positive_ml`).
FAR_MM = 3.0


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def overlap_counts(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) voxel counts."""
    truth, pred = truth > 0, pred > 0
    tp = int(np.count_nonzero(truth & pred))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(truth)) - tp


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    tp, fp, fn = overlap_counts(truth, pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def sensitivity(truth: np.ndarray, pred: np.ndarray) -> float:
    tp, _, fn = overlap_counts(truth, pred)
    return _ratio(tp, tp + fn)


def precision(truth: np.ndarray, pred: np.ndarray) -> float:
    tp, fp, _ = overlap_counts(truth, pred)
    return _ratio(tp, tp + fp)


def slice_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp, fp, fn = overlap_counts(truth, pred)
    return {"dice": _ratio(2 * tp, 2 * tp + fp + fn), "sensitivity": _ratio(tp, tp + fn),
            "precision": _ratio(tp, tp + fp), "tp": tp, "fp": fp, "fn": fn}


def _boundary_points(mask: sitk.Image) -> np.ndarray:
    """Physical coordinates of the voxels removed by a 1-voxel in-plane erosion."""
    eroded = sitk.BinaryErode(mask, (1, 1, 0))
    edge = sitk.GetArrayFromImage(sitk.Subtract(mask, eroded)) > 0
    idx = np.argwhere(edge)[:, ::-1].astype(float)  # to (i, j, k)
    if idx.size == 0:
        return idx.reshape(0, 3)
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    return (idx * np.array(mask.GetSpacing())) @ direction.T + np.array(mask.GetOrigin())


def hausdorff95(truth: sitk.Image, pred: sitk.Image) -> float:
    """95th percentile symmetric boundary distance in mm; NaN if either mask is empty."""
    t = _boundary_points(sitk.Cast(truth > 0, sitk.sitkUInt8))
    p = _boundary_points(sitk.Cast(pred > 0, sitk.sitkUInt8))
    if len(t) == 0 or len(p) == 0:
        return math.nan
    d_tp = cKDTree(p).query(t, k=1)[0]
    d_pt = cKDTree(t).query(p, k=1)[0]
    return float(max(np.percentile(d_tp, 95), np.percentile(d_pt, 95)))


def avd_percent(truth: np.ndarray, pred: np.ndarray) -> float:
    """Absolute volume difference relative to the truth volume, in %."""
    t = float(np.count_nonzero(truth))
    return _ratio(abs(float(np.count_nonzero(pred)) - t) * 100.0, t)


def lesion_detection(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(lesion recall, lesion F1) over 26-connected components."""
    lt, n_t = ndimage.label(truth > 0, structure=CONNECTIVITY_26)
    lp, n_p = ndimage.label(pred > 0, structure=CONNECTIVITY_26)
    detected = len(np.setdiff1d(np.unique(lt[pred > 0]), [0]))
    correct = len(np.setdiff1d(np.unique(lp[truth > 0]), [0]))
    recall = _ratio(detected, n_t)
    prec = _ratio(correct, n_p)
    if n_t == 0 and n_p == 0:
        return math.nan, math.nan
    if math.isnan(recall) or math.isnan(prec) or recall + prec == 0:
        return recall, 0.0
    return recall, 2 * recall * prec / (recall + prec)


def far_false_positive_ml(truth: sitk.Image, pred: sitk.Image, distance_mm: float = FAR_MM) -> float:
    """Millilitres of ``pred`` farther than ``distance_mm`` (physical, 3D) from every voxel of ``truth``.

    Why not marked minus true positive: on a heavy load that figure counts the rim of every lesion a
    better model newly finds (experiment 52 in docs/EXPERIMENTS.md: one head's "false positives" rose 0.21 ->
    6.75 ml while its Dice rose 0.23 -> 0.70). A mark this far from any lesion is one no boundary
    disagreement explains. With an empty truth, every marked voxel counts."""
    p = sitk.GetArrayViewFromImage(pred) > 0
    voxel_ml = float(np.prod(pred.GetSpacing())) / 1000.0
    if not p.any():
        return 0.0
    t = sitk.Cast(truth > 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(t).any():
        return float(np.count_nonzero(p)) * voxel_ml
    distance = sitk.SignedMaurerDistanceMap(t, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return float(np.count_nonzero(p & (sitk.GetArrayViewFromImage(distance) > distance_mm))) * voxel_ml


def volume_metrics(truth: sitk.Image, pred: sitk.Image) -> dict[str, float]:
    t = sitk.GetArrayViewFromImage(truth) > 0
    p = sitk.GetArrayViewFromImage(pred) > 0
    recall, f1 = lesion_detection(t, p)
    return {"dice": dice(t, p), "hd95_mm": hausdorff95(truth, pred), "avd_percent": avd_percent(t, p),
            "lesion_recall": recall, "lesion_f1": f1, "far_fp_ml": far_false_positive_ml(truth, pred)}
