"""Choosing the FLAIR in a DICOM folder, and refusing series ITK would stretch.

Why: a folder with the FLAIR and a larger other series (a T1, a localiser stack) used to
segment the larger one, naming only its UID in a warning (0 ml, exit 0). And a series with a
missing slice was read onto a regular grid, stretched across the gap (Dice 0.87 -> 0.26, every
volume wrong). Now the series is chosen by its description, protocol or sequence name (one
recognisable FLAIR), by ``--series UID``, or the folder is refused with the list of series;
and slice positions must be evenly spaced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputImageError, itk_reason

log = logging.getLogger(__name__)

#: Words that mark a FLAIR in series descriptions, protocol and sequence names (Siemens calls
#: it "dark fluid", its inversion-recovery sequence "tirm"; GE, Philips and Canon say FLAIR).
FLAIR_WORDS = ("flair", "dark-fluid", "dark fluid", "darkfluid", "dark_fluid", "tirm")
TAGS = {"description": "0008|103e", "protocol": "0018|1030", "sequence": "0018|0024"}
#: Slice gaps may differ from the median gap by this fraction (rounding in positions is far smaller).
GAP_TOLERANCE = 0.1


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series of a folder, with what its first file says about it."""

    uid: str
    files: tuple[str, ...]
    description: str = ""
    protocol: str = ""
    sequence: str = ""

    @property
    def looks_flair(self) -> bool:
        text = " ".join((self.description, self.protocol, self.sequence)).lower()
        return any(word in text for word in FLAIR_WORDS)

    def label(self) -> str:
        name = self.description or self.protocol or "no description"
        return f"{self.uid} '{name}' ({len(self.files)} files)"


def list_series(folder: Path) -> list[SeriesInfo]:
    """Every series in ``folder`` with its files (sorted by position, as GDCM does)."""
    reader = sitk.ImageSeriesReader()
    result = []
    for uid in reader.GetGDCMSeriesIDs(str(folder)):
        files = tuple(reader.GetGDCMSeriesFileNames(str(folder), uid))
        try:
            header = _header(files[0])
            tags = {name: _tag(header, key) for name, key in TAGS.items()}
        except RuntimeError:
            tags = {}
        result.append(SeriesInfo(uid, files, **tags))
    return result


def choose_series(folder: Path, series: Sequence[SeriesInfo], wanted: Collection[str] = ()) -> SeriesInfo:
    """The series to segment: the one named in ``wanted``, the only one, or the only FLAIR."""
    if not series:
        raise InputImageError(folder, "folder holds no DICOM series")
    named = [s for s in series if s.uid in wanted]
    if len(named) == 1:
        return named[0]
    if len(series) == 1 and not wanted:
        return series[0]
    flair = [s for s in series if s.looks_flair]
    if len(flair) == 1 and not wanted:
        log.info("%s: using the FLAIR series %s of %d series", folder, flair[0].label(), len(series))
        return flair[0]
    why = ("none of the --series UIDs is among them" if wanted else
           "several look like FLAIR" if flair else "none is recognisably FLAIR by its description")
    listing = "; ".join(s.label() for s in series)
    raise InputImageError(folder, f"holds {len(series)} DICOM series and {why}: {listing}; choose one "
                                  "with --series UID")


def check_slice_positions(folder: Path, files: Sequence[str]) -> None:
    """Refuse a series whose slices are not evenly spaced (missing or repeated slices)."""
    if len(files) < 3:
        return
    positions, normal = [], None
    for name in files:
        try:
            header = _header(name)
        except RuntimeError:
            return
        position, orientation = _tag(header, "0020|0032"), _tag(header, "0020|0037")
        if not position or not orientation:
            return  # without positions ITK cannot place slices either; nothing to compare
        if normal is None:
            cosines = np.array([float(v) for v in orientation.split("\\")])
            normal = np.cross(cosines[:3], cosines[3:6])
        positions.append(float(np.dot([float(v) for v in position.split("\\")], normal)))
    gaps = np.diff(np.sort(positions))
    typical = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - typical)))
    if typical <= 0 or gaps[worst] <= 1e-3:
        raise InputImageError(folder, f"two slices lie at the same position (slices {worst + 1} and {worst + 2} "
                                      "of the series); a repeated or mixed-in acquisition?")
    if abs(gaps[worst] - typical) > GAP_TOLERANCE * typical:
        raise InputImageError(folder, f"slice positions are not evenly spaced: {gaps[worst]:.2f} mm between "
                                      f"slices {worst + 1} and {worst + 2}, {typical:.2f} mm elsewhere (a missing "
                                      "slice?); it would be read onto a stretched grid")


def read_dicom_series(folder: Path, wanted: Collection[str] = ()) -> sitk.Image:
    """Read the FLAIR series of a DICOM folder (see :func:`choose_series`), checked."""
    chosen = choose_series(folder, list_series(folder), wanted)
    check_slice_positions(folder, chosen.files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise InputImageError(folder, f"series {chosen.uid} cannot be read ({itk_reason(err)})") from None
