"""Lesions for a synthetic case: real MS lesion masks brought into the subject, or patterns.

Real masks: 27 MS patients' 3-rater consensus masks in MNI space (Lesjak et al. 2018, CC-BY;
``../shared/data/lesjak2017-ms-lesion-masks-mni``). Each subject gets one affine registration
of the MNI ICBM152 white-matter map (shipped in nilearn's wheel) to its own cerebral white
matter (mean squares on smoothed maps, moments initialisation, 4 and 2 mm levels): a few
seconds, and it puts periventricular lesions at the ventricles and juxtacortical ones under
the cortex of *this* brain. The 20 label maps' registrations are stored in
``registrations.json`` beside this file (see :func:`mni_to_subject`). Lesion voxels are then kept only where white matter (or brain
stem) is, so an imperfect alignment cannot paint lesion into a ventricle or the cortex.
Patterns: the phantom's MS / NMOSD / CSVD makers, drawn on the subject's own maps.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..phantom.anatomy import _template_dir
from ..phantom.generator import TRUTH_FRACTION
from ..phantom.lesions import LESION_MAKERS
from .anatomy import SHARED_DATA, SubjectAnatomy

log = logging.getLogger(__name__)

LESION_MASK_DIR = SHARED_DATA / "lesjak2017-ms-lesion-masks-mni"


def lesion_mask_paths(folder: Path = LESION_MASK_DIR) -> list[Path]:
    paths = sorted(Path(folder).glob("patient*_lesions_mni.nii.gz"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no MNI lesion masks (patient*_lesions_mni.nii.gz)")
    return paths


@functools.lru_cache(maxsize=1)
def _mni_white_matter() -> sitk.Image:
    path = _template_dir() / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
    return sitk.SmoothingRecursiveGaussian(sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32) / 255.0, 1.0)


_REGISTRATIONS: dict[str, sitk.Transform] = {}

#: MNI -> subject registrations of the shared label maps, computed once (2 threads) and shipped.
#: ITK sums its metric per thread, so the same registration run with other thread counts lands
#: ~1e-10 apart: warped mask edges, and so a seed's synthetic cases, would differ between a
#: 2-core laptop and a 16-core GPU server. Stored, they are the same everywhere, and no MNI
#: template or registration time is needed to synthesise.
REGISTRATIONS_FILE = Path(__file__).with_name("registrations.json")


def mni_to_subject(subject: SubjectAnatomy) -> sitk.Transform:
    """Affine map from subject space to MNI (ITK's fixed->moving), by white-matter matching.

    The stored one when ``registrations.json`` has this subject for this very label map
    (SHA-256 of its labels and grid), else registered here (a few seconds, once per subject and process)."""
    if subject.name not in _REGISTRATIONS:
        _REGISTRATIONS[subject.name] = stored_registration(subject) or _register(subject)
    return _REGISTRATIONS[subject.name]


@functools.lru_cache(maxsize=1)
def _stored_registrations() -> dict:
    if not REGISTRATIONS_FILE.is_file():
        return {}
    return json.loads(REGISTRATIONS_FILE.read_text(encoding="utf-8"))["subjects"]


def stored_registration(subject: SubjectAnatomy) -> sitk.Transform | None:
    """The shipped registration of ``subject``, or None (not stored, or other labels or grid)."""
    entry = _stored_registrations().get(subject.name)
    if entry is None:
        return None
    if entry["labels_sha256"] != subject.labels_sha256:
        log.warning("%s: label map differs from the one registered in %s; registering anew",
                    subject.name, REGISTRATIONS_FILE.name)
        return None
    return transform_from_record(entry)


def registration_record(subject: SubjectAnatomy, transform: sitk.Transform) -> dict:
    """A registration as JSON (exact: floats round-trip), for ``registrations.json``."""
    affine = sitk.AffineTransform(sitk.CompositeTransform(transform).GetNthTransform(0))
    return {"labels_sha256": subject.labels_sha256, "affine_parameters": list(affine.GetParameters()),
            "affine_fixed_parameters": list(affine.GetFixedParameters())}


def transform_from_record(entry: dict) -> sitk.Transform:
    """The transform :func:`_register` returned (a composite of one affine), from its record."""
    affine = sitk.AffineTransform(3)
    affine.SetFixedParameters(entry["affine_fixed_parameters"])
    affine.SetParameters(entry["affine_parameters"])
    return sitk.CompositeTransform([affine])


def _register(subject: SubjectAnatomy) -> sitk.Transform:
    wm = np.isin(subject.labels, (2, 41)).astype(np.float32)
    fixed = sitk.GetImageFromArray(wm)
    fixed.CopyInformation(subject.image)
    fixed = sitk.SmoothingRecursiveGaussian(fixed, 1.0)
    moving = _mni_white_matter()
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=150,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2, 1])
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(fixed, moving)
    log.debug("registered MNI to %s: metric %.4f", subject.name, reg.GetMetricValue())
    return transform


#: Synthesis v10 moves every real mask by a random rigid motion in MNI space (up to this many
#: millimetres along each axis and degrees about each axis, around the brain's centre) before it
#: is brought into the subject. Why: at their registered places the 27 masks put a lesion in the
#: corona radiata above the ventricles in 15-26 % of the cases, and networks trained on them mark
#: white matter there that is no brighter than white matter (experiment 34 in docs/EXPERIMENTS.md); moved,
#: a lesion's place says little, and only its brightness tells lesion from white matter.
MASK_SHIFT_MM = 25.0
MASK_ROTATION_DEG = 20.0
#: centre of the rotations: MNI (0, -18, 18) mm RAS, in ITK's LPS coordinates
MNI_BRAIN_CENTRE_LPS = (0.0, 18.0, 18.0)


def random_displacement(rng: np.random.Generator) -> sitk.Euler3DTransform:
    """A random rigid motion of MNI space (:data:`MASK_SHIFT_MM`, :data:`MASK_ROTATION_DEG`)."""
    motion = sitk.Euler3DTransform()
    motion.SetCenter(MNI_BRAIN_CENTRE_LPS)
    rx, ry, rz = np.deg2rad(rng.uniform(-MASK_ROTATION_DEG, MASK_ROTATION_DEG, 3))
    motion.SetRotation(float(rx), float(ry), float(rz))
    motion.SetTranslation(tuple(float(v) for v in rng.uniform(-MASK_SHIFT_MM, MASK_SHIFT_MM, 3)))
    return motion


def real_lesions(subject: SubjectAnatomy, mask_path: Path, rng: np.random.Generator,
                 displacement: sitk.Transform | None = None) -> np.ndarray:
    """A real MS lesion mask in the subject's grid, as a soft map restricted to white matter;
    ``displacement`` (an MNI -> MNI transform, e.g. :func:`random_displacement`) moves the mask first."""
    mask = sitk.Cast(sitk.ReadImage(str(mask_path)), sitk.sitkFloat32)
    transform = mni_to_subject(subject)
    if displacement is not None:  # subject -> MNI, then the motion (ITK applies the last transform first)
        transform = sitk.CompositeTransform([displacement, transform])
    if rng.random() < 0.5:  # mirror left-right in MNI space: twice the shapes
        flip = sitk.AffineTransform(3)
        flip.SetMatrix((-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
        # ITK applies a composite's last transform first: subject -> MNI, then the mirror (x = 0
        # is MNI's midline)
        transform = sitk.CompositeTransform([flip, transform])
    warped = sitk.Resample(mask, subject.image, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    soft = sitk.GetArrayFromImage(warped)
    return np.clip(soft * subject.lesion_allowed_soft, 0.0, 1.0).astype(np.float32)


def pattern_lesions(subject: SubjectAnatomy, disease: str, rng: np.random.Generator) -> np.ndarray:
    """The MS / NMOSD / CSVD pattern makers on the subject's own white matter and ventricles."""
    soft = LESION_MAKERS[disease](subject.tissue, rng)
    return (soft * subject.lesion_allowed).astype(np.float32)


#: How often lesions grow confluent depends on the synthesis version (generator.VERSIONS).
#: v3 grows only loads up to this (ml at 1 mm, truth fraction): v2 grew every drawn load, and
#: 4 % of its cases reached 170-310 ml -- nearly all white matter labelled, at contrasts so
#: faint that the picture taught nothing a real scan shows.
CONFLUENT_MAX_LOAD_ML = 40.0
CONFLUENT_SIGMA_MM = (1.0, 2.5)
CONFLUENT_GAIN = (2.0, 4.0)


def lesion_load_ml(lesions: np.ndarray) -> float:
    """Lesion volume (ml) of a soft 1 mm map at the truth's fraction."""
    return float(np.count_nonzero(lesions >= TRUTH_FRACTION)) / 1000.0


def grow_confluent(lesions: np.ndarray, subject: SubjectAnatomy, rng: np.random.Generator) -> np.ndarray:
    """Lesions smoothed and amplified, so that neighbours merge and edges move outwards by a
    few millimetres; still restricted to where lesions may lie. Voxels are 1 mm."""
    sigma = rng.uniform(*CONFLUENT_SIGMA_MM)
    grown = np.clip(ndimage.gaussian_filter(lesions, sigma) * rng.uniform(*CONFLUENT_GAIN), 0.0, 1.0)
    return (np.maximum(lesions, grown) * subject.lesion_allowed_soft).astype(np.float32)
