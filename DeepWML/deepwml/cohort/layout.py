"""Where a cohort's outputs go: a flat folder, or a BIDS-derivatives dataset.

Why BIDS derivatives: neuroimaging cohorts are organised as BIDS datasets, and tools that read
them (pybids, fMRIPrep-style pipelines, the BIDS validator) find derived files by entities and
suffix. A case ``sub-01/ses-02/anat/sub-01_ses-02_FLAIR.nii.gz`` gets, under
``OUT/derivatives/deepwml/sub-01/ses-02/anat/``:

- ``sub-01_ses-02_desc-wmh_mask.nii.gz``: the binary lesion mask (BIDS ``mask`` suffix),
- ``sub-01_ses-02_desc-wmh_mask.json``: its sidecar = DeepWML's summary plus BIDS ``Type`` and
  ``Sources``,
- ``sub-01_ses-02_desc-wmh_mask.seg.nrrd``: the Slicer segmentation (listed in ``.bidsignore``),
- ``sub-01_ses-02_desc-wmh_probseg.nii.gz``: the probability map, on request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..output_files import write_with
from ..pipeline import OutputPaths
from .inputs import CohortInput

#: The derivatives dataset's folder inside ``-o`` for BIDS input.
BIDS_PIPELINE = Path("derivatives") / "deepwml"
BIDS_VERSION = "1.10.0"
#: Files a BIDS validator does not know; listed so the derivatives dataset validates.
BIDS_IGNORE = ("*.seg.nrrd", "cohort.csv", "cohort.parquet")
DESCRIPTION_NAME = "dataset_description.json"


def cohort_root(out: str | Path, bids: bool) -> Path:
    """The folder the cohort owns: ``-o`` itself, or its ``derivatives/deepwml`` for BIDS."""
    return Path(out) / BIDS_PIPELINE if bids else Path(out)


def case_outputs(root: Path, item: CohortInput, bids: bool, labelmap: bool,
                 probabilities: bool) -> OutputPaths:
    """The final output paths of one case (BIDS always writes the NIfTI mask)."""
    folder = root / item.folder
    if not bids:
        return OutputPaths.for_case(folder, item.name, labelmap, probabilities)
    stem = folder / f"{item.name}_desc-wmh"
    return OutputPaths(Path(f"{stem}_mask.seg.nrrd"), Path(f"{stem}_mask.json"), Path(f"{stem}_mask.nii.gz"),
                       Path(f"{stem}_probseg.nii.gz") if probabilities else None)


def bids_sidecar(item: CohortInput) -> dict[str, Any]:
    """BIDS keys added to a case's summary when it is the mask's sidecar."""
    return {"Type": "Lesion", "Sources": [f"bids:raw:{item.bids_path}"]}


def _thin_text(thin: dict[str, Any] | None) -> str:
    """The thin-slice model's part of ``GeneratedBy`` ('' without one)."""
    if not thin:
        return ""
    return f"; slices thinner than 2 mm: thin-slice model {thin['id']}, weights SHA-256 {thin['weights_sha256']}"


def write_dataset_description(root: Path, bids_root: Path, model: dict[str, Any]) -> None:
    """Write the derivatives dataset's ``dataset_description.json`` and ``.bidsignore``.

    ``GeneratedBy`` names the engine version and the model (id and weights SHA-256; and the
    thin-slice model's, ``model["thin"]``, when thin volumes went to one), so a
    derivatives folder says what produced it; the raw dataset is linked as ``raw`` for the
    sidecars' ``bids:raw:`` sources.
    """
    description = {
        "Name": "DeepWML white matter hyperintensity segmentation",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "DeepWML", "Version": __version__,
                         "Description": f"2D U-Net on FLAIR; model {model['id']}, weights SHA-256 "
                                        f"{model['weights_sha256']}" + _thin_text(model.get("thin"))}],
        "SourceDatasets": [{"URL": bids_root.resolve().as_uri()}],
        "DatasetLinks": {"raw": bids_root.resolve().as_uri()},
    }
    text = json.dumps(description, indent=2) + "\n"
    write_with(root / DESCRIPTION_NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    write_with(root / ".bidsignore", lambda tmp: tmp.write_text("\n".join(BIDS_IGNORE) + "\n", encoding="utf-8"))
