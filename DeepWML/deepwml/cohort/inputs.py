"""Finding a cohort's FLAIR volumes: files, folders, list files and BIDS datasets.

Why one place: a cohort is named the way it is stored (a folder of NIfTI files, a CSV manifest
with a ``flair`` column, a text list, or a BIDS dataset), and every form must end up as the same
list of inputs with stable, unique output names before any worker starts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..csv_table import read_csv_rows
from ..errors import DeepWMLError, ManifestError
from ..output_folder import unique_case_names
from ..pipeline import IMAGE_SUFFIXES, case_name

log = logging.getLogger(__name__)

#: Files read as a list of inputs (one path per line, ``#`` comments) or, for ``.csv``, a
#: manifest whose ``flair`` column names the volumes.
LIST_SUFFIXES = (".txt", ".lst", ".list", ".csv")

#: ``sub-<label>[_ses-<label>][_<other entities>]_FLAIR.nii[.gz]`` (BIDS labels are alphanumeric).
_BIDS_FLAIR = re.compile(r"^(?P<entities>sub-(?P<sub>[A-Za-z0-9]+)(?:_ses-(?P<ses>[A-Za-z0-9]+))?"
                         r"(?:_[A-Za-z0-9]+-[A-Za-z0-9]+)*)_FLAIR\.nii(?:\.gz)?$")


class CohortInputError(DeepWMLError):
    """The cohort's inputs cannot be listed (unreadable list, not a BIDS dataset, none found)."""


@dataclass(frozen=True)
class CohortInput:
    """One volume of the cohort and where its outputs go (relative to the output root)."""

    path: Path
    #: Output stem: a unique case name (flat) or the BIDS source entities (``sub-01_ses-02``).
    name: str
    subject: str = ""
    session: str = ""
    #: Folder of the outputs relative to the output root ("" = the root itself).
    folder: str = ""
    #: Path relative to the BIDS dataset root (BIDS inputs only), for the sidecar's ``Sources``.
    bids_path: str = ""
    #: Why this input cannot be segmented, found while listing it; it becomes a failed row.
    problem: str = ""


def is_image_file(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def _images_under(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files and folders skipped)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _read_list(path: Path) -> list[Path]:
    """Paths named by a list file, relative ones taken from the list's folder."""
    if path.suffix.lower() == ".csv":
        columns, rows = read_csv_rows(path)
        if "flair" not in columns:
            raise ManifestError(path, f"has no 'flair' column (columns: {', '.join(columns) or 'none'})")
        entries = [row["flair"] for row in rows if row["flair"]]
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise CohortInputError(path, f"cannot be read as a list of inputs ({err})") from None
        entries = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Every volume the arguments name, in order; duplicates are left for the caller to refuse.

    A folder stands for the image files under it, or, when it holds none, for itself as one
    DICOM series folder. A path that does not exist is kept: it becomes a failed row with its
    reason, like any other bad input, instead of stopping the cohort.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = _images_under(item)
            found.extend(images or [item])
        elif item.is_file() and not is_image_file(item) and item.suffix.lower() in LIST_SUFFIXES:
            found.extend(_read_list(item))
        else:
            found.append(item)
    return found


def flat_inputs(inputs: Iterable[str | Path], outputs: Path | None = None) -> list[CohortInput]:
    """Inputs for the flat layout: output names unique in the cohort (see unique_case_names).

    Files under ``outputs`` are left out: with ``-o`` inside an input folder, a second run
    would otherwise take the first run's masks for FLAIRs.
    """
    paths = expand_inputs(inputs)
    if outputs is not None:
        inside = outputs.resolve()
        paths = [p for p in paths if inside not in p.resolve().parents]
    if not paths:
        raise CohortInputError(None, "no input volumes were found")
    names = unique_case_names(paths, [case_name(p) for p in paths])
    return [CohortInput(p, n) for p, n in zip(paths, names)]


def bids_inputs(root: str | Path) -> list[CohortInput]:
    """Every ``sub-*/[ses-*/]anat/*_FLAIR.nii[.gz]`` of a BIDS dataset, with its entities.

    A file whose name is not a BIDS FLAIR name, or does not carry the subject and session of
    its folders, is listed with its problem (a failed row): its outputs would be filed under
    the wrong participant.
    """
    root = Path(root)
    if not root.is_dir():
        raise CohortInputError(root, "is not a folder; --bids takes the root of a BIDS dataset")
    if not (root / "dataset_description.json").is_file():
        log.warning("%s: no dataset_description.json; reading it as a BIDS dataset anyway", root)
    candidates = sorted({*root.glob("sub-*/anat/*_FLAIR.nii*"), *root.glob("sub-*/ses-*/anat/*_FLAIR.nii*")})
    found = []
    for path in candidates:
        match = _BIDS_FLAIR.match(path.name)
        rel = path.relative_to(root)
        folders = rel.parts[:-2]  # sub-X[/ses-Y]
        folder = "/".join((*folders, "anat"))
        if match is None:
            found.append(CohortInput(path, case_name(path), folder=folder, bids_path=rel.as_posix(),
                                     problem="is not a BIDS FLAIR file name (sub-<label>[_ses-<label>]"
                                             "[_<entity>-<label>...]_FLAIR.nii.gz)"))
            continue
        sub, ses = match["sub"], match["ses"] or ""
        expected = (f"sub-{sub}",) + ((f"ses-{ses}",) if ses else ())
        problem = "" if folders == expected else (
            f"names sub-{sub}{'/ses-' + ses if ses else ''} but lies in {'/'.join(folders)}; fix the name or "
            "the folder")
        found.append(CohortInput(path, match["entities"], sub, ses, folder, rel.as_posix(), problem))
    if not found:
        raise CohortInputError(root, "holds no sub-*/[ses-*/]anat/*_FLAIR.nii.gz file")
    return found
