"""Where a mask's voxels lie and how they connect: the smallest box around them, and their 26-connected components
labelled inside that box.

Why one place: the contrast floor (its load gate, its component form) and the white-matter restriction label the marks
of every volume, and a head's marks fill a small part of it; labelled inside the marks' bounding box they are the same
components at a fraction of the work (0.12 -> 0.04 s on the benchmark's 24 x 512 x 512 phantom, 2-core CPU).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of ``mask`` (None: none); a few boolean passes, several times
    faster than ``ndimage.find_objects`` on a head."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def in_plane_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The in-plane ``(rows, cols)`` box of every slice's True voxels of a ``[slices, rows, cols]`` mask (None: none)."""
    box = bounding_box(mask)
    return None if box is None else box[1:]


def components_in_box(marked: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray, int] | None:
    """``(box, labels, count)``: the 26-connected components of the 3-D mask ``marked`` labelled 1..count inside its
    bounding box ``box`` (``labels`` has the box's shape, 0 off the marks); None when nothing is marked."""
    box = bounding_box(marked)
    if box is None:
        return None
    image = sitk.GetImageFromArray(np.asarray(marked[box], dtype=np.uint8))
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(image, True))  # fully connected: 26 neighbours
    return box, labels, int(labels.max())
