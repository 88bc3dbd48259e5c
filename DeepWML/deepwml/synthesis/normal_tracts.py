"""Normal, symmetric white-matter hyperintensities of FLAIR that raters never label (synthesis v11).

Two are textbook on routine FLAIR of healthy adults: the **corticospinal tract**, faintly bright
from the posterior limb of the internal capsule up through the corona radiata, and the
**peritrigonal "terminal zones"** of myelination, posterior and superior to the ventricular
trigones. Both are bilateral, roughly symmetric, ill-defined and a few to ~12 % brighter than the
surrounding white matter. No earlier synthesis version drew them (v8's diffuse brightening falls
at random places), and networks trained from scratch on v4-v10 mark exactly such faint, symmetric
regions on real scans (docs/EXPERIMENTS.md, experiment 36). The paths are drawn in MNI space from anatomy
(coordinates below, not fitted to any scan) and brought into each subject with the same
registration as the real lesion masks (:func:`.lesions.mni_to_subject`).
"""

from __future__ import annotations

import functools

import numpy as np
import SimpleITK as sitk

from .anatomy import CEREBRAL_WM, SUBJECT_LESION_LABELS, SubjectAnatomy
from .lesions import mni_to_subject

#: Right-hemisphere centre lines, MNI RAS millimetres (mirrored in x for the left), with the
#: range of their tube's Gaussian width (mm). Corticospinal: posterior limb of the internal
#: capsule -> corona radiata -> centrum semiovale below the precentral gyrus. Peritrigonal: from
#: behind the trigone (atrium) of the lateral ventricle up over its posterior body.
TRACT_PATHS: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float]]] = {
    "corticospinal": (((20.0, -12.0, 2.0), (24.0, -17.0, 16.0), (26.0, -20.0, 30.0), (27.0, -22.0, 44.0),
                       (29.0, -24.0, 54.0)), (2.5, 4.5)),
    "peritrigonal": (((27.0, -50.0, 14.0), (27.0, -44.0, 22.0), (24.0, -36.0, 30.0)), (4.0, 7.0)),
}
#: Each path appears in this share of the cases that have tract brightening (both may).
PATH_PROBABILITY = 0.75
#: Random shift of a path (the same, mirrored, on both sides), mm per axis: anatomy varies.
PATH_JITTER_MM = 3.0
#: Left and right gains differ by at most this fraction: symmetric, not identical.
ASYMMETRY = 0.15
#: MNI grid of the field (LPS, 2 mm: the tubes are smooth, the subject grid interpolates).
_GRID_ORIGIN_LPS = (-90.0, -126.0, -72.0)
_GRID_SIZE = (91, 109, 91)
_GRID_MM = 2.0


@functools.lru_cache(maxsize=1)
def _grid_ras() -> np.ndarray:
    """RAS coordinates (mm) of the MNI grid's voxels, ``[k, j, i, 3]``."""
    i, j, k = (np.arange(n, dtype=np.float32) * _GRID_MM + o for n, o in zip(_GRID_SIZE, _GRID_ORIGIN_LPS))
    kk, jj, ii = np.meshgrid(k, j, i, indexing="ij")
    return np.stack([-ii, -jj, kk], axis=-1)  # LPS -> RAS


def _distance_to_path(points: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Distance (mm) of every point ``[..., 3]`` to the polyline ``path`` ``[n, 3]``."""
    best = np.full(points.shape[:-1], np.inf, np.float32)
    for a, b in zip(path[:-1], path[1:]):
        ab = (b - a).astype(np.float32)
        offset = points - a
        t = np.clip((offset @ ab) / float(ab @ ab), 0.0, 1.0)
        np.minimum(best, np.linalg.norm(offset - t[..., None] * ab, axis=-1), out=best)
    return best


def tract_gain_mni(rng: np.random.Generator, gain: tuple[float, float]) -> sitk.Image:
    """One case's brightening over white matter in MNI space (0 = none; peak gain - 1 per path)."""
    points = _grid_ras()
    field = np.zeros(points.shape[:-1], np.float32)
    for line, width_mm in TRACT_PATHS.values():
        if rng.random() >= PATH_PROBABILITY:
            continue
        path = np.asarray(line, np.float32) + rng.uniform(-PATH_JITTER_MM, PATH_JITTER_MM, 3).astype(np.float32)
        sigma = rng.uniform(*width_mm)
        peak = rng.uniform(*gain)
        for side in (1.0, -1.0):
            mirrored = path * np.asarray([side, 1.0, 1.0], np.float32)
            amplitude = peak * (1.0 + rng.uniform(-ASYMMETRY, ASYMMETRY)) if side < 0 else peak
            tube = np.exp(-0.5 * (_distance_to_path(points, mirrored) / sigma) ** 2)
            np.maximum(field, np.float32(amplitude) * tube, out=field)
    image = sitk.GetImageFromArray(field)
    image.SetOrigin(_GRID_ORIGIN_LPS)
    image.SetSpacing((_GRID_MM,) * 3)
    return image


def normal_tracts(subject: SubjectAnatomy, probability: float, gain: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray | None:
    """A multiplicative field on the subject's grid (1 outside cerebral white matter) brightening the
    corticospinal tracts and peritrigonal zones, in ``probability`` of the cases; else None."""
    if rng.random() >= probability:
        return None
    field = sitk.Resample(tract_gain_mni(rng, gain), subject.image, mni_to_subject(subject), sitk.sitkLinear,
                          0.0, sitk.sitkFloat32)
    white = np.isin(subject.labels, CEREBRAL_WM + SUBJECT_LESION_LABELS)
    return np.where(white, 1.0 + sitk.GetArrayFromImage(field), 1.0).astype(np.float32)
