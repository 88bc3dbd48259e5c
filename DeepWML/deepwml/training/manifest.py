"""Case lists: DeepWML ``manifest.csv`` files and the MICCAI WMH 2017 folder layout.

A manifest has one row per case with at least ``case``, ``center``, ``disease``, ``flair`` and
``label`` (paths relative to the manifest), and optionally ``patient``, ``rater1``,
``rater2`` and acquisition columns. A MICCAI WMH 2017 folder (``<site>/<id>/pre/FLAIR.nii.gz``
with ``<site>/<id>/wmh.nii.gz``) is read as the same thing: center = site, label = class 1
(class 2, "other pathology", is not white matter hyperintensity).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ManifestError
from ..model_files import sha256_of

REQUIRED = ("case", "center", "disease", "flair")


@dataclass(frozen=True)
class Case:
    case: str
    patient: str
    center: str
    disease: str
    flair: Path
    label: Path | None = None
    rater1: Path | None = None
    rater2: Path | None = None
    label_value: int | None = None  # only this value is lesion (MICCAI: 1); None: any > 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def stratum(self) -> tuple[str, str]:
        return self.center, self.disease


def _path(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else base / p


def manifest_sha256(path: str | Path) -> str:
    """Fingerprint of a manifest file ("" for a folder): recorded in model cards, so evaluation
    can tell whether it is looking at the data a model was trained on."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    return sha256_of(path) if path.is_file() else ""


def read_manifest(path: str | Path, need_labels: bool = True) -> list[Case]:
    """Read a manifest CSV or a MICCAI WMH 2017 folder; every named file must exist."""
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.csv").exists():
            return read_manifest(path / "manifest.csv", need_labels)
        return read_miccai_folder(path)
    if not path.exists():
        raise ManifestError(path, "manifest not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(path, f"lacks column(s) {', '.join(missing)}")
        if need_labels and "label" not in (reader.fieldnames or []) and "rater1" not in (reader.fieldnames or []):
            raise ManifestError(path, "has neither a 'label' nor a 'rater1' column")
        rows = list(reader)
    if not rows:
        raise ManifestError(path, "lists no cases")
    cases = []
    base = path.parent
    known = set(REQUIRED) | {"patient", "label", "rater1", "rater2"}
    for row in rows:
        case = Case(row["case"], row.get("patient") or row["case"], row["center"], row["disease"],
                    _path(base, row["flair"]), _path(base, row.get("label")),
                    _path(base, row.get("rater1")), _path(base, row.get("rater2")),
                    extra={k: v for k, v in row.items() if k not in known})
        for name in ("flair", "label", "rater1", "rater2"):
            p = getattr(case, name)
            if p is not None and not p.exists():
                raise ManifestError(path, f"case {case.case}: {name} file {p} does not exist")
        cases.append(case)
    return cases


def read_miccai_folder(root: Path) -> list[Case]:
    cases = []
    for flair in sorted(root.glob("*/*/pre/FLAIR.nii.gz")):
        subject = flair.parent.parent
        site = subject.parent.name
        label = subject / "wmh.nii.gz"
        cases.append(Case(f"{site}_{subject.name}", f"{site}_{subject.name}", site, "WMH", flair,
                          label if label.exists() else None, label_value=1))
    if not cases:
        raise ManifestError(root, "is neither a manifest nor a MICCAI WMH 2017 folder "
                                  "(<site>/<id>/pre/FLAIR.nii.gz)")
    return cases
