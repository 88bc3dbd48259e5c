"""``deepwml synth``: whole-head FLAIR training cases synthesised from real anatomy.

A pipeline of small steps, each randomised by ranges kept in one place:
label map of a real subject (anatomy) -> lesions (a real MS mask registered into it, or an
MS/NMOSD/CSVD pattern, or none) -> FLAIR-like appearance per label (appearance) -> a clinical
acquisition: pose, deformation, thick-slice partial volume, matrix, bias, noise, ghosting
(acquisition). The truth is the partial-volume lesion fraction >= 0.4 on the acquired grid,
as for the phantoms. Deterministic for (seed, index); cases are independent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..case_set import refuse_existing_set, write_case, write_manifest
from ..output_folder import writes_output_folder
from ..phantom.generator import TRUTH_FRACTION
from ..process_pool import map_in_chunks
from .acquisition import SKULL_STRIPPED_PROBABILITY, degrade, draw_acquisition, resample, strip_skull
from .anatomy import BRAIN, MESIAL_TEMPORAL, WHITE_MATTER, label_map_paths, load_subject
from .appearance import (RANGES_V1, RANGES_V2, RANGES_V3, RANGES_V4, RANGES_V5, RANGES_V7, RANGES_V8, RANGES_V9,
                         RANGES_V11, RANGES_V12, Ranges, paint_with_truth)
from .lesions import (CONFLUENT_MAX_LOAD_ML, grow_confluent, lesion_load_ml, lesion_mask_paths, pattern_lesions,
                      random_displacement, real_lesions)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthesisVersion:
    """Everything one synthesis version draws differently, in one record (the rest is shared)."""

    #: label and lesion intensities (appearance.Ranges)
    appearance: Ranges
    #: share of cases with lesions whose lesions grow confluent (lesions.grow_confluent); 0 draws
    #: no random number at all (v1)
    confluent_probability: float
    #: grow only loads up to lesions.CONFLUENT_MAX_LOAD_ML
    plausible_confluent_loads: bool
    #: skull-strip a share of cases (acquisition.strip_skull), drawn last so that the versions
    #: before it stay bit-identical
    skull_stripping: bool
    #: how many real MS masks a case with real lesions unites, with their weights; None (v1-v5)
    #: unites none and draws no random number for it
    real_mask_counts: dict[int, float] | None = None
    #: move every real mask by a random rigid motion in MNI space (lesions.random_displacement),
    #: drawn from a generator of its own so that the case's other draws stay those of the version
    #: it extends
    displaced_masks: bool = False


#: Bumped when the same (seed, index) draws a different case; older versions stay available
#: (``--synthesis-version``) so every shipped model's data can be regenerated bit for bit.
#: v1: model 1.0.0's data. v2: lesion contrast closer to clinical FLAIR (appearance.RANGES_V2)
#: and grown confluent lesions in 30 % of the cases with lesions: real masks of a 27-patient MS
#: cohort hold few large confluent loads, but routine clinical FLAIR (small vessel disease,
#: long-standing MS) often shows caps and bands merging into one region of tens of millilitres.
#: v3: v2 plus skull-stripped cases, confluent growth more often (45 %: routine FLAIR of older
#: patients holds 30-130 ml loads) but only of loads that stay plausible, and the subjects' own
#: lesion labels painted as white matter (appearance.Ranges.subject_lesions_as_wm). v4: v3 with
#: lesion contrast spread over what clinical FLAIR shows, fainter and closer to cortex
#: (appearance.RANGES_V4); the same random draws as v3, so a v4 case differs from v3 only there.
#: v5: v4 with grey matter below the lesions in cases with lesions (appearance.Ranges.grey_below_lesion).
#: v6: v4 where a case with real lesions unites the masks of one to three patients
#: (REAL_MASK_COUNTS_V6). Why: the 27 real masks hold loads of 0.3-52 ml (median 14), so every
#: heavy load v4 drew was a pattern or a Gaussian-grown blob; the bundled model under-segments
#: heavy confluent WMH (held-out clinical set 127 -> 82 ml, 62 -> 31 ml; on fresh synthetic heads a
#: 120 ml CSVD pattern -> 22 ml, a 71 ml grown MS load -> 9 ml). United real masks give 20-100 ml
#: loads with the shapes raters draw: periventricular caps and bands, juxtacortical and
#: infratentorial lesions together.
#: v7: v6 with lesions fainter at their rim than in their core (appearance.Ranges.rim_contrast);
#: drawn from a child generator, so a v7 case is its v6 case with other lesion intensities.
#: v8: v7 with faint, diffuse, unlabelled white-matter brightening in 70 % of the cases
#: (appearance.Ranges.diffuse_wm_probability); a child generator again, so a v8 case is its v7
#: case with the white matter brighter in places.
#: v9: v7's images with only the visibly brighter lesion voxels labelled (>= 1.08x the image
#: without the lesion; appearance.Ranges.min_visible_contrast); no new random draw, so a v9 case is
#: its v7 case with a smaller truth where lesions are faint.
#: v10: v7 with every real mask moved by a random rigid motion (up to 25 mm, 20 degrees) in MNI space
#: before registration into the subject (lesions.MASK_SHIFT_MM), so that where a lesion lies says
#: little; the motions come from their own generator, so a v10 case is its v7 case with the real
#: lesions elsewhere (patterns, intensities and acquisition unchanged).
#: v11: v7 with the corticospinal tracts and peritrigonal white matter faintly brighter on both sides
#: in 80 % of the cases, never labelled (normal_tracts; appearance.Ranges.normal_tracts_probability);
#: drawn from their own generator, so a v11 case is its v7 case with that brightening (same truth).
#: v12: v7 with the hippocampus and amygdala brighter than the cortex in 70 % of the cases, never
#: labelled (appearance.Ranges.mesial_temporal_probability); drawn from their own generator, so a v12
#: case is its v7 case with those four labels brighter (same truth).
REAL_MASK_COUNTS_V6 = {1: 0.4, 2: 0.35, 3: 0.25}
VERSIONS = {
    1: SynthesisVersion(RANGES_V1, 0.0, plausible_confluent_loads=False, skull_stripping=False),
    2: SynthesisVersion(RANGES_V2, 0.3, plausible_confluent_loads=False, skull_stripping=False),
    3: SynthesisVersion(RANGES_V3, 0.45, plausible_confluent_loads=True, skull_stripping=True),
    4: SynthesisVersion(RANGES_V4, 0.45, plausible_confluent_loads=True, skull_stripping=True),
    5: SynthesisVersion(RANGES_V5, 0.45, plausible_confluent_loads=True, skull_stripping=True),
    6: SynthesisVersion(RANGES_V4, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                        real_mask_counts=REAL_MASK_COUNTS_V6),
    7: SynthesisVersion(RANGES_V7, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                        real_mask_counts=REAL_MASK_COUNTS_V6),
    8: SynthesisVersion(RANGES_V8, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                        real_mask_counts=REAL_MASK_COUNTS_V6),
    9: SynthesisVersion(RANGES_V9, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                        real_mask_counts=REAL_MASK_COUNTS_V6),
    10: SynthesisVersion(RANGES_V7, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                         real_mask_counts=REAL_MASK_COUNTS_V6, displaced_masks=True),
    11: SynthesisVersion(RANGES_V11, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                         real_mask_counts=REAL_MASK_COUNTS_V6),
    12: SynthesisVersion(RANGES_V12, 0.45, plausible_confluent_loads=True, skull_stripping=True,
                         real_mask_counts=REAL_MASK_COUNTS_V6),
}
#: The default stays v3, the data of model 1.2.0: models trained on v4 or v5 alone were better on the
#: real MS scans but failed the phantom test guard; the shipped 1.5.0 (like 1.4.0 before it) is v4's
#: heads with the phantoms weighted up (docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0"), a mix, not a synthesis version.
SYNTHESIS_VERSION = 3
MANIFEST_FIELDS = ["case", "patient", "center", "disease", "anatomy", "lesion_source", "synthesis_version",
                   "skull_stripped", "slice_thickness_mm", "slice_spacing_mm", "pixel_mm", "matrix", "slices", "flair",
                   "label", "brain", "white_matter", "mesial_temporal"]
#: What lesions a case gets: a real MS mask, a pattern, both, or none (healthy heads teach
#: the network that a normal FLAIR has no lesion).
LESION_SOURCES = {"real": 0.45, "pattern": 0.3, "real+pattern": 0.15, "none": 0.10}
PATTERNS = {"MS": 0.35, "NMOSD": 0.2, "CSVD": 0.45}


@dataclass
class SynthCase:
    flair: sitk.Image
    truth: sitk.Image
    brain: sitk.Image
    info: dict
    #: the white matter (:data:`.anatomy.WHITE_MATTER`) with the truth's lesions: where a lesion may lie
    white_matter: sitk.Image | None = None
    #: the hippocampus and amygdala (:data:`.anatomy.MESIAL_TEMPORAL`) outside the truth's lesions: grey matter that is
    #: normally bright on FLAIR and never a white-matter hyperintensity (:mod:`deepwml.white_matter`)
    mesial_temporal: sitk.Image | None = None


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    return str(rng.choice(keys, p=np.asarray([weights[k] for k in keys]) / sum(weights.values())))


def _extra_masks(rng: np.random.Generator, counts: dict[int, float], masks: list[Path],
                 first: Path) -> list[Path]:
    """The other patients' masks a case unites with ``first`` (none, one or two, by ``counts``)."""
    n = int(_pick(rng, {str(k): v for k, v in counts.items()})) - 1
    others = [m for m in masks if m != first]
    if n <= 0 or not others:
        return []
    return [others[int(i)] for i in rng.choice(len(others), size=min(n, len(others)), replace=False)]


def make_case(index: int, seed: int, label_maps: list[Path] | None = None,
              lesion_masks: list[Path] | None = None, version: int = SYNTHESIS_VERSION,
              acquisition: dict | None = None) -> SynthCase:
    """Synthesise case ``index`` of synthesis ``version``; the anatomy cycles through the label maps.
    ``acquisition`` (the keys of :func:`.acquisition.draw_acquisition`) fixes the protocol instead
    of drawing it, for studies of one protocol (e.g. whole-head 1 mm 3D FLAIR,
    ``benchmarks/thin_slab_study.py``); the other draws then differ from the set's."""
    if version not in VERSIONS:
        raise ValueError(f"synthesis version {version}: known versions are {sorted(VERSIONS)}")
    settings = VERSIONS[version]
    label_maps = label_maps or label_map_paths()
    lesion_masks = lesion_masks or lesion_mask_paths()
    rng = np.random.default_rng([seed, index])
    subject = load_subject(label_maps[index % len(label_maps)])
    source = _pick(rng, LESION_SOURCES)
    lesions = np.zeros(subject.shape, np.float32)
    disease, mask_name = "none", ""
    places = np.random.default_rng([seed, index, 10]) if settings.displaced_masks else None

    def moved() -> sitk.Transform | None:
        return random_displacement(places) if places is not None else None

    if "real" in source:
        mask_path = lesion_masks[int(rng.integers(len(lesion_masks)))]
        lesions = real_lesions(subject, mask_path, rng, moved())
        disease, mask_name = "MS", mask_path.name.split("_")[0]
        if settings.real_mask_counts:
            for extra in _extra_masks(rng, settings.real_mask_counts, lesion_masks, mask_path):
                np.maximum(lesions, real_lesions(subject, extra, rng, moved()), out=lesions)
                mask_name += "+" + extra.name.split("_")[0]
    if "pattern" in source:
        disease = _pick(rng, PATTERNS)
        np.maximum(lesions, pattern_lesions(subject, disease, rng), out=lesions)
    p_confluent = settings.confluent_probability
    confluent = p_confluent > 0 and source != "none" and rng.random() < p_confluent
    if confluent and settings.plausible_confluent_loads and lesion_load_ml(lesions) > CONFLUENT_MAX_LOAD_ML:
        confluent = False  # already a heavy load: growing it would paint most of the white matter
    if confluent:
        lesions = grow_confluent(lesions, subject, rng)
    tracts = (np.random.default_rng([seed, index, 11]) if settings.appearance.normal_tracts_probability > 0
              else None)
    mesial = (np.random.default_rng([seed, index, 12]) if settings.appearance.mesial_temporal_probability > 0
              else None)
    flair_1mm, lesions = paint_with_truth(subject, lesions, rng, settings.appearance, tracts, mesial)
    brain = np.isin(subject.labels, BRAIN).astype(np.float32)
    white = np.isin(subject.labels, WHITE_MATTER).astype(np.float32)
    mesial_temporal = np.isin(subject.labels, np.ravel(MESIAL_TEMPORAL)).astype(np.float32)
    acq = dict(acquisition) if acquisition is not None else draw_acquisition(rng)
    # one more channel does not change the draws: the sampling grid is drawn once for all maps
    flair, soft, brain_soft, white_soft, mesial_soft = resample(np.stack([flair_1mm, lesions, brain, white,
                                                                          mesial_temporal]),
                                                                subject.image, acq, subject.brain_centre_lps, rng)
    flair_arr = degrade(np.clip(flair, 0, None), rng)
    skull_stripped = settings.skull_stripping and rng.random() < SKULL_STRIPPED_PROBABILITY
    if skull_stripped:
        flair_arr = strip_skull(flair_arr, brain_soft, acq["pixel_mm"], rng)
    spacing = (acq["pixel_mm"], acq["pixel_mm"], acq["slice_spacing_mm"])
    origin = (-(acq["matrix"] - 1) / 2 * acq["pixel_mm"], -(acq["matrix"] - 1) / 2 * acq["pixel_mm"],
              -(acq["slices"] - 1) / 2 * acq["slice_spacing_mm"])

    def to_image(arr: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        return img

    info = {"center": "synthetic", "disease": disease, "anatomy": subject.name,
            "lesion_source": f"{source}{':' + mask_name if mask_name else ''}{'+confluent' if confluent else ''}",
            "synthesis_version": version, "skull_stripped": int(skull_stripped), **acq}
    truth = soft >= TRUTH_FRACTION
    return SynthCase(to_image(flair_arr), to_image(truth.astype(np.uint8)),
                     to_image((brain_soft >= 0.5).astype(np.uint8)), info,
                     to_image(((white_soft >= 0.5) | truth).astype(np.uint8)),
                     to_image(((mesial_soft >= 0.5) & ~truth).astype(np.uint8)))


#: fewest cases worth a worker process (a case takes 1-5 s, a worker ~2 s to start)
CASES_PER_WORKER = 3


@writes_output_folder("synth")
def generate_dataset(out_dir: Path, cases: int, seed: int = 0, overwrite: bool = False,
                     progress: bool = True, start: int = 0, version: int = SYNTHESIS_VERSION,
                     acquisition: dict | None = None, workers: int = 1) -> Path:
    """Write ``cases`` synthetic heads and ``manifest.csv`` into ``out_dir``; return the manifest.
    ``acquisition``: one fixed protocol for every case (see :func:`make_case`). ``workers``:
    processes (0: one per core); every case is the same whatever their number."""
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.csv"
    refuse_existing_set(manifest, "synthetic", overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_maps = len(label_map_paths())
    lesion_mask_paths()  # refuse a missing mask folder here, not in every worker
    # subject-major order: each label map is prepared once (cached) for all its cases, and a
    # worker's chunk of cases rarely needs a second map
    order = sorted(range(start, start + cases), key=lambda i: (i % n_maps, i))
    rows = map_in_chunks(_write_cases, order, (out_dir, seed, version, acquisition), workers, "synthesis", "case",
                         progress, min_items_per_worker=CASES_PER_WORKER)
    rows.sort(key=lambda row: row["case"])
    return write_manifest(manifest, rows, MANIFEST_FIELDS)


def _write_cases(task: tuple[list[int], Path, int, int, dict | None]) -> list[dict]:
    """Synthesise and write the cases ``indices`` (one worker's share); their manifest rows."""
    indices, out_dir, seed, version, acquisition = task
    label_maps, lesion_masks = label_map_paths(), lesion_mask_paths()
    rows = []
    for i in indices:
        case = make_case(i, seed, label_maps, lesion_masks, version, acquisition)
        name = f"synth{i:04d}"
        # brain is written last: a case folder with brain.nii.gz is complete
        paths = write_case(out_dir, name, {"flair": case.flair, "label": case.truth, "white_matter": case.white_matter,
                                           "mesial_temporal": case.mesial_temporal, "brain": case.brain})
        rows.append({"case": name, "patient": name, **{k: case.info[k] for k in MANIFEST_FIELDS if k in case.info},
                     **paths})
    return rows
