"""A brain mask for judging predictions, independent of the model being judged.

Why: "how much of the predicted lesion lies outside the brain" needs a brain mask, and an
instrument must not depend on what it measures, so the mask is not a second output of the
network. We register the MNI ICBM152 2009a template (T1, brain-extracted, shipped inside
nilearn's wheel: offline) to the FLAIR with an affine transform and warp nilearn's MNI brain
mask onto the FLAIR's grid.

Chosen by numbers (``benchmarks/brain_mask_study.py``, README "Accuracy on real scans"):
on the three skull-stripped Lesjak 2017 scans re-embedded with a random pose into a larger
field of view, this mask's Dice against the known brain (their non-zero voxels) was
0.95-0.96, with or without a synthetic skull and scalp added around them; a morphological
FLAIR-only mask (threshold, erosion, largest component) scored 0.78-0.95. Registering
without restricting the metric to the template's brain (+6 mm) stretched the brain over the
scalp of whole-head scans (2.5-3.6 l masks, Dice 0.68 with a scalp).

Method: FLAIR resampled to 3 mm isotropic and clipped to its 1st-99.5th percentiles; Mattes
mutual information (32 bins, 25 % random samples, fixed seed), sampled only where the
template's brain mask dilated by 6 mm lands; similarity then affine transform, regular step
gradient descent, two levels; initialised by the images' geometric centres. A few seconds
on 2 CPU cores.

The registration runs on one thread (:data:`REGISTRATION_THREADS`): ITK's multithreaded Mattes
metric sums per-thread partial results in an order that varies from run to run, so the same scan
gave brain masks of 1254.4 and 1252.7 ml in two runs (Lesjak 2016 patient 20 study 2, 2-core CPU),
and the "outside the brain" figure moved in the third decimal. One thread gave 1247.9 ml twice,
for ~1-2 s more per scan; an instrument should read the same twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

#: Registration grid (mm): coarse is enough for a brain outline and keeps it to seconds.
REGISTRATION_MM = 3.0
#: The metric looks only this far (mm) beyond the template's brain (see the module docstring).
MOVING_MASK_MARGIN_MM = 6
SAMPLING_FRACTION = 0.25
SEED = 1
#: Threads of the registration itself (the resampling around it is per voxel, deterministic on any
#: number): one, so the metric sums in one order and the mask is reproducible (module docstring).
#: ``ImageRegistrationMethod.SetNumberOfThreads(1)`` alone is not enough (its metric and
#: interpolator take ITK's global default; measured: three different masks in three runs), so the
#: global default is lowered for the registration and restored after it.
REGISTRATION_THREADS = 1


@contextlib.contextmanager
def _registration_threads() -> Iterator[None]:
    """ITK's global default thread count at :data:`REGISTRATION_THREADS` for the ``with`` block."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(REGISTRATION_THREADS)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _nifti_to_sitk(nifti, dtype: type = np.float32) -> sitk.Image:
    """A nibabel image (RAS affine) as a SimpleITK image (LPS geometry)."""
    arr = np.asarray(nifti.dataobj).astype(dtype)
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    matrix = ras_to_lps @ nifti.affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin((ras_to_lps @ nifti.affine[:3, 3]).tolist())
    image.SetDirection((matrix / spacing).flatten().tolist())
    return image


@functools.lru_cache(maxsize=1)
def mni_template() -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(T1 at 2 mm, brain mask at 2 mm, brain mask at 1 mm) of MNI ICBM152 2009a, from nilearn."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t1 = _nifti_to_sitk(load_mni152_template(resolution=2))
    mask2 = _nifti_to_sitk(load_mni152_brain_mask(resolution=2), np.uint8)
    mask1 = _nifti_to_sitk(load_mni152_brain_mask(resolution=1), np.uint8)
    return t1, mask2, mask1


def _registration_image(flair: sitk.Image) -> sitk.Image:
    """The FLAIR on an isotropic coarse grid, clipped to robust percentiles (float32)."""
    spacing, size = flair.GetSpacing(), flair.GetSize()
    new_size = [max(8, int(round(s * n / REGISTRATION_MM))) for s, n in zip(spacing, size)]
    coarse = sitk.Resample(sitk.Cast(flair, sitk.sitkFloat32), new_size, sitk.Transform(), sitk.sitkLinear,
                           flair.GetOrigin(), [REGISTRATION_MM] * 3, flair.GetDirection(), 0.0, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(coarse)
    lo, hi = np.percentile(arr, [1.0, 99.5])
    return sitk.Clamp(coarse, sitk.sitkFloat32, float(lo), float(hi))


def register_template(flair: sitk.Image, margin_mm: float | None = MOVING_MASK_MARGIN_MM) -> sitk.AffineTransform:
    """Affine transform mapping FLAIR physical points to MNI template points.

    ``margin_mm`` None samples the metric everywhere (only for the comparison in
    ``benchmarks/brain_mask_study.py``: it fails on whole heads)."""
    t1, mask2, _ = mni_template()
    fixed = _registration_image(flair)
    similarity = sitk.CenteredTransformInitializer(fixed, t1, sitk.Similarity3DTransform(),
                                                   sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(SAMPLING_FRACTION, SEED)
    if margin_mm is not None:
        margin = int(round(margin_mm / t1.GetSpacing()[0]))
        reg.SetMetricMovingMask(sitk.BinaryDilate(sitk.Cast(mask2 > 0, sitk.sitkUInt8), [margin] * 3))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 200, relaxationFactor=0.7)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SetInitialTransform(similarity, inPlace=True)
    with _registration_threads():
        reg.Execute(fixed, t1)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(similarity.GetCenter())
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    reg.SetShrinkFactorsPerLevel([1])
    reg.SetSmoothingSigmasPerLevel([1.0])
    reg.SetInitialTransform(affine, inPlace=True)
    with _registration_threads():
        reg.Execute(fixed, t1)
    log.debug("template registration: metric %.4f after %d iterations", reg.GetMetricValue(),
              reg.GetOptimizerIteration())
    return affine


def brain_mask(flair: sitk.Image, margin_mm: float | None = MOVING_MASK_MARGIN_MM) -> sitk.Image:
    """A uint8 brain mask on exactly ``flair``'s voxel grid (see the module docstring)."""
    t0 = time.perf_counter()
    transform = register_template(flair, margin_mm)
    _, _, mask1 = mni_template()
    warped = sitk.Resample(sitk.Cast(mask1, sitk.sitkFloat32), flair, transform, sitk.sitkLinear, 0.0,
                           sitk.sitkFloat32)
    mask = sitk.Cast(warped >= 0.5, sitk.sitkUInt8)
    mask.CopyInformation(flair)
    log.info("brain mask by template registration in %.1f s", time.perf_counter() - t0)
    return mask


def outside_mask(brain: sitk.Image, tolerance_mm: float) -> np.ndarray:
    """Voxels farther than ``tolerance_mm`` (physical, any spacing) from ``brain``, as booleans."""
    distance = sitk.SignedMaurerDistanceMap(brain, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.GetArrayFromImage(distance) > tolerance_mm
