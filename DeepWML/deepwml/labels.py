"""Reading a lesion label for scoring or training, refusing what would give a wrong number.

Why: a label on another grid (a different size or spacing, but also a shifted origin or a
flipped/rotated direction with the same size) or in another encoding (a probability map, a
multi-class map such as MICCAI's {0, 1, 2}) still yields a boolean array, and every metric
computed from it is silently wrong. Each case gets one line naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import LabelEncodingError, LabelGeometryError
from .image_io import read_image

#: Origins may differ by this fraction of the smallest voxel side (float32 headers round at
#: about 1e-5 mm; any real misregistration is far larger).
ORIGIN_TOLERANCE_VOXELS = 0.01
#: Direction cosines may differ by this much (about 0.06 degrees).
DIRECTION_TOLERANCE = 1e-3
SPACING_TOLERANCE_MM = 1e-3


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def check_same_grid(label: sitk.Image, reference: sitk.Image, path: str | Path) -> None:
    """Raise :class:`LabelGeometryError` unless ``label`` lies on ``reference``'s voxel grid."""
    what = None
    if label.GetDimension() != reference.GetDimension() or label.GetSize() != reference.GetSize():
        what = f"size {label.GetSize()} differs from the FLAIR's {reference.GetSize()}"
    elif not np.allclose(label.GetSpacing(), reference.GetSpacing(), rtol=0, atol=SPACING_TOLERANCE_MM):
        what = f"spacing {_fmt(label.GetSpacing())} mm differs from the FLAIR's {_fmt(reference.GetSpacing())} mm"
    elif not np.allclose(label.GetOrigin(), reference.GetOrigin(), rtol=0,
                         atol=ORIGIN_TOLERANCE_VOXELS * min(reference.GetSpacing())):
        what = f"origin {_fmt(label.GetOrigin())} mm differs from the FLAIR's {_fmt(reference.GetOrigin())} mm"
    elif not np.allclose(label.GetDirection(), reference.GetDirection(), rtol=0, atol=DIRECTION_TOLERANCE):
        what = (f"direction {_fmt(label.GetDirection())} differs from the FLAIR's "
                f"{_fmt(reference.GetDirection())}")
    if what:
        raise LabelGeometryError(path, f"label is not on its FLAIR's voxel grid: {what}; resample it "
                                       "onto the FLAIR first")


def lesion_mask(values: np.ndarray, path: str | Path, label_value: int | None = None) -> np.ndarray:
    """The lesion voxels of a label array as booleans.

    Without ``label_value`` the label must be binary: 0 and one positive value (1, 255, ...).
    Non-integer values (probability or partial-volume maps) and several label values
    without a declared lesion value are refused.
    """
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise LabelEncodingError(path, "label holds NaN or infinite values")
        fractional = values[values != np.round(values)]
        if fractional.size:
            raise LabelEncodingError(path, f"label holds non-integer values (e.g. {float(fractional[0]):.3g}): "
                                           "a probability or partial-volume map, not a mask; threshold it first")
    if label_value is not None:
        return values == label_value
    present = np.unique(values)
    present = present[present != 0]
    if present.size > 1:
        shown = ", ".join(f"{v:g}" for v in present[:6]) + (", ..." if present.size > 6 else "")
        raise LabelEncodingError(path, f"label holds several values ({shown}) and no lesion value is "
                                       "declared (add a label_value column to the manifest)")
    if present.size and present[0] < 0:
        raise LabelEncodingError(path, f"label's only non-zero value is negative ({present[0]:g})")
    return values != 0


def read_label(path: str | Path, reference: sitk.Image, label_value: int | None = None) -> np.ndarray:
    """A label file as a boolean array on ``reference``'s voxel grid, checked as above."""
    image = read_image(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LabelEncodingError(path, f"label has {image.GetNumberOfComponentsPerPixel()} components "
                                       "per voxel; a single-channel mask is needed")
    check_same_grid(image, reference, path)
    return lesion_mask(sitk.GetArrayFromImage(image), path, label_value)
