"""Tissue maps of a real brain (MNI ICBM152 2009a, shipped inside nilearn's wheel).

Loaded once per process: T1, grey and white matter probabilities, a skull and scalp shell
added around the (brain-extracted) template, an intracranial CSF map derived from them, the lateral ventricles and
the distance to them (periventricular lesions), and the white matter next to cortex
(juxtacortical lesions). All arrays are on the template's 1 mm RAS grid, ``[x, y, z]``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage


#: Environment variable naming a folder with the MNI maps, instead of nilearn's (a GPU server
#: without nilearn gets them from benchmarks/gpu_bundle.py)
MNI_DIR_ENV = "DEEPWML_MNI_DIR"


def _template_dir() -> Path:
    if os.environ.get(MNI_DIR_ENV):
        return Path(os.environ[MNI_DIR_ENV])
    import nilearn

    return Path(nilearn.__file__).resolve().parent / "datasets" / "data"


@dataclass(frozen=True)
class Anatomy:
    t1: np.ndarray  # 0..1
    gm: np.ndarray  # probability
    wm: np.ndarray
    csf: np.ndarray  # intracranial CSF fraction
    intracranial: np.ndarray  # soft 0..1
    ventricle_distance_mm: np.ndarray
    ventricle_gradient: np.ndarray  # [3, x, y, z] unit vectors away from the ventricles
    juxtacortical: np.ndarray  # bool
    deep_wm: np.ndarray  # bool
    ventricles: np.ndarray  # bool
    origin_ras: np.ndarray  # mm of voxel (0, 0, 0)
    skull: np.ndarray  # soft 0..1: cortical bone, dark on FLAIR
    scalp: np.ndarray  # soft 0..1: subcutaneous fat and skin, bright on FLAIR

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t1.shape  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    import nibabel as nib

    folder = _template_dir()

    def load(kind: str) -> tuple[np.ndarray, np.ndarray]:
        img = nib.load(folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")
        return np.asarray(img.dataobj, dtype=np.float32) / 255.0, img.affine

    t1, affine = load("t1")
    gm, _ = load("gm")
    wm, _ = load("wm")
    tissue = np.clip(gm + wm, 0, 1)
    brain = ndimage.binary_fill_holes(tissue > 0.3)
    intracranial_hard = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=4))
    intracranial_hard = ndimage.binary_dilation(intracranial_hard, iterations=1)
    intracranial = ndimage.gaussian_filter(intracranial_hard.astype(np.float32), 0.7)
    csf = np.clip(intracranial - tissue, 0, 1)
    # Lateral ventricles: large CSF components deep inside the brain.
    deep = ndimage.binary_erosion(intracranial_hard, iterations=12)
    labels, n = ndimage.label((csf > 0.5) & deep)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = np.argsort(sizes)[::-1][:2] + 1
    ventricles = np.isin(labels, keep)
    distance = ndimage.distance_transform_edt(~ventricles).astype(np.float32)
    smooth = ndimage.gaussian_filter(distance, 1.5)
    grad = np.stack(np.gradient(smooth)).astype(np.float32)
    grad /= np.linalg.norm(grad, axis=0, keepdims=True) + 1e-6
    # The template is brain-extracted; clinical FLAIR is not. Add a skull (about 5 mm of dark
    # bone) and a scalp (about 6 mm of bright fat and skin) around the intracranial space.
    outside_mm = ndimage.distance_transform_edt(~intracranial_hard).astype(np.float32)
    skull = ndimage.gaussian_filter(((outside_mm > 0) & (outside_mm <= 5)).astype(np.float32), 0.8)
    scalp = ndimage.gaussian_filter(((outside_mm > 5) & (outside_mm <= 11)).astype(np.float32), 0.8)
    juxta = (wm > 0.4) & (ndimage.maximum_filter(gm, size=3) > 0.6) & (distance > 10)
    deep_wm = (wm > 0.85) & (distance > 4)
    return Anatomy(t1, gm, wm, csf, intracranial, distance, grad, juxta, deep_wm, ventricles,
                   affine[:3, 3].astype(float), skull, scalp)
