"""Writing a generated case set (phantoms, synthetic heads): one folder per case, a manifest.

One implementation for both generators, so both get the same layout (``NAME/KEY.nii.gz``,
paths in the manifest relative to it) and the same atomic manifest write.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from .errors import OutputExistsError
from .output_files import write_csv


def refuse_existing_set(manifest: Path, what: str, overwrite: bool) -> None:
    if manifest.exists() and not overwrite:
        raise OutputExistsError(manifest, f"already exists; refusing to overwrite a {what} set "
                                          "(pass --overwrite)")


def write_case(out_dir: Path, name: str, images: dict[str, sitk.Image]) -> dict[str, str]:
    """Write ``images`` as ``out_dir/name/KEY.nii.gz`` (compressed, in the given order);
    return their manifest paths, relative to ``out_dir``."""
    folder = out_dir / name
    folder.mkdir(exist_ok=True)
    for key, image in images.items():
        sitk.WriteImage(image, str(folder / f"{key}.nii.gz"), True)
    return {key: f"{name}/{key}.nii.gz" for key in images}


def write_manifest(manifest: Path, rows: list[dict], fields: list[str]) -> Path:
    write_csv(manifest, rows, fields)
    return manifest
