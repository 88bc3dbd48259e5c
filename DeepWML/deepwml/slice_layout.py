"""From any stored orientation to a stack of 2D slices along the acquisition axis, and back.

Clinical FLAIR arrives in every orientation a scanner or converter can write (axial,
sagittal-acquired, oblique, flipped index axes). The network sees slices in one canonical
in-plane orientation, so we permute and flip the voxel array to the nearest patient-aligned
layout (LPS: +x left, +y posterior, +z superior) and then take slices along the thick
(acquisition) axis. Only permutations and flips are used, never interpolation, so the
inverse is exact and the output lies on exactly the input's voxel grid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

#: A volume whose largest spacing is below this multiple of the smallest counts as isotropic
#: (a 3D acquisition); then we slice axially, like the training data.
THICK_AXIS_RATIO = 1.5


@dataclass(frozen=True)
class SliceLayout:
    """How a SimpleITK voxel array ``[k, j, i]`` maps to slices ``[slice, row, col]``.

    ``transpose`` permutes the numpy axes into patient order (z, y, x); ``flips`` then flips
    those patient axes whose index runs against LPS; ``slice_axis`` is the patient axis the
    slices are stacked along (0 = axial).
    """

    transpose: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    slice_axis: int
    spacing_zyx: tuple[float, float, float]

    @property
    def slice_thickness_mm(self) -> float:
        return self.spacing_zyx[self.slice_axis]

    @property
    def in_plane_spacing_mm(self) -> tuple[float, float]:
        """(row, column) pixel spacing of each slice."""
        rest = [s for a, s in enumerate(self.spacing_zyx) if a != self.slice_axis]
        return rest[0], rest[1]

    def to_slices(self, volume: np.ndarray) -> np.ndarray:
        """SimpleITK array ``[k, j, i]`` to a slice stack ``[slice, row, col]`` (a view)."""
        canon = volume.transpose(self.transpose)
        for axis, flip in enumerate(self.flips):
            if flip:
                canon = np.flip(canon, axis)
        return np.moveaxis(canon, self.slice_axis, 0)

    def to_volume(self, slices: np.ndarray) -> np.ndarray:
        """Exact inverse of :meth:`to_slices` (returns a contiguous array)."""
        canon = np.moveaxis(slices, 0, self.slice_axis)
        for axis, flip in enumerate(self.flips):
            if flip:
                canon = np.flip(canon, axis)
        return np.ascontiguousarray(canon.transpose(np.argsort(self.transpose)))


def _patient_axis_of_index_axes(direction: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Assign each index axis (i, j, k) the patient axis (x, y, z) it points closest to.

    Chooses the permutation maximising total alignment, so a 45-degree oblique still gets a
    one-to-one assignment.
    """
    best = max(itertools.permutations(range(3)),
               key=lambda p: sum(abs(direction[p[a], a]) for a in range(3)))
    signs = np.array([np.sign(direction[best[a], a]) or 1.0 for a in range(3)])
    return best, signs


def plan_slices(image: sitk.Image) -> SliceLayout:
    """Work out the :class:`SliceLayout` of a 3D image from its direction and spacing."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing_ijk = image.GetSpacing()
    patient_of, signs = _patient_axis_of_index_axes(direction)
    # canonical numpy axis c holds patient axis (2 - c): z first, x last.
    index_axis_for_patient = {patient_of[a]: a for a in range(3)}
    transpose = []
    flips = []
    spacing_zyx = []
    for c in range(3):
        a = index_axis_for_patient[2 - c]  # index axis i=0, j=1, k=2
        transpose.append(2 - a)  # numpy axis of index axis a
        flips.append(bool(signs[a] < 0))
        spacing_zyx.append(float(spacing_ijk[a]))
    if max(spacing_zyx) / min(spacing_zyx) < THICK_AXIS_RATIO:
        slice_axis = 0
    else:
        slice_axis = int(np.argmax(spacing_zyx))
    return SliceLayout(tuple(transpose), tuple(flips), slice_axis, tuple(spacing_zyx))


def image_from_slices(slices: np.ndarray, layout: SliceLayout, reference: sitk.Image) -> sitk.Image:
    """Put a slice stack back on ``reference``'s exact voxel grid (size, spacing, origin, direction)."""
    out = sitk.GetImageFromArray(layout.to_volume(slices))
    out.CopyInformation(reference)
    return out
