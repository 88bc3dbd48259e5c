"""Which brain mask may judge "lesion outside the brain"? (issue 10; numbers in the README)

The three skull-stripped Lesjak 2017 FLAIRs have a known brain (their non-zero voxels). Each is
re-embedded with a random pose (rotation up to 12 degrees, shift up to 15 mm) into a larger
240x240x190 mm field of view, once as it is and once with a synthetic 2 mm CSF rim, 5 mm dark
skull and 6 mm bright scalp around the brain (a stand-in for a whole head). Candidates:

- ``template``: deepwml's mask (MNI template registered with the metric restricted to the
  template brain + 6 mm), what ``deepwml sanity`` uses;
- ``template-unmasked``: the same registration sampling the whole field of view;
- ``morphological``: a FLAIR-only mask (threshold at half the head median, 3-voxel erosion,
  largest component, dilation, hole filling, on a 2 mm grid).

Only the brain outline is measured here; no lesion label and no model is involved.

    .venv/bin/python benchmarks/brain_mask_study.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from deepwml.evaluation.brain_mask import brain_mask
from deepwml.evaluation.realdata import default_data_root, lesjak2017_cases


def reembed(image: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    pose = sitk.Euler3DTransform()
    pose.SetCenter([0.0, -18.0, 10.0])
    pose.SetRotation(*np.deg2rad(rng.uniform(-12, 12, 3)))
    pose.SetTranslation(rng.uniform(-15, 15, 3).tolist())
    grid = sitk.Image([240, 240, 190], sitk.sitkFloat32)
    grid.SetOrigin((np.array([-120.0, -140.0, -85.0]) + rng.uniform(-10, 10, 3)).tolist())
    return sitk.Resample(image, grid, pose, sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def with_synthetic_head(image: sitk.Image, brain: np.ndarray, rng: np.random.Generator) -> sitk.Image:
    arr = sitk.GetArrayFromImage(image)
    distance = ndimage.distance_transform_edt(~brain)
    median = float(np.median(arr[brain]))
    out = arr.copy()
    out[(distance > 0) & (distance <= 2)] = 0.15 * median
    out[(distance > 2) & (distance <= 7)] = 0.05 * median
    out[(distance > 7) & (distance <= 13)] = rng.uniform(1.2, 1.8) * median
    out = np.abs(ndimage.gaussian_filter(out, 0.7) + rng.normal(0, 0.02 * median, out.shape))
    head = sitk.GetImageFromArray(out.astype(np.float32))
    head.CopyInformation(image)
    return head


def morphological_mask(image: sitk.Image) -> np.ndarray:
    spacing = 2.0
    size = [int(round(s * n / spacing)) for s, n in zip(image.GetSpacing(), image.GetSize())]
    coarse = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing] * 3,
                           image.GetDirection(), 0.0, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(coarse)
    head = arr > 0.1 * np.percentile(arr[arr > 0], 99.5)
    median = np.median(arr[head])
    core = ndimage.binary_erosion((arr > 0.5 * median) & (arr < 2.5 * median), iterations=3)
    labels, n = ndimage.label(core)
    if n == 0:
        return np.zeros(sitk.GetArrayViewFromImage(image).shape, bool)
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    mask = ndimage.binary_fill_holes(ndimage.binary_dilation(largest, iterations=3))
    mask_img = sitk.GetImageFromArray(mask.astype(np.float32))
    mask_img.CopyInformation(coarse)
    return sitk.GetArrayFromImage(sitk.Resample(mask_img, image, sitk.Transform(), sitk.sitkLinear, 0.0)) >= 0.5


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| case | field of view | template (deepwml) | template, unmasked metric | morphological | brain ml | template s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for case in lesjak2017_cases(args.data):
        moved = reembed(sitk.ReadImage(str(case.flair), sitk.sitkFloat32), rng)
        brain = ndimage.binary_fill_holes(sitk.GetArrayViewFromImage(moved) != 0)
        for kind, image in (("skull-stripped", moved), ("synthetic skull+scalp", with_synthetic_head(moved, brain, rng))):
            t0 = time.perf_counter()
            ours = sitk.GetArrayFromImage(brain_mask(image)) > 0
            seconds = time.perf_counter() - t0
            unmasked = sitk.GetArrayFromImage(brain_mask(image, margin_mm=None)) > 0
            print(f"| {case.case} | {kind} | {dice(brain, ours):.3f} | {dice(brain, unmasked):.3f} | "
                  f"{dice(brain, morphological_mask(image)):.3f} | {brain.sum() / 1000:.0f} | {seconds:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
