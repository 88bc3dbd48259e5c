"""Manifests for the real labelled FLAIR sets in ``../shared/data`` (evaluation only).

Why: every figure in this project used to come from our own phantoms. The real labelled set
at hand, Lesjak 2017 (3 MS patients, 3T 3D FLAIR at 1 mm in MNI space, skull-stripped,
3-rater consensus masks), becomes ``deepwml evaluate`` input here: at its native 1 mm, and
resliced to the thick 2D axial acquisitions the paper targets (slab averages, labels by slab
lesion fraction >= 0.5; see :mod:`deepwml.reslice`).

Rules: these sets are never used to train, tune or select anything. Native manifests point
at the files where they lie (nothing is copied); resliced volumes are written only into the
output folder, which must lie outside the data folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..errors import DeepWMLError, ManifestError, OutputExistsError
from ..image_io import load_flair
from ..labels import read_label
from ..lesion_summary import mask_volume_ml
from ..output_files import write_csv, write_image_atomic
from ..reslice import reslice_axial
from ..shared_data import default_data_root

log = logging.getLogger(__name__)

FIELDS = ["case", "patient", "center", "disease", "flair", "label", "label_value", "slice_thickness_mm",
          "dataset"]


@dataclass(frozen=True)
class RealCase:
    case: str
    patient: str
    center: str
    disease: str
    flair: Path
    label: Path
    label_value: int | None
    dataset: str


def lesjak2017_cases(root: Path) -> list[RealCase]:
    """Lesjak et al. 2017: 3D FLAIR (MNI, 1 mm, skull-stripped) + 3-rater consensus, {0, 1}."""
    folder = root / "lesjak2017-ms-mni"
    cases = []
    for flair in sorted(folder.glob("patient*/FLAIR_*.nii.gz")):
        labels = sorted(flair.parent.glob("GOLD_STANDARD_*.nii.gz"))
        if len(labels) != 1:
            raise ManifestError(flair.parent, f"expected one GOLD_STANDARD_*.nii.gz, found {len(labels)}")
        name = flair.parent.name
        # binary {0, 1}: no label_value, so the binary check applies
        cases.append(RealCase(name, name, "Ljubljana 3T", "MS", flair, labels[0], None, "lesjak2017-ms-mni"))
    if not cases:
        raise ManifestError(folder, "holds no patient*/FLAIR_*.nii.gz (is the shared data folder right?)")
    return cases


#: Labelled real sets this command knows; add one function per set.
REAL_SETS: dict[str, Callable[[Path], list[RealCase]]] = {"lesjak2017": lesjak2017_cases}


def _row(case: RealCase, flair: Path, label: Path, thickness: float) -> dict:
    return {"case": case.case, "patient": case.patient, "center": case.center, "disease": case.disease,
            "flair": str(flair), "label": str(label),
            "label_value": "" if case.label_value is None else case.label_value,
            "slice_thickness_mm": round(thickness, 4), "dataset": case.dataset}


def write_real_manifests(name: str, out_dir: Path, data_root: Path | None = None,
                         reslice_mm: tuple[float, ...] = (3.0, 5.0), overwrite: bool = False,
                         progress: bool = True) -> list[Path]:
    """Write ``OUT/<name>-native/manifest.csv`` and one resliced set per thickness; return the manifests.

    Every label is checked against its FLAIR's grid and encoding first (one-line errors), and
    the resliced label volume is logged next to the native one.
    """
    from tqdm import tqdm

    if name not in REAL_SETS:
        raise DeepWMLError(None, f"unknown real data set {name!r} (known: {', '.join(REAL_SETS)})")
    root = (Path(data_root) if data_root else default_data_root()).resolve()  # manifests name absolute paths
    if not root.is_dir():
        raise DeepWMLError(root, "shared data folder not found (pass --data or set DEEPWML_SHARED_DATA)")
    out_dir = Path(out_dir).resolve()
    if out_dir == root or root in out_dir.parents:
        raise DeepWMLError(out_dir, "output folder lies inside the shared data folder; write elsewhere")
    cases = REAL_SETS[name](root)
    targets = {"native": out_dir / f"{name}-native" / "manifest.csv"}
    targets.update({f"{t:g}": out_dir / f"{name}-{t:g}mm" / "manifest.csv" for t in reslice_mm})
    for path in targets.values():
        if path.exists() and not overwrite:
            raise OutputExistsError(path, "already exists (pass --overwrite)")
    rows: dict[str, list[dict]] = {key: [] for key in targets}
    for case in tqdm(cases, desc=f"{name} manifests", unit="case", disable=not progress):
        flair = load_flair(case.flair)
        truth = read_label(case.label, flair, case.label_value)
        native_thickness = max(flair.GetSpacing())
        rows["native"].append(_row(case, case.flair, case.label, native_thickness))
        mask = sitk.GetImageFromArray(truth.astype(np.uint8))
        mask.CopyInformation(flair)
        for t in reslice_mm:
            folder = targets[f"{t:g}"].parent / case.case
            thick_flair = reslice_axial(flair, t)
            thick_label = reslice_axial(mask, t, label=True)
            write_image_atomic(thick_flair, folder / "flair.nii.gz")
            write_image_atomic(thick_label, folder / "label.nii.gz")
            log.info("%s at %g mm: label %.2f ml (native %.2f ml)", case.case, t,
                     mask_volume_ml(sitk.GetArrayViewFromImage(thick_label) > 0, thick_label), mask_volume_ml(truth, flair))
            # relative paths: the output folder can be moved as a whole
            rows[f"{t:g}"].append(_row(case, Path(case.case) / "flair.nii.gz", Path(case.case) / "label.nii.gz",
                                       max(thick_flair.GetSpacing())))
    for key, path in targets.items():
        write_csv(path, rows[key], FIELDS)
    return list(targets.values())
