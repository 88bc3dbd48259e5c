"""Shared fixtures: a tiny random-weight model, synthetic and phantom volumes."""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path

# The record of verified ONNX graphs (deepwml.verified_graphs) of this test run only: tests
# never read or write the user's cache.
os.environ["DEEPWML_CACHE_DIR"] = tempfile.mkdtemp(prefix="deepwml-test-cache-")

# The test-only slicer.ScriptedLoadableModule stand-in must be on sys.path before anything
# imports `slicer` (its package path is computed once, at first import).
sys.path.insert(0, str(Path(__file__).resolve().parent / "slicer_shim"))

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from deepwml.model_files import ModelCard, save_model
from deepwml.unet import UNet2D, UNetConfig


def synthetic_flair(size=(64, 48, 12), spacing=(0.9, 0.9, 5.0), direction=None, seed=0,
                    origin=(-20.0, 10.0, 3.0)) -> sitk.Image:
    """An ellipsoid 'head' with bright blobs: fast, for geometry and error tests."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    z, y, x = np.meshgrid(np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    head = (x ** 2 + y ** 2 + 0.5 * z ** 2) < 0.8
    arr = np.where(head, 400.0, 5.0) + rng.normal(0, 10, head.shape)
    arr[(x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.02] = 900.0
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = UNet2D(UNetConfig(base_channels=4))
    out = tmp_path_factory.mktemp("tiny_model")
    save_model(net, ModelCard("tiny-test", "0.0.1", net.config, notes="random weights, tests only"), out)
    return out


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory) -> Path:
    """Nine phantom cases (one per center), written once per test session."""
    from deepwml.phantom.generator import generate_dataset

    out = tmp_path_factory.mktemp("phantoms")
    return generate_dataset(out, 9, seed=11, progress=False)


@pytest.fixture(scope="session")
def phantom_flair(phantom_set) -> Path:
    return phantom_set.parent / "case0005" / "flair.nii.gz"


def write_validation_manifest(folder: Path, truths: dict[str, np.ndarray], drawn: tuple[str, ...] = (),
                              mark_healthy: bool = False) -> Path:
    """A manifest of noisy FLAIRs (1 x 1 x 2 mm voxels) with the given truth masks, one case each; its disease "MS"
    where the truth holds lesion or the case is in ``drawn``, else "none" (as synthesis writes). ``mark_healthy``: the
    cases without truth get origin z = 1 mm, so a stub network can tell them apart."""
    rows = []
    for index, (name, truth) in enumerate(truths.items()):
        flair = np.random.default_rng(index).integers(80, 120, truth.shape).astype(np.int16)
        for kind, array in (("flair", flair), ("label", truth)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((1.0, 1.0, 2.0))
            image.SetOrigin((0.0, 0.0, 1.0 if mark_healthy and not truth.any() else 0.0))
            sitk.WriteImage(image, str(folder / f"{name}_{kind}.nii.gz"))
        disease = "MS" if truth.any() or name in drawn else "none"
        rows.append({"case": name, "patient": name, "center": "A", "disease": disease,
                     "flair": str(folder / f"{name}_flair.nii.gz"), "label": str(folder / f"{name}_label.nii.gz")})
    manifest = folder / "m.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture
def validation_manifest():
    """:func:`write_validation_manifest`, for the threshold sweep's and the probes' tests."""
    return write_validation_manifest
