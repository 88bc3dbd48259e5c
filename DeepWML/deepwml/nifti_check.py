"""NIfTI files checked from their raw bytes, for what ITK reads wrongly without complaint.

ITK zero-fills the missing voxels of a truncated NIfTI and reads NaN and infinite values as 0
(6 NaN slices of a phantom gave 0.26 ml of lesion instead of 2.06); both would be silent wrong
answers. The same check verifies a NIfTI we have just written before it is published
(SimpleITK's gzip writer does not report a full disk).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputImageError


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
