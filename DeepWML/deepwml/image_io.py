"""Reading FLAIR volumes and writing results safely.

Every reader failure becomes an :class:`InputImageError` naming the file and the problem, and
every writer goes through a temporary file and an atomic rename, so a crash or a refused
input never leaves a half-written output next to a radiologist's data.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk

from .errors import InputImageError, OutputExistsError
from .intensity import intensity_problems

log = logging.getLogger(__name__)

#: File endings SimpleITK reads that we accept as single-file volumes.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Spacing outside these bounds (mm) is legal but almost certainly a header error.
PLAUSIBLE_IN_PLANE_MM = (0.1, 3.0)
PLAUSIBLE_SLICE_MM = (0.3, 15.0)


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputImageError(folder, "folder holds no DICOM series")
    files_per_series = {sid: reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    chosen = max(files_per_series, key=lambda sid: len(files_per_series[sid]))
    if len(series_ids) > 1:
        log.warning("%s holds %d DICOM series; using %s (%d files)", folder, len(series_ids),
                    chosen, len(files_per_series[chosen]))
    reader.SetFileNames(files_per_series[chosen])
    return reader.Execute()


@dataclass(frozen=True)
class NiftiLayout:
    """What a NIfTI-1/2 header says about the voxel data that follows it."""

    endian: str
    dims: tuple[int, ...]
    pixdim: tuple[float, ...]
    datatype: int
    bitpix: int
    offset: int

    @property
    def voxels(self) -> int:
        return int(np.prod([max(d, 1) for d in self.dims], dtype=np.int64))

    @property
    def expected_bytes(self) -> int:
        return self.offset + self.voxels * max(self.bitpix, 8) // 8

    @property
    def float_dtype(self) -> np.dtype | None:
        """The numpy dtype of float data (the only kind that can hold NaN/Inf), else None."""
        code = {16: "f4", 64: "f8"}.get(self.datatype)
        return np.dtype(self.endian + code) if code else None


def _nifti_layout(header: bytes) -> NiftiLayout | None:
    """Parse a NIfTI-1/2 header, or None if ``header`` is not NIfTI."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0]
        if size == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            pixdim = struct.unpack(endian + "8f", header[76:108])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
        elif size == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            pixdim = struct.unpack(endian + "8d", header[104:168])
            offset = struct.unpack(endian + "q", header[168:176])[0]
        else:
            continue
        n_dims = max(min(dims[0], 7), 0)
        return NiftiLayout(endian, tuple(int(d) for d in dims[1:1 + n_dims]),
                           tuple(float(p) for p in pixdim[1:1 + n_dims]), int(datatype), int(bitpix),
                           max(int(offset), size))
    return None


def nonfinite_slices(bad: np.ndarray, axis: int) -> str:
    """``bad`` (True where a voxel is NaN/Inf) summarised as the slice numbers along ``axis``."""
    other = tuple(a for a in range(bad.ndim) if a != axis)
    slices = np.nonzero(bad.any(axis=other))[0]
    shown = ", ".join(str(int(i)) for i in slices[:12]) + (", ..." if len(slices) > 12 else "")
    return f"{int(bad.sum())} voxel(s) in slice(s) {shown} of {bad.shape[axis]}"


def check_nifti(path: Path) -> None:
    """Refuse NIfTI files that ITK would read wrongly without complaint.

    A truncated file is read with the missing voxels zero-filled, and NaN or infinite voxel
    values are read as 0 (6 NaN slices of a phantom: 0.26 ml of lesion instead of 2.06); both
    would be silent wrong answers, so the raw bytes are checked here.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            header = handle.read(540)
            layout = _nifti_layout(header) if len(header) >= 348 else None
            if layout is None:
                return
            keep = layout.float_dtype is not None
            chunks = [header] if keep else []
            total = len(header)
            while chunk := handle.read(1 << 22):
                total += len(chunk)
                if keep:
                    chunks.append(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise InputImageError(path, f"file is truncated or corrupt ({err})") from None
    if total < layout.expected_bytes:
        raise InputImageError(path, f"file is truncated ({total} of {layout.expected_bytes} bytes of image data)")
    if not keep:
        return
    values = np.frombuffer(b"".join(chunks), dtype=layout.float_dtype, count=layout.voxels,
                           offset=layout.offset)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    where = f"{int(bad.sum())} voxel(s)"
    if len(layout.dims) >= 3:
        bad = bad.reshape(*layout.dims[:3], -1, order="F").any(axis=3)
        axis = int(np.argmax(layout.pixdim[:3]))
        where = f"{nonfinite_slices(bad, axis)} along voxel axis {'ijk'[axis]}"
    raise InputImageError(path, f"contains NaN or infinite voxel values ({where}; ITK would read them as 0)")


def read_image(path: str | Path) -> sitk.Image:
    """Read a NIfTI, NRRD, MetaImage file or a DICOM series folder, without validation."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(path, "file not found")
    try:
        if path.is_dir():
            return _read_dicom_series(path)
        if path.name.lower().endswith((".nii", ".nii.gz")):
            check_nifti(path)
        return sitk.ReadImage(str(path))
    except InputImageError:
        raise
    except RuntimeError as err:
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "unknown error")
        raise InputImageError(path, f"cannot be read as an image ({first[:160]})") from None


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


def load_flair(path: str | Path) -> sitk.Image:
    """Read and validate a FLAIR volume in one step (what every entry point wants)."""
    return validate_flair(read_image(path), path)


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Refuse to replace a file the user may have edited, unless told to."""
    if path.exists() and not overwrite:
        raise OutputExistsError(path, "already exists; refusing to overwrite it (pass --overwrite)")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps the final suffix (``.seg.nrrd``, ``.nii.gz``) because writers
    pick the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should be as readable as any file
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image_atomic(image: sitk.Image, path: str | Path, compress: bool = True) -> None:
    """Write an image through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Run ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_output(path) as tmp:
        writer(tmp)
