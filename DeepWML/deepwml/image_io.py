"""Reading FLAIR volumes, refusing what would give a silent wrong answer.

Every reader failure becomes an :class:`InputImageError` naming the file and the problem.
Writing results lives in :mod:`deepwml.output_files` (re-exported here for older imports).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Collection

import numpy as np
import SimpleITK as sitk

from .dicom_series import read_dicom_series
from .errors import InputImageError, itk_reason
from .intensity import intensity_problems
from .nifti_check import check_nifti, nonfinite_slices
from .output_files import atomic_output, refuse_existing, write_image_atomic, write_with  # noqa: F401

log = logging.getLogger(__name__)

#: File endings SimpleITK reads that we accept as single-file volumes.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Spacing outside these bounds (mm) is legal but almost certainly a header error.
PLAUSIBLE_IN_PLANE_MM = (0.1, 3.0)
PLAUSIBLE_SLICE_MM = (0.3, 15.0)


def read_image(path: str | Path, series: Collection[str] = ()) -> sitk.Image:
    """Read a NIfTI, NRRD, MetaImage file or a DICOM series folder, without validation.

    ``series``: DICOM series UIDs to choose from a folder with several (see dicom_series)."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(path, "file not found")
    try:
        if path.is_dir():
            return read_dicom_series(path, series)
        if path.name.lower().endswith((".nii", ".nii.gz")):
            return _read_checked_nifti(path)
        return sitk.ReadImage(str(path))
    except InputImageError:
        raise
    except RuntimeError as err:
        raise InputImageError(path, f"cannot be read as an image ({itk_reason(err)})") from None


def _read_checked_nifti(path: Path) -> sitk.Image:
    """ITK's read and the raw-byte check (:func:`check_nifti`) each decompress the file; both
    release the GIL, so they run at once and reading costs about the longer of the two, not the
    sum. A file the check refuses (truncated, corrupt, NaN) is refused with the check's reason
    even when ITK read it, or failed on it first."""
    with ThreadPoolExecutor(1, thread_name_prefix="deepwml-nifti-check") as pool:
        checked = pool.submit(check_nifti, path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError:
            checked.result()  # the more precise reason, if the check has one
            raise
        checked.result()
    return image


def validate_flair(image: sitk.Image, path: str | Path) -> sitk.Image:
    """Check that ``image`` can be a 2D-acquired FLAIR volume; return it as 3D float32.

    Refuses what would give a silent wrong answer (2D/4D, NaN, empty, constant, bad spacing);
    only warns on implausible spacing, because odd headers are common and still segmentable.
    """
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(path, f"has {image.GetNumberOfComponentsPerPixel()} components per "
                                    "voxel; a single-channel FLAIR volume is needed")
    dim = image.GetDimension()
    if dim == 4:
        size4 = image.GetSize()
        if size4[3] != 1:
            raise InputImageError(path, f"is 4D ({'x'.join(map(str, size4))}); pass a single 3D "
                                        "FLAIR volume")
        image = sitk.Extract(image, [*size4[:3], 0], [0, 0, 0, 0])
        dim = 3
    if dim != 3:
        raise InputImageError(path, f"is {dim}D; a 3D FLAIR volume (stack of slices) is needed")
    size = image.GetSize()
    if min(size) < 2:
        raise InputImageError(path, f"is a single slice ({'x'.join(map(str, size))}); a 3D "
                                    "FLAIR volume is needed")
    spacing = image.GetSpacing()
    if min(spacing) <= 0 or not np.all(np.isfinite(spacing)):
        raise InputImageError(path, f"has invalid voxel spacing {spacing}")
    image = sitk.Cast(image, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(arr)):
        axis = 2 - int(np.argmax(spacing))  # array axes are (z, y, x)
        raise InputImageError(path, f"contains NaN or infinite voxel values "
                                    f"({nonfinite_slices(~np.isfinite(arr), axis)})")
    lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        what = "empty (every voxel is 0)" if hi == 0 else f"constant (every voxel is {hi:g})"
        raise InputImageError(path, f"image is {what}: nothing to segment")
    refusal, warning = intensity_problems(arr)
    if refusal:
        raise InputImageError(path, refusal)
    if warning:
        log.warning("%s: %s", path, warning)
    thick = max(spacing)
    in_plane = sorted(spacing)[:2]
    if not (PLAUSIBLE_SLICE_MM[0] <= thick <= PLAUSIBLE_SLICE_MM[1]) or not all(
            PLAUSIBLE_IN_PLANE_MM[0] <= s <= PLAUSIBLE_IN_PLANE_MM[1] for s in in_plane):
        log.warning("%s: implausible voxel spacing %s mm (expected in-plane %s mm, slices %s mm); "
                    "check the header, volumes in ml depend on it", path,
                    tuple(round(s, 4) for s in spacing), PLAUSIBLE_IN_PLANE_MM, PLAUSIBLE_SLICE_MM)
    return image


def load_flair(path: str | Path, series: Collection[str] = ()) -> sitk.Image:
    """Read and validate a FLAIR volume in one step (what every entry point wants)."""
    return validate_flair(read_image(path, series), path)
