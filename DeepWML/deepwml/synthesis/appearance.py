"""FLAIR-like, randomised appearance of a label map (the SynthSeg idea, FLAIR-specific).

Every label gets its own intensity, drawn per case from a wide range around what FLAIR
shows (white matter = 1): fluid suppressed (dark), cortex and deep grey matter brighter than
white matter, scalp fat bright, bone dark, everything else outside the brain anywhere from
dark to bright. The network then cannot rely on one contrast and must learn that a lesion
is a bright spot *in white matter*: bright cortex, fat, eyes and flow artefacts are not.
Normal FLAIR bright spots that radiologists do not call lesions are drawn too (thin
periventricular lining, choroid plexus, flow artefacts in the CSF spaces) and are never
labelled. All ranges live in :data:`RANGES`, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from ..phantom.generator import TRUTH_FRACTION
from ..phantom.lesions import _draw_ellipsoid, _random_axes
from .anatomy import (CEREBELLAR_CORTEX, CEREBELLAR_WM, CEREBRAL_WM, CORTEX, DEEP_GREY, FLUID,
                      LATERAL_VENTRICLES, MESIAL_TEMPORAL, SUBJECT_LESION_LABELS, SubjectAnatomy)
from .normal_tracts import normal_tracts

GREY_MATTER = CORTEX + CEREBELLAR_CORTEX + DEEP_GREY


@dataclass(frozen=True)
class Ranges:
    """Uniform ranges (low, high) of every random appearance setting, relative to WM = 1."""

    cortex: tuple[float, float] = (1.05, 1.55)
    deep_grey: tuple[float, float] = (0.95, 1.4)
    fluid: tuple[float, float] = (0.02, 0.4)
    scalp: tuple[float, float] = (0.7, 2.4)  # outer soft tissue: fat, skin
    bone: tuple[float, float] = (0.0, 0.3)
    other_outside: tuple[float, float] = (0.0, 1.9)  # muscles, eyes, marrow, sinuses, unknown
    other_brain: tuple[float, float] = (0.4, 1.5)  # vessels, chiasm, small labels
    #: lesion brightness over white matter, and at least this much over the case's cortex.
    #: Synthesis v2: clinical 2D FLAIR (1.5T and 3T) shows WMH at roughly 1.2-2x normal white
    #: matter, often barely brighter than cortex; v1's 1.35-2.2x (and >= cortex) taught the
    #: network that only very bright spots are lesions and it under-segmented confluent WMH.
    #: One case in five has faint lesions.
    lesion_over_wm: tuple[float, float] = (1.25, 2.0)
    lesion_over_cortex: tuple[float, float] = (0.95, 1.25)
    faint_lesion_over_wm: tuple[float, float] = (1.15, 1.35)
    faint_lesion_probability: float = 0.2
    texture_std: tuple[float, float] = (0.0, 0.08)  # per-voxel tissue texture
    lining_gain: tuple[float, float] = (1.0, 1.4)  # periventricular lining over white matter
    choroid: tuple[float, float] = (0.5, 1.4)
    flow: tuple[float, float] = (0.6, 2.0)
    flow_probability: float = 0.35
    blur_mm: tuple[float, float] = (0.3, 0.7)  # partial volume at tissue borders
    #: lesion fraction painted as fully lesion / as no lesion: the visible edge then sits at
    #: the truth's 0.4 fraction, so what is drawn bright is what is labelled (a soft, warped
    #: mask painted linearly left small lesions barely brighter than white matter)
    paint_ramp: tuple[float, float] = (0.15, 0.6)
    #: Synthesis v3: paint the label maps' own periventricular lesion labels (see
    #: anatomy.SUBJECT_LESION_LABELS) as white matter. v1/v2 drew them as "other brain" (0.4-1.5x
    #: WM): in a quarter of the cases an unlabelled bright periventricular band, teaching the
    #: network that exactly what raters call periventricular WMH is not lesion.
    subject_lesions_as_wm: bool = False
    #: Synthesis v5: in a case with lesions, grey matter (cortex, deep grey, hippocampus,
    #: cerebellar cortex) is at most this fraction of the lesions' contrast over white matter.
    #: WMH are hyperintense against grey matter too -- that is why raters see them; v4 let faint
    #: lesions sit below a bright cortex or deep grey, and its network marked bright grey matter
    #: next to white matter (insula, medial temporal lobe, the external capsule's neighbours).
    #: None (v1-v4): grey matter is drawn regardless of the lesions.
    grey_below_lesion: tuple[float, float] | None = None
    #: Synthesis v7: lesions brightest in their core and fainter towards their edge. The lesion's
    #: contrast over white matter at its edge (where the truth ends) is this fraction of the
    #: case's full contrast, rising to the full contrast ``core_depth_mm`` inside. Why: real WMH,
    #: confluent ones above all, are not uniformly bright; intensity falls from a bright core to
    #: a faint rim that raters include (the WMH "penumbra", Maillard et al., Stroke 2011), while
    #: v1-v6 painted each case's lesions at one level +-15 %, and a network trained on them
    #: marks the bright cores of confluent WMH and leaves their faint surroundings.
    #: None (v1-v6): one level throughout.
    rim_contrast: tuple[float, float] | None = None
    core_depth_mm: tuple[float, float] = (1.5, 4.0)
    #: Synthesis v8: in this share of cases (with or without lesions) the cerebral white matter is
    #: faintly, diffusely and unevenly brighter in places, and that is never labelled. Why: real
    #: FLAIR shows it -- diffusely abnormal white matter in MS (a few to ~15 % over normal white
    #: matter, ill-defined, often periventricular), the upper centrum semiovale brighter than the
    #: deep white matter, thick slices mixing bright cortex into the vertex -- and raters draw only
    #: the focal lesions. v1-v7 white matter is uniform up to voxel texture, so nothing taught the
    #: network to leave such brightening alone; a model trained from scratch on v4-v7 marked it on
    #: real 5 mm slabs (experiment 30, seen on a real overlay -- the idea comes from there).
    #: 0 (v1-v7): never, and no random number is drawn for it.
    diffuse_wm_probability: float = 0.0
    #: peak brightening over the white matter (the field's maximum; most of it is fainter)
    diffuse_wm_gain: tuple[float, float] = (0.04, 0.16)
    #: size of the brightened patches (correlation length of the smooth field)
    diffuse_wm_scale_mm: tuple[float, float] = (8.0, 24.0)
    #: where the brightening gathers: anywhere, towards the top of the brain, around the ventricles
    diffuse_wm_layouts: tuple[tuple[str, float], ...] = (("patchy", 0.4), ("superior", 0.35),
                                                          ("periventricular", 0.25))
    #: Synthesis v9: a lesion voxel is labelled only where the painted image is at least this many
    #: times what it would be without the lesion (1 mm, before blur and acquisition). Why: v4's
    #: faint lesions start at 1.1x white matter, v7's rims keep 30-75 % of that contrast and the paint
    #: ramp fades the truth's edge, so many labelled voxels were 1.02-1.05x their surroundings --
    #: invisible under texture and noise. Labels a rater could not see teach the network to mark by
    #: location: experiment 30 marked normal-looking white matter (1.02-1.12x) at the training
    #: masks' commonest lesion sites on real 5 mm scans (docs/EXPERIMENTS.md). None (v1-v8): label the mask as drawn.
    min_visible_contrast: float | None = None
    #: Synthesis v11: in this share of cases the corticospinal tracts and the peritrigonal white
    #: matter are faintly brighter on both sides, never labelled (see :mod:`.normal_tracts`: normal
    #: FLAIR shows both; networks trained from scratch marked such faint symmetric regions on real
    #: scans). Drawn from the generator ``paint_with_truth`` is given for it. 0 (v1-v10): never.
    normal_tracts_probability: float = 0.0
    #: peak brightening of a tract over the white matter
    normal_tract_gain: tuple[float, float] = (0.03, 0.12)
    #: Synthesis v12: in this share of cases the hippocampus and amygdala are brighter than the
    #: neocortex (the case's cortex level times :attr:`mesial_temporal_over_cortex`), never labelled.
    #: Why: on normal FLAIR the mesial temporal grey matter is physiologically hyperintense to the
    #: cortex and raters leave it alone, while v1-v11 drew it as deep grey (one level with thalamus and
    #: putamen) and the lesions the network learnt sit from 0.85x cortex up; 1.7.0's largest marks on
    #: the near-healthy real head lie there (docs/EXPERIMENTS.md, experiment 41: the idea comes from there, the range
    #: from reasoning). Drawn from the generator ``paint_with_truth`` is given for it. 0 (v1-v11): never.
    mesial_temporal_probability: float = 0.0
    mesial_temporal_over_cortex: tuple[float, float] = (1.0, 1.25)


RANGES_V2 = Ranges()
#: Synthesis v3 (default): v2's ranges, the subjects' own lesion labels painted as white matter.
RANGES_V3 = Ranges(subject_lesions_as_wm=True)
#: Synthesis v4: v3 with lesion contrast spread evenly over what clinical FLAIR shows.
#: In v3 a lesion was at least 0.95x the case's cortex, so with cortex drawn at 1.05-1.55x
#: white matter most lesions came out 1.5-2x: the network learned "a lesion is much brighter
#: than cortex" and met real WMH, typically 1.2-1.6x normal white matter on 3 T 3D and 1.5 T 2D
#: FLAIR and often no brighter than cortex (the DeepWML paper's third failure type: "subtle
#: intensity difference in WM lesion against their surrounding tissues"), with low confidence.
#: v4 draws the lesion from 1.15-1.9x white matter and lets it sit from 0.85x cortex up, and one
#: case in three has faint lesions (1.1-1.3x): location and shape must carry the decision.
RANGES_V4 = Ranges(subject_lesions_as_wm=True, lesion_over_wm=(1.15, 1.9), lesion_over_cortex=(0.85, 1.15),
                   faint_lesion_over_wm=(1.1, 1.3), faint_lesion_probability=0.3)
#: Synthesis v5: v4, and in cases with lesions grey matter stays below them
#: (see Ranges.grey_below_lesion); healthy cases keep v4's bright grey matter.
RANGES_V5 = replace(RANGES_V4, grey_below_lesion=(0.3, 0.9))
#: Synthesis v7: v4 with faint rims and bright cores (see Ranges.rim_contrast).
RANGES_V7 = replace(RANGES_V4, rim_contrast=(0.3, 0.75))
#: Synthesis v8: v7 with faint, diffuse, unlabelled white-matter brightening (see Ranges.diffuse_wm_probability).
RANGES_V8 = replace(RANGES_V7, diffuse_wm_probability=0.7)
#: Synthesis v9: v7's images with only visibly brighter lesion voxels labelled (see Ranges.min_visible_contrast).
RANGES_V9 = replace(RANGES_V7, min_visible_contrast=1.08)
#: Synthesis v11: v7 with normal, symmetric, unlabelled tract brightening (see Ranges.normal_tracts_probability).
RANGES_V11 = replace(RANGES_V7, normal_tracts_probability=0.8)
#: Synthesis v12: v7 with a normally bright hippocampus and amygdala (see Ranges.mesial_temporal_probability).
RANGES_V12 = replace(RANGES_V7, mesial_temporal_probability=0.7)
#: The default version's ranges (v3, the data of the shipped model; see generator.SYNTHESIS_VERSION).
RANGES = RANGES_V3
#: Synthesis v1 (the data of model 1.0.0): brighter lesions, rarely faint.
RANGES_V1 = Ranges(lesion_over_wm=(1.35, 2.2), lesion_over_cortex=(1.0, 1.3),
                   faint_lesion_over_wm=(1.2, 1.4), faint_lesion_probability=0.1)
#: Extracerebral classes of SynthSeg's maps whose FLAIR look we know from their place.
SCALP_LABELS = (511,)
BONE_LABELS = (515,)


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(*r))


def label_intensities(labels: np.ndarray, rng: np.random.Generator,
                      ranges: Ranges = RANGES) -> tuple[np.ndarray, float, float]:
    """Lookup table ``value[label]`` for one case; also its cortex and white-matter levels."""
    lut = np.zeros(int(labels.max()) + 1, np.float32)
    cortex = _u(rng, ranges.cortex)
    deep = _u(rng, ranges.deep_grey)
    fluid = _u(rng, ranges.fluid)
    for value in np.unique(labels):
        v = int(value)
        if v == 0:
            lut[v] = 0.0
        elif v in CEREBRAL_WM or v in CEREBELLAR_WM:
            lut[v] = 1.0 * rng.uniform(0.95, 1.05)
        elif v in CORTEX or v in CEREBELLAR_CORTEX:
            lut[v] = cortex * rng.uniform(0.95, 1.05)
        elif v in DEEP_GREY:
            lut[v] = deep * rng.uniform(0.9, 1.1)
        elif v in FLUID:
            lut[v] = fluid * rng.uniform(0.8, 1.2)
        elif v in SCALP_LABELS:
            lut[v] = _u(rng, ranges.scalp)
        elif v in BONE_LABELS:
            lut[v] = _u(rng, ranges.bone)
        elif v >= 500:
            lut[v] = _u(rng, ranges.other_outside)
        else:
            # drawn even where it is overridden, so the other labels' draws stay v2's
            lut[v] = _u(rng, ranges.other_brain)
            if ranges.subject_lesions_as_wm and v in SUBJECT_LESION_LABELS:
                lut[v] = lut[CEREBRAL_WM[SUBJECT_LESION_LABELS.index(v)]]
    return lut, cortex, 1.0


def brighten_mesial_temporal(image: np.ndarray, labels: np.ndarray, lut: np.ndarray, cortex: float,
                             ranges: Ranges, rng: np.random.Generator) -> bool:
    """Redraw, in place and with probability :attr:`Ranges.mesial_temporal_probability`, the
    hippocampus and amygdala at ``cortex`` times :attr:`Ranges.mesial_temporal_over_cortex`, the
    left and right sides within +-5 % of each other (normal FLAIR is symmetric there); a per-label
    factor, so the texture drawn before is kept. Never darker than drawn. True if it brightened."""
    if rng.random() >= ranges.mesial_temporal_probability:
        return False
    level = cortex * _u(rng, ranges.mesial_temporal_over_cortex)
    factor = np.ones(lut.shape, np.float32)
    for side in MESIAL_TEMPORAL:
        side_level = level * rng.uniform(0.95, 1.05)
        for v in side:
            if v < len(lut) and lut[v] > 0:
                factor[v] = max(1.0, side_level / float(lut[v]))
    image *= factor[labels]
    return True


def normal_bright_spots(subject: SubjectAnatomy, image: np.ndarray, rng: np.random.Generator,
                        ranges: Ranges = RANGES) -> None:
    """Paint, in place, the bright spots of a normal FLAIR that are not lesions."""
    labels = subject.labels
    ventricles = np.isin(labels, LATERAL_VENTRICLES)
    # thin periventricular lining (1-2 mm of slightly bright white matter around the ventricles)
    width = rng.uniform(0.8, 2.2)
    lining = (subject.tissue.ventricle_distance_mm > 0) & (subject.tissue.ventricle_distance_mm <= width)
    lining &= np.isin(labels, CEREBRAL_WM)
    image[lining] *= np.float32(_u(rng, ranges.lining_gain))
    # choroid plexus: a few blobs in the lateral ventricles
    vent_idx = np.argwhere(ventricles)
    if len(vent_idx):
        _paint_blobs(image, ventricles, vent_idx, _u(rng, ranges.choroid), (0, 5), (1.0, 3.0), rng)
    # CSF flow artefacts: bright patches in the 3rd/4th ventricles and the basal cisterns
    if rng.random() < ranges.flow_probability:
        fluid = np.isin(labels, (14, 15, 24))
        idx = np.argwhere(fluid & (np.abs(np.arange(labels.shape[2]) - labels.shape[2] / 2)[None, None, :] < 25))
        if len(idx):
            _paint_blobs(image, fluid, idx, _u(rng, ranges.flow), (1, 4), (1.5, 5.0), rng)


def _paint_blobs(image: np.ndarray, within: np.ndarray, centres: np.ndarray, level: float,
                 count: tuple[int, int], radius_mm: tuple[float, float], rng: np.random.Generator) -> None:
    """Blend, in place, a random number of soft ellipsoids of intensity ``level`` centred on
    voxels of ``centres`` and clipped to the mask ``within``."""
    blobs = np.zeros(image.shape, np.float32)
    for _ in range(int(rng.integers(*count))):
        centre = centres[rng.integers(len(centres))].astype(float)
        _draw_ellipsoid(blobs, centre, rng.uniform(*radius_mm, 3), _random_axes(rng))
    blobs *= within
    image[:] = image * (1 - blobs) + np.float32(level) * blobs


def lesion_level(rng: np.random.Generator, cortex: float, wm: float, ranges: Ranges = RANGES) -> float:
    """One case's lesion intensity: faint in a share of cases, else over white matter and
    at least a fraction of the case's cortex (see :class:`Ranges`)."""
    if rng.random() < ranges.faint_lesion_probability:
        return wm * _u(rng, ranges.faint_lesion_over_wm)
    return max(wm * _u(rng, ranges.lesion_over_wm), cortex * _u(rng, ranges.lesion_over_cortex))


def dim_grey_matter(image: np.ndarray, labels: np.ndarray, lut: np.ndarray, cap: float) -> np.ndarray:
    """Scale every grey-matter label drawn brighter than ``cap`` down to ``cap`` (its texture
    kept: a per-label factor, not a clip)."""
    factor = np.ones(lut.shape, np.float32)
    grey = [v for v in GREY_MATTER if v < len(lut) and lut[v] > cap]
    factor[grey] = np.float32(cap) / lut[grey]
    return image * factor[labels]


def core_profile(lesions: np.ndarray, ranges: Ranges, rng: np.random.Generator) -> np.ndarray:
    """The share of a case's lesion contrast each 1 mm voxel gets: ``rim`` at a lesion's edge
    (the truth's fraction), rising linearly to 1 at ``core_depth_mm`` inside; 1 outside lesions
    (the paint ramp fades those anyway)."""
    rim, depth_mm = _u(rng, ranges.rim_contrast), _u(rng, ranges.core_depth_mm)
    profile = np.ones(lesions.shape, np.float32)
    inside = lesions >= TRUTH_FRACTION
    if not inside.any():
        return profile
    box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(inside))
    depth = ndimage.distance_transform_edt(inside[box])  # 1 at the edge voxel, in mm (1 mm grid)
    ramp = rim + (1.0 - rim) * np.clip((depth - 1.0) / depth_mm, 0.0, 1.0)
    profile[box] = np.where(inside[box], ramp, 1.0).astype(np.float32)
    return profile


def paint(subject: SubjectAnatomy, lesions: np.ndarray, rng: np.random.Generator,
          ranges: Ranges = RANGES) -> np.ndarray:
    """A FLAIR-like 1 mm volume (white matter about 1) with ``lesions`` (soft 0..1) painted in."""
    return paint_with_truth(subject, lesions, rng, ranges)[0]


def paint_with_truth(subject: SubjectAnatomy, lesions: np.ndarray, rng: np.random.Generator,
                     ranges: Ranges = RANGES, tract_rng: np.random.Generator | None = None,
                     mesial_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`paint`'s volume and the soft lesion map to label: ``lesions`` itself, or under
    :attr:`Ranges.min_visible_contrast` zero where the painted lesion is not visibly brighter.
    ``tract_rng`` draws the normal tract brightening (:attr:`Ranges.normal_tracts_probability`), a
    generator of its own so that the case's other draws stay those of the version it extends;
    ``mesial_rng`` likewise draws the bright hippocampus and amygdala (:attr:`Ranges.mesial_temporal_probability`)."""
    lut, cortex, wm = label_intensities(subject.labels, rng, ranges)
    image = lut[subject.labels]
    texture = _u(rng, ranges.texture_std)
    if texture > 0:
        image *= 1 + np.float32(texture) * rng.standard_normal(image.shape, dtype=np.float32)
    if ranges.mesial_temporal_probability > 0:
        if mesial_rng is None:
            raise ValueError("the bright hippocampus and amygdala need their own generator (mesial_rng)")
        brighten_mesial_temporal(image, subject.labels, lut, cortex, ranges, mesial_rng)
    normal_bright_spots(subject, image, rng, ranges)
    lesion_image = None
    if lesions.any():
        level = lesion_level(rng, cortex, wm, ranges)
        # lesions are not uniform: +-15 % smooth variation within and between lesions
        variation = 1 + 0.15 * np.tanh(ndimage.gaussian_filter(
            rng.standard_normal([max(2, s // 4) for s in image.shape]).astype(np.float32), 1.0) * 3)
        variation = ndimage.zoom(variation, [a / b for a, b in zip(image.shape, variation.shape)], order=1)
        lesion_image = (np.float32(level) * variation[tuple(slice(0, s) for s in image.shape)]).astype(np.float32)
        if ranges.grey_below_lesion is not None:
            # from a child generator (spawning draws nothing from rng): the case's own stream,
            # blur and acquisition included, stays v4's
            cap = wm + (level - wm) * _u(rng.spawn(1)[0], ranges.grey_below_lesion)
            image = dim_grey_matter(image, subject.labels, lut, cap)
        if ranges.rim_contrast is not None:
            # a child generator again (the second spawn, so not the grey cap's): v7 = v6 + rims
            lesion_image = wm + (lesion_image - wm) * core_profile(lesions, ranges, rng.spawn(2)[1])
    if ranges.diffuse_wm_probability > 0:
        # a child generator drawn after the others: a v8 case is its v7 case with brighter white
        # matter in places; lesions ride on it, so their contrast over their surroundings stays
        brightening = diffuse_white_matter(subject, ranges, rng.spawn(3)[2])
        if brightening is not None:
            image *= brightening
            if lesion_image is not None:
                lesion_image *= brightening
    if ranges.normal_tracts_probability > 0:
        if tract_rng is None:
            raise ValueError("normal tract brightening needs its own generator (tract_rng)")
        tracts = normal_tracts(subject, ranges.normal_tracts_probability, ranges.normal_tract_gain, tract_rng)
        if tracts is not None:  # lesions ride on it, as on the diffuse brightening
            image *= tracts
            if lesion_image is not None:
                lesion_image *= tracts
    truth = lesions
    if lesion_image is not None:
        lo, hi = ranges.paint_ramp
        weight = np.clip((lesions - lo) / (hi - lo), 0.0, 1.0)
        background = image
        image = image * (1 - weight) + lesion_image * weight
        if ranges.min_visible_contrast is not None:
            visible = image >= np.float32(ranges.min_visible_contrast) * background
            truth = np.where(visible & (background > 0), lesions, np.float32(0)).astype(np.float32)
    return ndimage.gaussian_filter(image, _u(rng, ranges.blur_mm)).astype(np.float32), truth


def _smooth_noise(shape: tuple[int, ...], scale_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance noise correlated over about ``scale_mm`` (1 mm grid): drawn on a
    coarse grid and interpolated, so a 256^3 field costs a zoom, not a large Gaussian filter."""
    coarse = [max(2, int(round(s / scale_mm)) + 2) for s in shape]
    field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 0.7)
    field = ndimage.zoom(field, [(s + scale_mm) / c for s, c in zip(shape, coarse)], order=1)
    field = field[tuple(slice(0, s) for s in shape)]
    return (field - field.mean()) / (field.std() + 1e-6)


def _superior_mm(subject: SubjectAnatomy) -> np.ndarray:
    """Physical superior coordinate (LPS z, mm) of every voxel of the ``[k, j, i]`` arrays."""
    image = subject.image
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    step = direction[2] * np.asarray(image.GetSpacing(), float)  # z change per i, j, k step
    k, j, i = np.ogrid[tuple(slice(0, s) for s in subject.shape)]
    return (image.GetOrigin()[2] + step[0] * i + step[1] * j + step[2] * k).astype(np.float32)


def diffuse_white_matter(subject: SubjectAnatomy, ranges: Ranges,
                         rng: np.random.Generator) -> np.ndarray | None:
    """A multiplicative field (1 outside cerebral white matter) that brightens the white matter
    faintly and unevenly in a share of cases (:attr:`Ranges.diffuse_wm_probability`), or None.
    Patchy smooth noise thresholded at a random level, gathered by the case's layout, with
    finer texture on top: ill-defined and textured like diffusely abnormal white matter, not a
    smooth shading (a smooth ramp over the upper head did not reproduce what real slabs show)."""
    if rng.random() >= ranges.diffuse_wm_probability:
        return None
    names = [name for name, _ in ranges.diffuse_wm_layouts]
    weights = np.asarray([w for _, w in ranges.diffuse_wm_layouts], float)
    layout = str(rng.choice(names, p=weights / weights.sum()))
    shape = subject.shape
    patches = np.clip(_smooth_noise(shape, _u(rng, ranges.diffuse_wm_scale_mm), rng) - rng.uniform(-0.5, 0.8),
                      0.0, None)
    patches /= patches.max() + 1e-6
    if layout == "superior":
        wm_z = _superior_mm(subject)
        z = np.broadcast_to(wm_z, shape)[np.isin(subject.labels, CEREBRAL_WM)]
        low, top = np.percentile(z, rng.uniform(30, 60)), np.percentile(z, 99)
        patches = np.maximum(patches, 0.5) * np.clip((wm_z - low) / max(top - low, 1.0), 0.0, 1.0)
    elif layout == "periventricular":
        patches = np.maximum(patches, 0.4) * np.exp(-subject.tissue.ventricle_distance_mm / rng.uniform(5.0, 15.0))
    texture = np.clip(1 + rng.uniform(0.2, 0.5) * _smooth_noise(shape, rng.uniform(2.0, 4.0), rng), 0.0, None)
    field = np.float32(_u(rng, ranges.diffuse_wm_gain)) * np.clip(patches * texture, 0.0, 1.0)
    white = np.isin(subject.labels, CEREBRAL_WM + SUBJECT_LESION_LABELS)
    return np.where(white, 1.0 + field, 1.0).astype(np.float32)
