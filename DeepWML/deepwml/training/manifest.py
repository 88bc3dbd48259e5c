"""Case lists: DeepWML ``manifest.csv`` files and the MICCAI WMH 2017 folder layout.

A manifest has one row per case with at least ``case``, ``center``, ``disease``, ``flair`` and
``label`` (paths relative to the manifest), and optionally ``patient``, ``rater1``,
``rater2``, ``label_value`` (the value of a multi-class label that is lesion; without it a
label must be binary) and acquisition columns. A MICCAI WMH 2017 folder (``<site>/<id>/pre/FLAIR.nii.gz``
with ``<site>/<id>/wmh.nii.gz``) is read as the same thing: center = site, label = class 1
(class 2, "other pathology", is not white matter hyperintensity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..csv_table import read_csv_rows
from ..errors import ManifestError
from ..model_files import sha256_of

REQUIRED = ("case", "center", "disease", "flair")
NO_LABEL_HINT = ("; training and evaluation need a lesion label per case ('deepwml consensus' makes "
                 "them from rater1/rater2)")


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


#: Columns of a manifest that name files (relative to the manifest's folder unless absolute).
PATH_COLUMNS = ("flair", "label", "rater1", "rater2")


def rows_with_absolute_paths(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """A manifest's columns and rows, every file column made absolute.

    Why: a row copied into a manifest written elsewhere (a training mix, a thin-slice mix) must
    still name its files; ``deepwml synth`` writes paths relative to its own manifest, and a
    copied relative path would point beside the new manifest instead."""
    path = Path(path)
    columns, rows = read_csv_rows(path)
    base = path.parent.resolve()
    for row in rows:
        for name in PATH_COLUMNS:
            if row.get(name):
                row[name] = str(_path(base, row[name]))
    return columns, rows


def manifest_sha256(path: str | Path) -> str:
    """Fingerprint of a manifest file ("" for a folder): recorded in model cards, so evaluation
    can tell whether it is looking at the data a model was trained on."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    return sha256_of(path) if path.is_file() else ""


def _label_value(manifest: Path, row: dict) -> int | None:
    """The optional ``label_value`` column: which value of a multi-class label is lesion."""
    text = (row.get("label_value") or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ManifestError(manifest, f"case {row['case']}: label_value {text!r} is not a whole number") from None


def read_manifest(path: str | Path, need_labels: bool = True) -> list[Case]:
    """Read a manifest CSV or a MICCAI WMH 2017 folder; every named file must exist."""
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.csv").exists():
            return read_manifest(path / "manifest.csv", need_labels)
        cases = read_miccai_folder(path)
        unlabelled = [c for c in cases if c.label is None]
        if need_labels and unlabelled:
            raise ManifestError(unlabelled[0].flair.parent.parent / "wmh.nii.gz", f"not found{NO_LABEL_HINT}")
        return cases
    if not path.exists():
        raise ManifestError(path, "manifest not found")
    columns, rows = read_csv_rows(path)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ManifestError(path, f"lacks column(s) {', '.join(missing)}")
    if need_labels and "label" not in columns:
        raise ManifestError(path, f"has no 'label' column{NO_LABEL_HINT}")
    if not rows:
        raise ManifestError(path, "lists no cases")
    _check_cells(path, rows, REQUIRED + (("label",) if need_labels else ()))
    cases = []
    base = path.parent
    known = set(REQUIRED) | {"patient", "label", "rater1", "rater2", "label_value"}
    for row in rows:
        case = Case(row["case"], row.get("patient") or row["case"], row["center"], row["disease"],
                    _path(base, row["flair"]), _path(base, row.get("label")),
                    _path(base, row.get("rater1")), _path(base, row.get("rater2")),
                    _label_value(path, row), extra={k: v for k, v in row.items() if k not in known})
        for name in ("flair", "label", "rater1", "rater2"):
            p = getattr(case, name)
            if p is not None and not p.exists():
                raise ManifestError(path, f"case {case.case}: {name} file {p} does not exist")
        cases.append(case)
    return cases


def _check_cells(path: Path, rows: list[dict[str, str]], needed: tuple[str, ...]) -> None:
    """Refuse empty needed cells and repeated case IDs (a repeated ID paired one case's FLAIR
    with another case's mask in scoring and training)."""
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        for column in needed:
            if not row.get(column):
                hint = NO_LABEL_HINT if column == "label" else ""
                raise ManifestError(path, f"line {line}: empty '{column}' cell{hint}")
        if row["case"] in first_line:
            raise ManifestError(path, f"case ID {row['case']!r} appears twice (lines {first_line[row['case']]} "
                                      f"and {line}); case IDs must be unique")
        first_line[row["case"]] = line


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
