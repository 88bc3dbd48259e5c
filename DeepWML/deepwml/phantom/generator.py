"""``deepwml phantom``: multi-center thick-slice FLAIR phantoms with two raters per case.

Each case: a randomly posed, sized and smoothly deformed real brain, a disease-specific lesion
pattern, and an acquisition from one of nine centers (thickness 3-8 mm made by averaging a
fine grid, 17-30 slices, 0.41-0.94 mm in-plane, 256-512 matrix), vendor contrast, bias field
and Rician noise. The true lesion mask is the partial-volume lesion fraction >= 0.5; two
raters differ from it by smooth boundary jitter and missed small lesions, and about one case
in eight is labelled carelessly enough to fall under the paper's 0.85 inter-rater Dice.
Deterministic for a seed; cases are independent (case i depends only on seed and i).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..case_set import refuse_existing_set, write_case, write_manifest
from ..output_folder import writes_output_folder
from ..process_pool import map_in_chunks
from .anatomy import Anatomy, load_anatomy
from .centers import CENTERS, Center
from .lesions import LESION_MAKERS

log = logging.getLogger(__name__)

MANIFEST_FIELDS = ["case", "patient", "center", "disease", "scanner", "field_t", "slice_thickness_mm",
                   "slice_spacing_mm", "pixel_mm", "matrix", "slices", "flair", "rater1", "rater2",
                   "label"]
#: Partial-volume lesion fraction from which a voxel is lesion in the truth (and raters'
#: reference): at 40 % the hyperintensity is plainly visible on a thick slice.
TRUTH_FRACTION = 0.4
#: Fraction of cases whose raters are careless (inter-rater Dice usually < 0.85).
CARELESS_FRACTION = 0.125


@dataclass
class PhantomCase:
    flair: sitk.Image
    truth: sitk.Image
    rater1: sitk.Image
    rater2: sitk.Image
    info: dict


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _acquisition(center: Center, rng: np.random.Generator) -> dict:
    thickness = float(rng.choice(center.thicknesses_mm))
    pixel = float(rng.choice(center.pixels_mm))
    fov = rng.uniform(215, 245)
    matrix = int(np.clip(round(fov / pixel / 32) * 32, 256, 512))
    coverage = rng.uniform(125, 150)
    slices = int(np.clip(round(coverage / thickness), 17, 30))
    spacing = max(thickness, coverage / slices)
    return {"slice_thickness_mm": thickness, "slice_spacing_mm": round(spacing, 3),
            "pixel_mm": pixel, "matrix": matrix, "slices": slices}


def _sample_points(acq: dict, rng: np.random.Generator, anatomy: Anatomy
                   ) -> tuple[torch.Tensor, int, int]:
    """grid_sample coordinates ``[1, slices*sub, n, n, 3]`` into the template.

    In-plane sampling is at about 1 mm (the template's resolution; finer adds nothing) and is
    resized to the acquisition matrix afterwards; ``sub`` samples per slice thickness give the
    partial-volume averaging of a thick 2D slice.
    """
    fov = acq["matrix"] * acq["pixel_mm"]
    n = int(round(fov / 1.0))
    step = fov / n
    sub = max(2, int(round(acq["slice_thickness_mm"] / 1.5)))
    offsets = (torch.arange(sub) + 0.5) / sub * acq["slice_thickness_mm"] - acq["slice_thickness_mm"] / 2
    k = torch.arange(acq["slices"]) - (acq["slices"] - 1) / 2
    z = (k[:, None] * acq["slice_spacing_mm"] + offsets[None, :]).reshape(-1)
    xy = (torch.arange(n) - (n - 1) / 2) * step
    # LPS patient coordinates around the head centre: rows = +y (posterior), cols = +x (left).
    Z, Y, X = torch.meshgrid(z, xy, xy, indexing="ij")
    pts = torch.stack([X, Y, Z], -1).reshape(-1, 3)
    rot = torch.from_numpy(_rotation(rng.uniform([-12, -5, -8], [12, 5, 8]))).float()
    scale = torch.from_numpy(rng.uniform(0.9, 1.1) * rng.uniform(0.96, 1.04, 3)).float()
    shift = torch.from_numpy(rng.uniform(-6, 6, 3)).float()
    head = (pts @ rot.T) / scale + shift
    # LPS -> template RAS mm (head centre ~ (0, -18, 12) in MNI) -> voxel index -> [-1, 1]
    lps_to_ras = torch.tensor([-1.0, -1.0, 1.0])
    centre = torch.tensor([0.0, -18.0, 12.0]) - torch.from_numpy(anatomy.origin_ras).float()
    idx = head * lps_to_ras + centre
    shape = torch.tensor(anatomy.shape, dtype=torch.float32)
    grid = (2 * idx / (shape - 1) - 1).flip(-1).reshape(1, len(z), n, n, 3)
    # smooth random deformation, about 2.5 mm
    coarse = torch.from_numpy(rng.normal(0, 2.5, (1, 3, 4, 4, 4)).astype(np.float32))
    disp = F.interpolate(coarse, size=(len(z), n, n), mode="trilinear", align_corners=True)
    disp = disp.permute(0, 2, 3, 4, 1) * (2 / (shape.flip(0) - 1))
    return grid + disp, sub


def _rater(soft: np.ndarray, rng: np.random.Generator, careless: bool) -> np.ndarray:
    amp = rng.uniform(0.2, 0.3) if careless else rng.uniform(0.01, 0.03)
    noise = ndimage.gaussian_filter(rng.normal(size=soft.shape), (0, 3, 3))
    noise /= noise.std() + 1e-9
    mask = (soft > 0.05) & ((soft + amp * noise) >= TRUTH_FRACTION)
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum_labels(mask, labels, np.arange(1, n + 1))
        p_miss = 0.6 if careless else 0.08
        missed = [i + 1 for i, s in enumerate(sizes) if s < (60 if careless else 20) and rng.random() < p_miss]
        mask[np.isin(labels, missed)] = False
    return mask


def draw_center_and_disease(index: int, rng: np.random.Generator) -> tuple[Center, str]:
    """Case ``index``'s center and disease: the first draw of its generator, so a set's
    manifest columns (and hence its split) can be known without generating the images."""
    center = CENTERS[index % len(CENTERS)]
    disease = center.diseases[0] if len(center.diseases) == 1 else str(
        rng.choice(center.diseases, p=[0.65, 0.35]))
    return center, disease


def make_case(index: int, seed: int, acquisition: dict | None = None) -> PhantomCase:
    """Generate case ``index`` of the phantom set with ``seed``.

    ``acquisition`` overrides the center's drawn settings (keys as in the manifest:
    slice_thickness_mm, slice_spacing_mm, pixel_mm, matrix, slices), e.g. for benchmarks.
    """
    rng = np.random.default_rng([seed, index])
    anatomy = load_anatomy()
    center, disease = draw_center_and_disease(index, rng)
    acq = _acquisition(center, rng)
    acq.update(acquisition or {})
    lesions = LESION_MAKERS[disease](anatomy, rng)
    # FLAIR contrast on the template grid (white matter = 1), then one 2-channel resampling.
    lesion_level = np.float32(center.lesion * rng.uniform(0.85, 1.15))
    brain = anatomy.gm * np.float32(center.gm) + anatomy.wm + anatomy.csf * np.float32(center.csf)
    brain = brain * (1 - lesions) + lesions * lesion_level
    fat = np.float32(center.fat * rng.uniform(0.85, 1.15))
    outside = anatomy.scalp * fat + anatomy.skull * np.float32(0.08)
    flair_t = anatomy.intracranial * brain + (1 - anatomy.intracranial) * outside
    grid, sub = _sample_points(acq, rng, anatomy)
    maps = torch.from_numpy(np.stack([flair_t, lesions]))[None]
    flair, les = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    n_slices = acq["slices"]
    flair = flair.reshape(n_slices, sub, *flair.shape[1:]).mean(1)
    soft = les.reshape(n_slices, sub, *les.shape[1:]).mean(1)
    size = (acq["matrix"], acq["matrix"])
    flair = F.interpolate(flair[None], size=size, mode="bilinear", align_corners=False)[0].numpy()
    soft = F.interpolate(soft[None], size=size, mode="bilinear", align_corners=False)[0].numpy()
    # Bias field, Rician noise, vendor gamma and scale.
    yy, xx = np.meshgrid(np.linspace(-1, 1, flair.shape[1]), np.linspace(-1, 1, flair.shape[2]), indexing="ij")
    a = rng.normal(size=5)
    bias = 1 + center.bias / 2 * np.tanh(0.5 * (a[0] * xx + a[1] * yy + a[2] * xx * yy + a[3] * xx ** 2 + a[4] * yy ** 2))
    zb = 1 + 0.1 * np.linspace(-1, 1, n_slices)[:, None, None] * rng.normal()
    flair = flair * (bias[None] * zb).astype(np.float32)
    sigma = center.noise * rng.uniform(0.7, 1.3)
    noise = rng.standard_normal((2, *flair.shape), dtype=np.float32) * np.float32(sigma)
    flair = np.sqrt((flair + noise[0]) ** 2 + noise[1] ** 2)
    flair = center.scale * flair ** center.gamma
    flair_arr = np.clip(np.round(flair), 0, 32767).astype(np.int16)
    truth = soft >= TRUTH_FRACTION
    careless = rng.random() < CARELESS_FRACTION
    r1 = _rater(soft, rng, careless)
    r2 = _rater(soft, rng, careless)

    spacing = (acq["pixel_mm"], acq["pixel_mm"], acq["slice_spacing_mm"])
    origin = (-(acq["matrix"] - 1) / 2 * acq["pixel_mm"], -(acq["matrix"] - 1) / 2 * acq["pixel_mm"],
              -(n_slices - 1) / 2 * acq["slice_spacing_mm"])

    def to_image(arr: np.ndarray, dtype: type) -> sitk.Image:
        img = sitk.GetImageFromArray(arr.astype(dtype))
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        return img

    info = {"center": center.name, "disease": disease, "scanner": center.scanner,
            "field_t": center.field_t, **acq, "careless_raters": careless}
    return PhantomCase(to_image(flair_arr, np.int16), to_image(truth, np.uint8),
                       to_image(r1, np.uint8), to_image(r2, np.uint8), info)


@writes_output_folder("phantom")
def generate_dataset(out_dir: Path, cases: int, seed: int = 0, overwrite: bool = False,
                     progress: bool = True, start: int = 0, workers: int = 1) -> Path:
    """Write ``cases`` phantoms and ``manifest.csv`` into ``out_dir``; return the manifest path.
    ``workers``: processes (0: one per core); every case is the same whatever their number."""
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.csv"
    refuse_existing_set(manifest, "phantom", overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = map_in_chunks(_write_cases, list(range(start, start + cases)), (out_dir, seed), workers, "phantoms",
                         "case", progress, min_items_per_worker=CASES_PER_WORKER)
    return write_manifest(manifest, rows, MANIFEST_FIELDS)


#: fewest cases worth a worker process (a phantom takes ~1-3 s, a worker ~2 s to start)
CASES_PER_WORKER = 3


def _write_cases(task: tuple[list[int], Path, int]) -> list[dict]:
    """Generate and write the phantoms ``indices`` (one worker's share); their manifest rows."""
    indices, out_dir, seed = task
    rows = []
    for i in indices:
        case = make_case(i, seed)
        name = f"case{i:04d}"
        paths = write_case(out_dir, name, {"flair": case.flair, "rater1": case.rater1,
                                           "rater2": case.rater2, "label": case.truth})
        info = case.info
        rows.append({"case": name, "patient": name, **{k: info[k] for k in MANIFEST_FIELDS if k in info},
                     **paths})
    return rows
