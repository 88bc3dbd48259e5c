"""Whole-head anatomy of real subjects: SynthSeg's 20 label maps, cropped to the head.

Each label map (1 mm, 256^3, FreeSurfer labels < 500 for brain structures, unnamed classes
>= 500 for skull, scalp, fat, eyes, muscles...) is one real person's anatomy: real cortical
folding, sulcal CSF, ventricles of every size, and what routine FLAIR shows around the brain.
From it we derive what lesion placement needs (white matter, ventricles and the distance to
them, juxtacortical and deep white matter) as a :class:`deepwml.phantom.anatomy.Anatomy`, so
the phantom's MS/NMOSD/CSVD pattern makers work on real anatomy unchanged.

Arrays are SimpleITK-ordered ``[k, j, i]``; ``image`` keeps the physical geometry (LPS), so
MNI-space lesion masks are brought in by resampling through a registration (see lesions.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..phantom.anatomy import Anatomy
from ..shared_data import default_data_root

log = logging.getLogger(__name__)

#: Where the shared real data live (deepwml.shared_data: ../shared/data or $DEEPWML_SHARED_DATA).
SHARED_DATA = default_data_root()
LABEL_MAP_DIR = SHARED_DATA / "synthseg-whole-head-label-maps"

CEREBRAL_WM = (2, 41)
CEREBELLAR_WM = (7, 46)
CORTEX = (3, 42)
CEREBELLAR_CORTEX = (8, 47)
LATERAL_VENTRICLES = (4, 43)
#: FLAIR-suppressed fluid: ventricles, CSF, 5th ventricle.
FLUID = (4, 5, 14, 15, 24, 43, 44, 72)
#: FreeSurfer's Left-/Right-Lesion labels (25, 57) in the SynthSeg maps: 0.3-9 ml per subject,
#: bordering the cerebral white matter (55-70 % of their border) and the lateral ventricles
#: (30-40 %): the subjects' own periventricular white-matter hypointensities on T1. Ordered as
#: CEREBRAL_WM (left, right).
SUBJECT_LESION_LABELS = (25, 57)
#: Hippocampus and amygdala, left then right: physiologically bright on normal FLAIR (appearance v12).
MESIAL_TEMPORAL = ((17, 18), (53, 54))
DEEP_GREY = (10, 11, 12, 13, 16, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60)
#: Where a white-matter hyperintensity can lie: cerebral and cerebellar white matter, the subjects' own
#: periventricular hypointensity labels (white matter on FLAIR), brain stem and ventral diencephalon (tracts);
#: not cortex, deep grey nuclei, hippocampus or amygdala (the white-matter truth, ``white_matter.nii.gz``).
WHITE_MATTER = CEREBRAL_WM + CEREBELLAR_WM + SUBJECT_LESION_LABELS + (16, 28, 60)
#: A voxel with one of these labels is brain (for the brain mask; extracerebral CSF excluded).
BRAIN = CEREBRAL_WM + CEREBELLAR_WM + CORTEX + CEREBELLAR_CORTEX + DEEP_GREY + (4, 5, 14, 15, 43, 44)


def label_map_paths(folder: Path = LABEL_MAP_DIR) -> list[Path]:
    paths = sorted(Path(folder).glob("training_seg_*.nii.gz"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no SynthSeg label maps (training_seg_*.nii.gz)")
    return paths


@dataclass(frozen=True)
class SubjectAnatomy:
    """One subject's labels on a cropped 1 mm grid, with lesion-placement maps."""

    name: str
    image: sitk.Image  # labels (int16) with physical geometry
    labels: np.ndarray  # [k, j, i] int16
    tissue: Anatomy  # wm/gm/ventricle maps for the lesion pattern makers
    lesion_allowed: np.ndarray  # bool: white matter (and brain stem) where lesions may lie
    lesion_allowed_soft: np.ndarray  # the same, smoothed (0.6 mm): weights warped real masks
    brain_centre_lps: np.ndarray  # mm
    #: SHA-256 of ``labels`` and the grid: what a registration depends on, so stored registrations
    #: are checked against it (not the file's bytes: a re-compressed copy is the same map)
    labels_sha256: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape  # type: ignore[return-value]


def _isin(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    return np.isin(labels, np.asarray(values, dtype=labels.dtype))


def _crop_to_head(image: sitk.Image, margin: int = 4) -> sitk.Image:
    arr = sitk.GetArrayViewFromImage(image)
    nz = np.argwhere(arr > 0)
    lo = np.maximum(nz.min(0) - margin, 0)
    hi = np.minimum(nz.max(0) + 1 + margin, arr.shape)
    size = [int(v) for v in (hi - lo)[::-1]]
    return sitk.RegionOfInterest(image, size, [int(v) for v in lo[::-1]])


@functools.lru_cache(maxsize=2)
def load_subject(path: Path) -> SubjectAnatomy:
    """Read and prepare one label map (a few seconds; cached for the subject's cases)."""
    image = sitk.Cast(_crop_to_head(sitk.ReadImage(str(path))), sitk.sitkInt16)
    labels = sitk.GetArrayFromImage(image)
    wm = _isin(labels, CEREBRAL_WM)
    gm = _isin(labels, CORTEX)
    ventricles = _isin(labels, LATERAL_VENTRICLES)
    distance = ndimage.distance_transform_edt(~ventricles).astype(np.float32)
    smooth = ndimage.gaussian_filter(distance, 1.5)
    grad = np.stack(np.gradient(smooth)).astype(np.float32)
    grad /= np.linalg.norm(grad, axis=0, keepdims=True) + 1e-6
    near_cortex = ndimage.binary_dilation(gm, iterations=2)
    juxta = wm & near_cortex & (distance > 10)
    deep_wm = ndimage.binary_erosion(wm, iterations=2) & (distance > 4)
    white = wm | _isin(labels, CEREBELLAR_WM) | _isin(labels, (16,))
    allowed = ndimage.binary_dilation(white, iterations=1) & ~_isin(labels, FLUID) & (labels > 0) & (labels < 500)
    brain = _isin(labels, BRAIN)
    idx = np.argwhere(brain).mean(0)[::-1]  # (i, j, k)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx]))
    zeros = np.zeros(1, np.float32)
    # Anatomy.shape reads t1: a zero-strided view of the grid's shape costs no memory
    tissue = Anatomy(t1=np.broadcast_to(np.float32(0), labels.shape), gm=gm.astype(np.float32), wm=wm.astype(np.float32), csf=zeros,
                     intracranial=zeros, ventricle_distance_mm=distance, ventricle_gradient=grad,
                     juxtacortical=juxta, deep_wm=deep_wm, ventricles=ventricles,
                     origin_ras=np.zeros(3), skull=zeros, scalp=zeros)
    log.debug("anatomy %s: %s voxels", path.name, labels.shape)
    allowed_soft = ndimage.gaussian_filter(allowed.astype(np.float32), 0.6)
    return SubjectAnatomy(path.name.split(".")[0], image, labels, tissue, allowed, allowed_soft, centre,
                          labels_sha256(image, labels))


def labels_sha256(image: sitk.Image, labels: np.ndarray) -> str:
    """SHA-256 of a label map's values and grid (origin, spacing, direction)."""
    digest = hashlib.sha256(np.ascontiguousarray(labels).tobytes())
    digest.update(repr((image.GetOrigin(), image.GetSpacing(), image.GetDirection(), labels.dtype.str,
                        labels.shape)).encode())
    return digest.hexdigest()
