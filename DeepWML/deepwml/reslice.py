"""Thick axial slabs from a thin-slice volume, and back.

Why: the paper's network and the scanners it targets work on 3-8 mm 2D axial slices, while
most MS protocols today (and the real labelled set at hand, Lesjak 2017) are 1 mm 3D FLAIR.
A thick 2D slice integrates the signal over its thickness, so the mean of N adjacent thin
slices is a fair model of it (slice profile and inter-slice gap are ignored). Three users:

- evaluation (:func:`reslice_axial`): a thin-slice FLAIR and its label become a thick 2D
  acquisition on a regular grid; the label's slab lesion fraction >= 0.5 is lesion (a rater
  outlines a hyperintensity that fills half the slice);
- inference (:func:`slab_bounds` with ``whole_only=False``, :func:`average_slabs`,
  :func:`interpolate_from_slabs`): a 1 mm volume is segmented as slabs of a thickness the
  model knows and the slab probabilities are interpolated back to every thin slice;
- synthesis of training data (the same functions on numpy stacks).

Geometry of a resliced image: slabs stack along the index axis that points closest to the
patient's superior axis; spacing there is N times the thin spacing; the origin moves to the
centre of the first slab; direction is unchanged. Thin slices that do not fill a whole slab
are dropped, split between both ends, so the grid stays regular (the dropped count is logged).
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

#: A thick label voxel is lesion when at least this fraction of its thin voxels are.
LESION_FRACTION = 0.5
#: Slices thinner than this (mm) are a 3D/thin acquisition, which the segmenter can see as
#: thicker slabs (the training data are 3-8 mm slices).
THIN_SLICE_MM = 2.0


def slices_per_slab(thickness_mm: float, spacing_mm: float) -> int:
    """How many thin slices of ``spacing_mm`` make a slab of about ``thickness_mm`` (>= 1)."""
    if thickness_mm <= 0 or spacing_mm <= 0:
        raise ValueError(f"slab thickness {thickness_mm} and slice spacing {spacing_mm} must be > 0")
    return max(1, int(round(thickness_mm / spacing_mm)))


def slab_bounds(n_slices: int, per_slab: int, whole_only: bool = True) -> list[tuple[int, int]]:
    """``[start, stop)`` thin-slice ranges of consecutive slabs of ``per_slab`` slices.

    ``whole_only``: only complete slabs, the remainder dropped half at each end (a regular
    grid, for reslicing). Otherwise slabs tile every slice from the first and the last slab
    may be shorter (nothing is left unsegmented, for inference).
    """
    if per_slab < 1 or n_slices < 1:
        raise ValueError(f"need at least one slice and one slice per slab ({n_slices}, {per_slab})")
    if not whole_only:
        return [(s, min(s + per_slab, n_slices)) for s in range(0, n_slices, per_slab)]
    count = n_slices // per_slab
    first = (n_slices - count * per_slab) // 2
    return [(first + i * per_slab, first + (i + 1) * per_slab) for i in range(count)]


def average_slabs(stack: np.ndarray, bounds: list[tuple[int, int]], axis: int = 0) -> np.ndarray:
    """Mean over each slab's slices along ``axis`` (float32); the slab axis stays ``axis``."""
    data = np.moveaxis(np.asarray(stack), axis, 0)
    out = np.stack([data[a:b].mean(axis=0, dtype=np.float64) for a, b in bounds]).astype(np.float32)
    return np.moveaxis(out, 0, axis)


def sliding_slab_mean(stack: np.ndarray, per_slab: int, axis: int = 0) -> np.ndarray:
    """Every slice along ``axis`` replaced by the mean of the ``per_slab`` (odd) slices centred on
    it, fewer at the stack's ends (float32): a slab around every thin slice, so the network sees
    thick-slice-like partial volume at the thin grid's resolution and nothing is interpolated back."""
    if per_slab < 1 or per_slab % 2 == 0:
        raise ValueError(f"a sliding slab needs an odd number of slices, not {per_slab}")
    data = np.moveaxis(np.asarray(stack), axis, 0)
    # float32 throughout (a 3D FLAIR of 512x512 in-plane is ~50 M voxels): sums of a few scanner
    # integers are exact in float32, and the mean is then rounded once
    total = data.astype(np.float32)  # a copy: every shifted view is added to it
    count = np.ones(data.shape[0], dtype=np.float32)
    for shift in range(1, per_slab // 2 + 1):
        total[shift:] += data[:-shift]
        total[:-shift] += data[shift:]
        count[shift:] += 1
        count[:-shift] += 1
    total /= count.reshape((-1,) + (1,) * (data.ndim - 1))
    return np.moveaxis(total, 0, axis)


def slab_centres(bounds: list[tuple[int, int]]) -> np.ndarray:
    """Position of each slab's centre in thin-slice index units."""
    return np.array([(a + b - 1) / 2.0 for a, b in bounds], dtype=np.float64)


def interpolate_from_slabs(values: np.ndarray, bounds: list[tuple[int, int]], n_slices: int) -> np.ndarray:
    """Per-slab maps ``[slabs, ...]`` to every thin slice ``[n_slices, ...]``.

    Linear along the slice axis between slab centres; constant beyond the first and last
    centre. Linear rather than nearest keeps a lesion's top and bottom from jumping by a
    whole slab.
    """
    centres = slab_centres(bounds)
    if len(centres) == 1:
        return np.repeat(values[:1], n_slices, axis=0)
    pos = np.clip(np.arange(n_slices, dtype=np.float64), centres[0], centres[-1])
    upper = np.clip(np.searchsorted(centres, pos, side="right"), 1, len(centres) - 1)
    lower = upper - 1
    weight = ((pos - centres[lower]) / (centres[upper] - centres[lower])).astype(np.float32)
    shape = (-1,) + (1,) * (values.ndim - 1)
    return values[lower] * (1 - weight.reshape(shape)) + values[upper] * weight.reshape(shape)


def axial_index_axis(image: sitk.Image) -> int:
    """The index axis (0 = i, 1 = j, 2 = k) pointing closest to the patient's superior axis."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    return int(np.argmax(np.abs(direction[2, :])))


def reslice_axial(image: sitk.Image, thickness_mm: float, label: bool = False) -> sitk.Image:
    """``image`` as a thick 2D axial acquisition of slabs about ``thickness_mm`` thick.

    Intensities are averaged (float32); with ``label`` the slab's lesion fraction
    >= :data:`LESION_FRACTION` is lesion (uint8 0/1; any value > 0 counts as lesion in the
    input). The actual thickness is a whole number of thin slices (logged when it differs).
    """
    axis = axial_index_axis(image)
    spacing = list(image.GetSpacing())
    per_slab = slices_per_slab(thickness_mm, spacing[axis])
    n = image.GetSize()[axis]
    bounds = slab_bounds(n, per_slab)
    if not bounds:
        raise ValueError(f"a {n}-slice volume holds no whole {per_slab}-slice slab")
    actual = per_slab * spacing[axis]
    if abs(actual - thickness_mm) > 1e-3:
        log.info("slabs of %d x %.3g mm = %.3g mm (asked %.3g mm)", per_slab, spacing[axis], actual, thickness_mm)
    dropped = n - per_slab * len(bounds)
    if dropped:
        log.info("%d thin slice(s) outside whole slabs dropped (%d at the start)", dropped, bounds[0][0])
    np_axis = 2 - axis  # SimpleITK arrays are [k, j, i]
    arr = sitk.GetArrayViewFromImage(image)
    if label:
        arr = (arr > 0).astype(np.float32)
    thick = average_slabs(arr, bounds, axis=np_axis)
    out = sitk.GetImageFromArray((thick >= LESION_FRACTION - 1e-6).astype(np.uint8) if label else thick)
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    centre_index = np.zeros(3)
    centre_index[axis] = slab_centres(bounds)[0]
    origin = np.array(image.GetOrigin()) + direction @ (centre_index * np.array(spacing))
    spacing[axis] = actual
    out.SetSpacing(spacing)
    out.SetOrigin(origin.tolist())
    out.SetDirection(image.GetDirection())
    return out
