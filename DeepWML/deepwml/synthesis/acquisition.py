"""A randomised clinical FLAIR acquisition of a synthetic 1 mm head.

Slice thickness 1-8 mm (thick 2D axial mostly, some 1 mm 3D-like slabs), slice gaps, 17-40
slices, in-plane 0.4-1.0 mm, matrix 192-512, field of view 200-250 mm, head pose and size,
a smooth deformation; then a 3D bias field, Rician noise, ghosting along the phase-encoding
direction, a vendor intensity curve and storage scale. Thick slices are made by averaging
sub-slices across the slice profile (true partial volume, as a scanner integrates it).
Ranges live in :data:`ACQUISITION`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..phantom.generator import _rotation


@dataclass(frozen=True)
class AcquisitionRanges:
    thin_probability: float = 0.2  # 1-1.5 mm slices (3D FLAIR-like)
    thick_mm: tuple[float, ...] = (3.0, 3.3, 4.0, 5.0, 5.5, 6.0, 6.5, 7.0, 8.0)
    gap_fraction: tuple[float, float] = (0.0, 0.25)
    pixel_mm: tuple[float, float] = (0.4, 1.0)
    fov_mm: tuple[float, float] = (200.0, 250.0)
    coverage_mm: tuple[float, float] = (110.0, 165.0)
    thin_slices: tuple[int, int] = (24, 40)
    rotation_deg: tuple[float, float, float] = (15.0, 8.0, 10.0)
    scale: tuple[float, float] = (0.9, 1.1)
    shift_mm: float = 10.0
    deformation_mm: float = 2.5
    bias: tuple[float, float] = (0.0, 0.5)
    noise: tuple[float, float] = (0.01, 0.07)
    ghost_probability: float = 0.2
    ghost: tuple[float, float] = (0.02, 0.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    storage_scale: tuple[float, float] = (150.0, 3000.0)
    uint8_probability: float = 0.1


ACQUISITION = AcquisitionRanges()
#: A fixed protocol: whole-head 3D FLAIR, 150 axial 1 mm slices of 256x256 at 0.94 mm (the random
#: draw's thin stacks cover 24-40 mm of the head only). Used by ``deepwml synth --whole-head-3d``
#: and ``benchmarks/thin_slab_study.py``.
WHOLE_HEAD_3D = {"slice_thickness_mm": 1.0, "slice_spacing_mm": 1.0, "slices": 150, "matrix": 256,
                 "pixel_mm": 0.9375}

#: Synthesis v3: this share of cases is skull-stripped, as research cohorts and public data sets
#: (MNI-registered, BET/HD-BET/SynthStrip outputs) hand them over: zero outside a brain mask.
#: The network then sees brain-only heads with their own intensity statistics, not only whole heads.
SKULL_STRIPPED_PROBABILITY = 0.15
#: The brain mask's edge: the brain-label fraction (on the acquired grid) it is cut at, how far
#: (mm, in-plane) it is grown, and the closing that bridges the sulci (see strip_skull).
STRIP_EDGE_FRACTION = (0.3, 0.7)
STRIP_GROW_MM = (0.0, 4.0)
STRIP_CLOSE_MM = (6.0, 10.0)


def draw_acquisition(rng: np.random.Generator, r: AcquisitionRanges = ACQUISITION) -> dict:
    """Slice thickness, spacing, count, pixel size and matrix of one acquisition."""
    pixel = float(rng.uniform(*r.pixel_mm))
    fov = float(rng.uniform(*r.fov_mm))
    matrix = int(np.clip(round(fov / pixel / 16) * 16, 192, 512))
    pixel = round(fov / matrix, 4)
    if rng.random() < r.thin_probability:
        thickness = float(rng.uniform(1.0, 1.5))
        spacing = thickness
        slices = int(rng.integers(*r.thin_slices))
    else:
        thickness = float(rng.choice(r.thick_mm))
        spacing = thickness * (1 + float(rng.uniform(*r.gap_fraction)))
        slices = int(np.clip(round(rng.uniform(*r.coverage_mm) / spacing), 17, 30))
    return {"slice_thickness_mm": round(thickness, 3), "slice_spacing_mm": round(spacing, 3),
            "pixel_mm": pixel, "matrix": matrix, "slices": slices}


def sampling_grid(acq: dict, volume: sitk.Image, centre_lps: np.ndarray, rng: np.random.Generator,
                  r: AcquisitionRanges = ACQUISITION) -> tuple[torch.Tensor, int]:
    """grid_sample coordinates ``[1, slices*sub, n, n, 3]`` into ``volume`` (1 mm sampling
    in-plane, ``sub`` samples across each slice's thickness)."""
    fov = acq["matrix"] * acq["pixel_mm"]
    n = int(round(fov))
    step = fov / n
    sub = max(1, int(round(acq["slice_thickness_mm"] / 1.2)))
    t = acq["slice_thickness_mm"]
    offsets = (torch.arange(sub) + 0.5) / sub * t - t / 2
    # thin stacks cover a random part of the head; thick ones are centred on the brain
    k = torch.arange(acq["slices"]) - (acq["slices"] - 1) / 2
    z0 = rng.uniform(-30, 40) if acq["slices"] * acq["slice_spacing_mm"] < 80 else rng.uniform(-8, 12)
    z = (k[:, None] * acq["slice_spacing_mm"] + offsets[None, :]).reshape(-1) + z0
    xy = (torch.arange(n) - (n - 1) / 2) * step
    Z, Y, X = torch.meshgrid(z, xy, xy, indexing="ij")
    pts = torch.stack([X, Y, Z], -1).reshape(-1, 3)
    rot = torch.from_numpy(_rotation(rng.uniform(-1, 1, 3) * np.array(r.rotation_deg))).float()
    scale = torch.from_numpy(rng.uniform(*r.scale) * rng.uniform(0.96, 1.04, 3)).float()
    shift = torch.from_numpy(rng.uniform(-r.shift_mm, r.shift_mm, 3) + centre_lps).float()
    world = (pts @ rot.T) / scale + shift  # LPS mm in the label map's space
    direction = torch.tensor(volume.GetDirection(), dtype=torch.float32).reshape(3, 3)
    origin = torch.tensor(volume.GetOrigin(), dtype=torch.float32)
    spacing = torch.tensor(volume.GetSpacing(), dtype=torch.float32)
    index = ((world - origin) @ direction) / spacing  # (i, j, k): direction is orthonormal
    size = torch.tensor(volume.GetSize(), dtype=torch.float32)
    grid = (2 * index / (size - 1) - 1).reshape(1, len(z), n, n, 3)
    coarse = torch.from_numpy(rng.normal(0, r.deformation_mm, (1, 3, 4, 4, 4)).astype(np.float32))
    disp = F.interpolate(coarse, size=(len(z), n, n), mode="trilinear", align_corners=True)
    disp = disp.permute(0, 2, 3, 4, 1) * (2 / (size - 1))
    return grid + disp, sub


def resample(maps: np.ndarray, volume: sitk.Image, acq: dict, centre_lps: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """``[C, k, j, i]`` 1 mm maps to ``[C, slices, matrix, matrix]`` thick slices."""
    grid, sub = sampling_grid(acq, volume, centre_lps, rng)
    out = F.grid_sample(torch.from_numpy(maps)[None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)[0]
    out = out.reshape(out.shape[0], acq["slices"], sub, *out.shape[2:]).mean(2)
    size = (acq["matrix"], acq["matrix"])
    return F.interpolate(out, size=size, mode="bilinear", align_corners=False).numpy()


def degrade(flair: np.ndarray, rng: np.random.Generator, r: AcquisitionRanges = ACQUISITION) -> np.ndarray:
    """Bias field, Rician noise, ghosting, intensity curve, storage scale and type."""
    s, h, w = flair.shape
    zz, yy, xx = np.meshgrid(np.linspace(-1, 1, s), np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    a = rng.normal(size=7)
    amp = rng.uniform(*r.bias)
    bias = 1 + amp / 2 * np.tanh(0.5 * (a[0] * xx + a[1] * yy + a[2] * zz * 0.5 + a[3] * xx * yy
                                        + a[4] * xx ** 2 + a[5] * yy ** 2 + a[6] * zz ** 2 * 0.5))
    flair = flair * bias.astype(np.float32)
    if rng.random() < r.ghost_probability:
        axis = int(rng.integers(1, 3))
        flair = flair + np.float32(rng.uniform(*r.ghost)) * np.roll(flair, flair.shape[axis] // 2, axis=axis)
    sigma = np.float32(rng.uniform(*r.noise))
    noise = rng.standard_normal((2, *flair.shape), dtype=np.float32) * sigma
    flair = np.sqrt((flair + noise[0]) ** 2 + noise[1] ** 2)
    flair = flair ** np.float32(rng.uniform(*r.gamma))
    if rng.random() < r.uint8_probability:
        return np.clip(np.round(flair / np.percentile(flair, 99.9) * 255), 0, 255).astype(np.uint8)
    return np.clip(np.round(flair * rng.uniform(*r.storage_scale)), 0, 32767).astype(np.int16)


def strip_skull(flair: np.ndarray, brain_fraction: np.ndarray, pixel_mm: float,
                rng: np.random.Generator) -> np.ndarray:
    """What a brain-extraction tool leaves of ``flair`` ``[slices, rows, cols]``: zero outside a
    brain mask. The mask is the brain-label fraction cut at a random level, closed in-plane over
    6-10 mm (extraction tools keep the sulcal CSF under a smooth outline, they do not trace the
    cortex), holes filled and grown by a random 0-4 mm. Same dtype as ``flair``."""
    mask = brain_fraction >= rng.uniform(*STRIP_EDGE_FRACTION)
    close_px = rng.uniform(*STRIP_CLOSE_MM) / pixel_mm
    grow_px = rng.uniform(*STRIP_GROW_MM) / pixel_mm
    out = np.zeros_like(mask)
    for k, brain in enumerate(mask):
        if not brain.any():
            continue
        # closing by a disc: dilate by r, erode by r (exact Euclidean discs via distance maps)
        dilated = ndimage.distance_transform_edt(~brain) <= close_px
        closed = ndimage.distance_transform_edt(dilated) > close_px
        closed = ndimage.binary_fill_holes(closed | brain)
        out[k] = ndimage.distance_transform_edt(~closed) <= grow_px if grow_px >= 1 else closed
    return np.where(out, flair, 0).astype(flair.dtype)
