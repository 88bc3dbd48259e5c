"""Lesion patterns per disease, drawn as soft maps (0..1) on the template's 1 mm grid.

- MS: ovoid periventricular lesions with the long axis perpendicular to the ventricle wall
  (Dawson's fingers), juxtacortical and deep white matter lesions.
- NMOSD: fewer, smaller, roundish lesions in deep and periventricular white matter.
- CSVD: confluent periventricular caps (frontal and occipital horns) and bands whose extent
  grows with severity (Fazekas 1-3), punctate deep lesions, confluent deep patches at grade 3.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy


def _random_voxel(mask: np.ndarray, rng: np.random.Generator, cache: dict) -> np.ndarray:
    key = id(mask)
    if key not in cache:
        cache[key] = np.argwhere(mask)
    candidates = cache[key]
    return candidates[rng.integers(len(candidates))].astype(float)


def _draw_ellipsoid(lesions: np.ndarray, center: np.ndarray, radii: np.ndarray,
                    axes: np.ndarray) -> None:
    """Max-blend a soft ellipsoid (edge about 1 mm wide); ``axes`` rows are unit axes."""
    reach = int(np.ceil(radii.max() + 2))
    lo = np.maximum(np.floor(center).astype(int) - reach, 0)
    hi = np.minimum(np.floor(center).astype(int) + reach + 1, lesions.shape)
    if np.any(hi <= lo):
        return
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    local = (grid - center) @ axes.T / radii
    q = np.sqrt((local ** 2).sum(-1))
    soft = np.clip((1.0 - q) * radii.min() + 0.5, 0.0, 1.0)
    view = lesions[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    np.maximum(view, soft, out=view)


def _axes_along(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    first = direction / (np.linalg.norm(direction) + 1e-9)
    helper = rng.normal(size=3)
    second = helper - first * (helper @ first)
    second /= np.linalg.norm(second) + 1e-9
    return np.stack([first, second, np.cross(first, second)])


def _random_axes(rng: np.random.Generator) -> np.ndarray:
    return _axes_along(rng.normal(size=3), rng)


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (computed coarse, then upsampled: fast)."""
    import torch
    import torch.nn.functional as F

    factor = max(1, int(sigma // 2))
    coarse_shape = tuple(max(2, s // factor) for s in shape)
    coarse = ndimage.gaussian_filter(rng.normal(size=coarse_shape), sigma / factor)
    field = F.interpolate(torch.from_numpy(coarse.astype(np.float32))[None, None], size=shape,
                          mode="trilinear", align_corners=False)[0, 0].numpy()
    return ((field - field.mean()) / (field.std() + 1e-9)).astype(np.float32)


def ms_lesions(anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    lesions = np.zeros(anatomy.shape, np.float32)
    cache: dict = {}
    periventricular = (anatomy.ventricle_distance_mm > 1) & (anatomy.ventricle_distance_mm < 7) & (anatomy.wm > 0.5)
    for _ in range(int(rng.integers(4, 30))):
        kind = rng.choice(3, p=[0.55, 0.25, 0.20])
        if kind == 0:
            c = _random_voxel(periventricular, rng, cache)
            direction = anatomy.ventricle_gradient[(slice(None), *c.astype(int))]
            radii = np.array([rng.uniform(3, 9), rng.uniform(1.5, 3.5), rng.uniform(1.5, 3.5)])
            _draw_ellipsoid(lesions, c, radii, _axes_along(direction, rng))
        elif kind == 1:
            c = _random_voxel(anatomy.juxtacortical, rng, cache)
            _draw_ellipsoid(lesions, c, rng.uniform(1.2, 3.5, 3), _random_axes(rng))
        else:
            c = _random_voxel(anatomy.deep_wm, rng, cache)
            _draw_ellipsoid(lesions, c, rng.uniform(1.5, 5.0, 3), _random_axes(rng))
    return lesions


def nmosd_lesions(anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    lesions = np.zeros(anatomy.shape, np.float32)
    cache: dict = {}
    periventricular = (anatomy.ventricle_distance_mm > 0.5) & (anatomy.ventricle_distance_mm < 5) & (anatomy.wm > 0.4)
    for _ in range(int(rng.integers(1, 9))):
        mask = anatomy.deep_wm if rng.random() < 0.6 else periventricular
        c = _random_voxel(mask, rng, cache)
        r = rng.uniform(1.8, 5.0)
        _draw_ellipsoid(lesions, c, r * rng.uniform(0.8, 1.4, 3), _random_axes(rng))
    return lesions


def csvd_lesions(anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    grade = int(rng.choice([1, 2, 3], p=[0.35, 0.40, 0.25]))
    dist = anatomy.ventricle_distance_mm
    # Caps at the anterior and posterior ends of the lateral ventricles, bands along them.
    vy = np.nonzero(anatomy.ventricles.any(axis=(0, 2)))[0]
    y = np.arange(anatomy.shape[1], dtype=np.float32)
    half = max((vy.max() - vy.min()) / 2, 1)
    ends = np.clip(np.abs(y - (vy.max() + vy.min()) / 2) / half, 0, 1.3) ** 3
    reach = {1: 2.0, 2: 4.5, 3: 7.5}[grade] * rng.uniform(0.7, 1.3)
    cap_reach = reach * (0.4 + 1.4 * ends)[None, :, None]
    noise = _smooth_noise(anatomy.shape, 3.0, rng)
    inner = reach * 0.35
    band = (dist - inner * noise) < np.maximum(cap_reach, 0.8)
    lesions = (band & (anatomy.wm > 0.35) & ~anatomy.ventricles).astype(np.float32)
    lesions = ndimage.gaussian_filter(lesions, 0.8)
    cache: dict = {}
    for _ in range(int(rng.integers(2, 6 + 6 * grade))):
        c = _random_voxel(anatomy.deep_wm, rng, cache)
        _draw_ellipsoid(lesions, c, rng.uniform(0.9, 2.5, 3), _random_axes(rng))
    if grade == 3:
        patches = (_smooth_noise(anatomy.shape, 6.0, rng) > 2.0) & anatomy.deep_wm
        np.maximum(lesions, ndimage.gaussian_filter(patches.astype(np.float32), 1.0), out=lesions)
    return np.clip(lesions, 0, 1)


LESION_MAKERS = {"MS": ms_lesions, "NMOSD": nmosd_lesions, "CSVD": csvd_lesions}
