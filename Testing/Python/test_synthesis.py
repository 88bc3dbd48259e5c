"""Synthesis from real anatomy: deterministic, on one grid, lesions only in brain white matter,
FLAIR-like ordering of tissue intensities, healthy heads without lesion, the CLI writes a
manifest the trainer reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from deepwml.synthesis.anatomy import LABEL_MAP_DIR, load_subject, label_map_paths
from deepwml.synthesis.lesions import LESION_MASK_DIR

pytestmark = pytest.mark.skipif(not LABEL_MAP_DIR.is_dir() or not LESION_MASK_DIR.is_dir(),
                                reason=f"shared data not found at {LABEL_MAP_DIR.parent}")


def _arrays(case):
    return (sitk.GetArrayFromImage(case.flair), sitk.GetArrayFromImage(case.truth),
            sitk.GetArrayFromImage(case.brain))


def _case_with(source: str, seed: int = 5, tries: int = 60):
    from deepwml.synthesis.generator import LESION_SOURCES, _pick, make_case

    for index in range(tries):
        if _pick(np.random.default_rng([seed, index]), LESION_SOURCES) == source:
            return index, make_case(index, seed)
    raise AssertionError(f"no {source} case among {tries}")


def test_real_lesion_case_is_deterministic_on_one_grid_and_lesions_lie_in_brain():
    from deepwml.synthesis.generator import make_case

    index, case = _case_with("real")
    flair, truth, brain = _arrays(case)
    again = _arrays(make_case(index, 5))
    assert all((a == b).all() for a, b in zip((flair, truth, brain), again))
    for other in (case.truth, case.brain):
        assert other.GetSize() == case.flair.GetSize() and other.GetSpacing() == case.flair.GetSpacing()
    info = case.info
    assert info["lesion_source"].startswith("real:patient")
    assert 1.0 <= info["slice_thickness_mm"] <= 8.0 and 0.39 <= info["pixel_mm"] <= 1.1
    assert truth.sum() > 0
    # every lesion voxel lies in the brain (2-voxel tolerance for partial volume at the border)
    near_brain = ndimage.binary_dilation(brain > 0, iterations=2)
    assert (truth.astype(bool) & ~near_brain).sum() == 0
    # lesions are brighter than the brain around them, and the head is not skull-stripped
    assert np.median(flair[truth > 0]) > np.median(flair[(brain > 0) & (truth == 0)])
    assert (flair[(brain == 0)] > np.percentile(flair[brain > 0], 50)).sum() > 1000


def test_a_fixed_acquisition_gives_that_grid_with_the_same_lesions_in_the_brain():
    """``make_case(..., acquisition=...)`` (the thin-slab study's whole-head 1 mm heads): the
    requested grid, the lesion source of the random case, lesions inside the brain."""
    from deepwml.synthesis.generator import make_case

    index, drawn = _case_with("real")
    acquisition = {"slice_thickness_mm": 1.0, "slice_spacing_mm": 1.0, "slices": 40, "matrix": 192, "pixel_mm": 1.0}
    case = make_case(index, 5, acquisition=acquisition)
    assert case.flair.GetSize() == (192, 192, 40) and case.flair.GetSpacing() == (1.0, 1.0, 1.0)
    assert {k: case.info[k] for k in acquisition} == acquisition
    assert case.info["lesion_source"] == drawn.info["lesion_source"]  # drawn before the acquisition
    flair, truth, brain = _arrays(case)
    assert brain.sum() > 0 and (truth.astype(bool) & ~ndimage.binary_dilation(brain > 0, iterations=2)).sum() == 0


def test_synth_command_passes_the_whole_head_3d_protocol(tmp_path, monkeypatch):
    from deepwml.cli import main
    from deepwml.synthesis import generator
    from deepwml.synthesis.acquisition import WHOLE_HEAD_3D

    seen = []
    monkeypatch.setattr(generator, "generate_dataset",
                        lambda *args, **kwargs: seen.append(kwargs["acquisition"]) or tmp_path / "manifest.csv")
    assert main(["synth", str(tmp_path / "a"), "--cases", "1", "-q"]) == 0
    assert main(["synth", str(tmp_path / "b"), "--cases", "1", "-q", "--whole-head-3d"]) == 0
    assert seen == [None, WHOLE_HEAD_3D] and WHOLE_HEAD_3D["slice_thickness_mm"] == 1.0


def test_healthy_case_has_no_lesion():
    _, case = _case_with("none")
    _, truth, brain = _arrays(case)
    assert truth.sum() == 0 and brain.sum() > 0


def test_label_intensities_are_flair_like():
    from deepwml.synthesis.appearance import label_intensities

    subject = load_subject(label_map_paths()[0])
    for seed in range(5):
        lut, cortex, wm = label_intensities(subject.labels, np.random.default_rng(seed))
        assert lut[3] > lut[2] * 0.99 and lut[42] > lut[41] * 0.99  # cortex brighter than white matter
        assert lut[4] < 0.5 * lut[2] and lut[24] < 0.5 * lut[2]  # fluid suppressed
        assert cortex > wm and lut[0] == 0


def test_synth_command_writes_a_manifest_the_trainer_reads(tmp_path):
    from deepwml.cli import main
    from deepwml.training.dataset import load_canvas_case
    from deepwml.training.manifest import read_manifest

    assert main(["synth", str(tmp_path / "s"), "--cases", "2", "--seed", "3", "-q"]) == 0
    cases = read_manifest(tmp_path / "s" / "manifest.csv")
    assert [c.case for c in cases] == ["synth0000", "synth0001"]
    loaded = load_canvas_case(cases[0])
    assert loaded.images.shape[1:] == (1, 256, 256) and loaded.labels.shape == loaded.images.shape
    assert main(["synth", str(tmp_path / "s"), "--cases", "2", "-q"]) == 2  # never overwritten


def test_confluent_growth_merges_lesions_and_stays_in_white_matter():
    from deepwml.synthesis.lesions import grow_confluent

    subject = load_subject(label_map_paths()[0])
    # two small lesions 1 mm apart in allowed tissue
    allowed = np.argwhere(subject.lesion_allowed & ndimage.binary_erosion(subject.lesion_allowed, iterations=6))
    centre = allowed[len(allowed) // 2]
    lesions = np.zeros(subject.shape, np.float32)
    for offset in (-3, 3):
        z, y, x = centre + np.array([0, 0, offset])
        lesions[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = 1.0
    grown = grow_confluent(lesions, subject, np.random.default_rng(0))
    before, _ = ndimage.label(lesions >= 0.4)
    after, count = ndimage.label(grown >= 0.4)
    assert before.max() == 2 and count == 1  # the two merged
    assert (grown >= 0.4).sum() > 2 * (lesions >= 0.4).sum()
    # what becomes truth (fraction >= 0.4) stays where lesions may lie (1 voxel of smoothing)
    assert (grown >= 0.4)[~ndimage.binary_dilation(subject.lesion_allowed, iterations=1)].sum() == 0
    assert (grown >= lesions * subject.lesion_allowed_soft - 1e-6).all()  # growth never removes lesion


def test_synthesis_versions_differ_only_where_documented():
    """v1 (model 1.0.0's data) has no confluent growth; an unknown version is refused."""
    from deepwml.synthesis.generator import VERSIONS, make_case

    index, _ = _case_with("real")
    v1 = make_case(index, 5, version=1)
    assert v1.info["synthesis_version"] == 1 and "confluent" not in v1.info["lesion_source"]
    unknown = max(VERSIONS) + 1
    with pytest.raises(ValueError, match=f"synthesis version {unknown}"):
        make_case(index, 5, version=unknown)


def test_strip_skull_keeps_the_brain_and_zeroes_the_rest():
    """v3's skull-stripped cases: every brain voxel kept, nothing beyond the grown mask, dtype kept."""
    from deepwml.synthesis.acquisition import STRIP_GROW_MM, strip_skull

    z, y, x = np.mgrid[:9, :64, :64]
    brain = np.clip(20.5 - np.sqrt((y - 32) ** 2 + (x - 32) ** 2 + (2 * (z - 4)) ** 2), 0, 1).astype(np.float32)
    flair = np.full(brain.shape, 300, np.int16)
    for seed in range(4):
        out = strip_skull(flair, brain, 1.0, np.random.default_rng(seed))
        assert out.dtype == np.int16 and out.shape == flair.shape
        assert (out[brain >= 0.99] == 300).all()  # the brain is kept
        far = ndimage.distance_transform_edt(brain < 0.3) > STRIP_GROW_MM[1] + 1
        assert (out[far] == 0).all() and (out == 0).sum() > 0.4 * out.size


def test_v3_skull_stripped_case_is_brain_only_and_v2_never_strips(monkeypatch):
    import deepwml.synthesis.generator as generator

    monkeypatch.setattr(generator, "SKULL_STRIPPED_PROBABILITY", 1.0)
    case = generator.make_case(3, 11, version=3)
    assert case.info["skull_stripped"] == 1 and case.info["synthesis_version"] == 3
    flair, _, brain = _arrays(case)
    near_brain = ndimage.binary_dilation(brain > 0, iterations=8)
    assert (flair[~near_brain] == 0).all() and (flair[brain > 0] > 0).mean() > 0.95
    assert generator.make_case(3, 11, version=2).info["skull_stripped"] == 0


def test_v3_paints_the_subjects_own_lesion_labels_as_white_matter_and_keeps_v2s_other_draws():
    """The SynthSeg maps' Left/Right-Lesion labels (periventricular) drawn at a random 'other'
    intensity made unlabelled bright periventricular bands in v2; v3 paints them as white matter."""
    from deepwml.synthesis.anatomy import SUBJECT_LESION_LABELS
    from deepwml.synthesis.appearance import RANGES, RANGES_V2, label_intensities

    subject = load_subject(label_map_paths()[0])
    assert all((subject.labels == v).any() for v in SUBJECT_LESION_LABELS)
    for seed in range(3):
        v3, _, _ = label_intensities(subject.labels, np.random.default_rng(seed), RANGES)
        v2, _, _ = label_intensities(subject.labels, np.random.default_rng(seed), RANGES_V2)
        assert v3[25] == v3[2] and v3[57] == v3[41]
        others = [v for v in np.unique(subject.labels) if v not in SUBJECT_LESION_LABELS]
        assert (v3[others] == v2[others]).all()


def test_v3_grows_only_plausible_loads(monkeypatch):
    import deepwml.synthesis.generator as generator
    from deepwml.synthesis.lesions import lesion_load_ml

    assert lesion_load_ml(np.full((10, 10, 10), 0.5, np.float32)) == 1.0
    index, _ = _case_with("real")
    always = dataclasses.replace(generator.VERSIONS[3], confluent_probability=1.0)
    monkeypatch.setattr(generator, "VERSIONS", {**generator.VERSIONS, 3: always})
    assert "+confluent" in generator.make_case(index, 5, version=3).info["lesion_source"]
    monkeypatch.setattr(generator, "CONFLUENT_MAX_LOAD_ML", 0.0)
    assert "+confluent" not in generator.make_case(index, 5, version=3).info["lesion_source"]


def test_v4_draws_lesions_fainter_than_v3_and_differs_from_v3_only_in_lesions():
    """v3's lesions sat at >= 0.95x cortex, mostly 1.5-2x white matter; v4 spreads them down to
    faint (real WMH are typically 1.2-1.6x). Same random draws: truth, brain and the picture away
    from lesions are v3's."""
    from deepwml.synthesis.appearance import RANGES_V3, RANGES_V4, lesion_level
    from deepwml.synthesis.generator import make_case

    rng = np.random.default_rng(0)
    cortex = rng.uniform(*RANGES_V4.cortex, 2000)
    v3 = np.array([lesion_level(np.random.default_rng(i), c, 1.0, RANGES_V3) for i, c in enumerate(cortex)])
    v4 = np.array([lesion_level(np.random.default_rng(i), c, 1.0, RANGES_V4) for i, c in enumerate(cortex)])
    assert np.median(v4) < np.median(v3) - 0.1
    assert (v4 < 1.4).mean() > 0.4 > (v3 < 1.4).mean()
    assert v4.min() >= 1.1 and v4.max() <= max(1.9, RANGES_V4.cortex[1] * RANGES_V4.lesion_over_cortex[1])

    index, _ = _case_with("real")
    a, b = make_case(index, 5, version=3), make_case(index, 5, version=4)
    fa, ta, ba = _arrays(a)
    fb, tb, bb = _arrays(b)
    assert b.info["synthesis_version"] == 4 and (ta == tb).all() and (ba == bb).all() and ta.any()
    away = ~ndimage.binary_dilation(ta > 0, iterations=4)
    assert not np.allclose(fa, fb)
    x, y = fa[away].astype(float), fb[away].astype(float)
    # ghosting copies the lesions along the phase direction: a few voxels away from them differ too
    assert (np.abs(y - x) > 0.02 * np.abs(x) + 2).mean() < 0.01


def test_v5_keeps_grey_matter_below_the_lesions_and_is_v4_elsewhere():
    """v4 let faint lesions sit below bright cortex or deep grey; v5 dims grey matter (its
    texture kept) under the case's lesion level, and only there differs from v4."""
    from deepwml.synthesis.anatomy import CEREBRAL_WM
    from deepwml.synthesis.appearance import GREY_MATTER, RANGES_V4, RANGES_V5, paint
    from deepwml.synthesis.generator import make_case

    subject = load_subject(label_map_paths()[0])
    lesions = np.zeros(subject.shape, np.float32)
    wm = np.argwhere(np.isin(subject.labels, CEREBRAL_WM))
    for centre in wm[np.random.default_rng(0).choice(len(wm), 12)]:
        lesions[tuple(slice(c - 3, c + 4) for c in centre)] = 1.0
    lesions *= np.isin(subject.labels, CEREBRAL_WM)
    grey = np.isin(subject.labels, GREY_MATTER)
    core = ndimage.binary_erosion(lesions > 0.5, iterations=1)
    away = ~ndimage.binary_dilation(grey, np.ones((3, 3, 3), bool), iterations=4)  # the blur's reach
    brighter = 0
    for seed in range(6):
        v4 = paint(subject, lesions, np.random.default_rng(seed), RANGES_V4)
        v5 = paint(subject, lesions, np.random.default_rng(seed), RANGES_V5)
        np.testing.assert_array_equal(v4[away], v5[away])
        assert (v5[grey] <= v4[grey] * 1.0001 + 1e-4).all()
        lesion, cortex5, cortex4 = np.median(v5[core]), np.median(v5[grey]), np.median(v4[grey])
        assert cortex5 < lesion
        brighter += cortex4 >= lesion
    assert brighter > 0  # in v4 grey matter reached the lesions in some of these cases
    a, b = make_case(1, 6, version=4), make_case(1, 6, version=5)  # a pattern case: same acquisition
    assert a.info["lesion_source"] == b.info["lesion_source"] != "none"
    assert {k: v for k, v in a.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in b.info.items() if k != "synthesis_version"}
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.truth), sitk.GetArrayFromImage(b.truth))
    healthy = np.zeros_like(lesions)
    np.testing.assert_array_equal(paint(subject, healthy, np.random.default_rng(1), RANGES_V4),
                                  paint(subject, healthy, np.random.default_rng(1), RANGES_V5))


def test_v6_unites_real_masks_of_different_patients():
    """v6: a case with real lesions unites one to three patients' masks, never one twice, and the
    union holds every mask's lesions; v1-v5 draw none (their cases stay as they were)."""
    from pathlib import Path

    from deepwml.synthesis.generator import REAL_MASK_COUNTS_V6, VERSIONS, _extra_masks, make_case

    masks = [Path(f"patient{i:02d}_lesions_mni.nii.gz") for i in range(1, 28)]
    counts = [len(_extra_masks(np.random.default_rng(k), REAL_MASK_COUNTS_V6, masks, masks[0])) + 1
              for k in range(400)]
    shares = np.bincount(counts, minlength=4)[1:] / len(counts)
    assert np.allclose(shares, list(REAL_MASK_COUNTS_V6.values()), atol=0.07)
    for k in range(50):
        extra = _extra_masks(np.random.default_rng(k), {3: 1.0}, masks, masks[0])
        assert len(extra) == 2 and len(set(extra)) == 2 and masks[0] not in extra
    assert all(VERSIONS[v].real_mask_counts is None for v in range(1, 6))

    case = make_case(2, 51, version=6)  # a real-lesion case of three patients (seed 51: stage 13's)
    names = case.info["lesion_source"].split(":")[1].split("+confluent")[0].split("+")
    assert len(names) == 3 and len(set(names)) == len(names)
    assert _arrays(case)[1].any()



def test_v7_lesions_are_faint_at_their_rim_and_full_in_their_core():
    """v7's core profile: the rim fraction at a lesion's edge, the full contrast deep inside, 1
    outside; a v7 case is its v6 case (truth, brain, acquisition) with other lesion intensities."""
    from dataclasses import replace

    from deepwml.synthesis.appearance import RANGES_V7, core_profile
    from deepwml.synthesis.generator import make_case

    z, y, x = np.mgrid[:40, :40, :40]
    ball = (((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 10 ** 2).astype(np.float32)
    ranges = replace(RANGES_V7, rim_contrast=(0.4, 0.4), core_depth_mm=(3.0, 3.0))
    profile = core_profile(ball, ranges, np.random.default_rng(0))
    edge = (ball > 0) & ~ndimage.binary_erosion(ball > 0)
    assert np.allclose(profile[edge], 0.4) and profile[20, 20, 20] == 1.0 and (profile[ball == 0] == 1.0).all()
    assert 0.4 < profile[20, 20, 12] < 1.0  # 2 mm inside: on the ramp
    assert (core_profile(np.zeros((4, 4, 4), np.float32), ranges, np.random.default_rng(0)) == 1).all()

    v6, v7 = make_case(2, 51, version=6), make_case(2, 51, version=7)
    (f6, t6, b6), (f7, t7, b7) = _arrays(v6), _arrays(v7)
    assert (t6 == t7).all() and (b6 == b7).all() and t6.any()
    assert {k: v for k, v in v6.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in v7.info.items() if k != "synthesis_version"}
    rim = (t6 > 0) & ~ndimage.binary_erosion(t6 > 0)
    assert np.median(f7[rim].astype(float)) < np.median(f6[rim].astype(float))


def test_the_stored_registrations_are_used_and_fit_the_label_maps(monkeypatch):
    """Synthesis reads registrations.json (the same transforms on any machine) and falls back to
    registering only for a label map other than the one registered; registering again here lands
    on the stored transform."""
    from deepwml.synthesis import lesions

    subject = load_subject(label_map_paths()[0])
    stored = lesions.stored_registration(subject)
    assert stored is not None
    fresh_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    try:
        fresh = lesions._register(subject)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(fresh_threads)
    a = np.asarray(lesions.registration_record(subject, stored)["affine_parameters"])
    b = np.asarray(lesions.registration_record(subject, fresh)["affine_parameters"])
    assert np.allclose(a, b, atol=1e-6), np.abs(a - b).max()

    def no_registration(_subject):
        raise AssertionError("registered although stored")

    monkeypatch.setattr(lesions, "_REGISTRATIONS", {})
    monkeypatch.setattr(lesions, "_register", no_registration)
    assert lesions.mni_to_subject(subject).GetParameters() == stored.GetParameters()
    other = dataclasses.replace(subject, labels_sha256="0" * 64)
    monkeypatch.setattr(lesions, "_REGISTRATIONS", {})
    monkeypatch.setattr(lesions, "_register", lambda s: "registered")
    assert lesions.stored_registration(other) is None and lesions.mni_to_subject(other) == "registered"


def test_synthesis_in_worker_processes_writes_the_serial_cases(tmp_path, monkeypatch):
    from deepwml.synthesis import generator

    serial = generator.generate_dataset(tmp_path / "serial", 2, seed=7, progress=False, version=6, workers=1)
    monkeypatch.setattr(generator, "CASES_PER_WORKER", 1)
    parallel = generator.generate_dataset(tmp_path / "parallel", 2, seed=7, progress=False, version=6, workers=2)
    assert serial.read_text() == parallel.read_text()
    files = sorted(p.relative_to(serial.parent) for p in serial.parent.rglob("*.nii.gz"))
    assert len(files) == 10  # flair, label, white_matter, mesial_temporal, brain per case
    for name in files:
        assert (serial.parent / name).read_bytes() == (parallel.parent / name).read_bytes(), name


def test_v8_brightens_white_matter_faintly_and_never_labels_it():
    """v8's diffuse white-matter brightening: a field of 1 outside cerebral white matter, at most
    1 + the gain inside, absent when its probability is 0; a v8 case is its v7 case (truth,
    brain, acquisition) with the white matter brighter in places and nothing else changed."""
    from dataclasses import replace

    from deepwml.synthesis.anatomy import CEREBRAL_WM, SUBJECT_LESION_LABELS, label_map_paths, load_subject
    from deepwml.synthesis.appearance import RANGES_V7, RANGES_V8, diffuse_white_matter
    from deepwml.synthesis.generator import make_case

    subject = load_subject(label_map_paths()[0])
    white = np.isin(subject.labels, CEREBRAL_WM + SUBJECT_LESION_LABELS)
    assert diffuse_white_matter(subject, RANGES_V7, np.random.default_rng(0)) is None
    for layout in ("patchy", "superior", "periventricular"):
        ranges = replace(RANGES_V8, diffuse_wm_probability=1.0, diffuse_wm_gain=(0.1, 0.1),
                         diffuse_wm_layouts=((layout, 1.0),))
        field = diffuse_white_matter(subject, ranges, np.random.default_rng(3))
        assert (field[~white] == 1).all() and field.max() <= 1.1 + 1e-6
        assert (field[white] > 1.01).mean() > 0.02, layout  # brighter in places, not a speck
        assert (field[white] > 1.01).mean() < 0.95, layout  # ... and not a uniform shift
    ranges = replace(RANGES_V8, diffuse_wm_probability=1.0, diffuse_wm_layouts=(("superior", 1.0),))
    field = diffuse_white_matter(subject, ranges, np.random.default_rng(3))
    # gathered towards the top of the brain: the physical superior coordinate (LPS z) of the
    # brightened voxels is above the white matter's on average
    direction = np.asarray(subject.image.GetDirection()).reshape(3, 3)
    k, j, i = np.nonzero(white)
    z = direction[2] @ np.stack([i, j, k]).astype(float)  # 1 mm spacing; the origin cancels
    bright = field[white] > 1.01
    assert z[bright].mean() > z.mean() + 10

    v7, v8 = make_case(1, 72, version=7), make_case(1, 72, version=8)
    (f7, t7, b7), (f8, t8, b8) = _arrays(v7), _arrays(v8)
    assert (t7 == t8).all() and (b7 == b8).all()
    assert {k: v for k, v in v7.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in v8.info.items() if k != "synthesis_version"}
    diff = f8.astype(float) - f7.astype(float)
    assert (diff[b7 > 0] > 0).any() and (diff[b7 == 0] == 0).mean() > 0.99


def test_v9_labels_only_the_visibly_brighter_lesion_voxels():
    """v9 paints v7's image and labels a lesion voxel only where the painted image is at least
    min_visible_contrast times the image without the lesion: same FLAIR, brain and acquisition as
    its v7 case, a truth inside v7's, and what it drops was faint."""
    from dataclasses import replace

    from deepwml.synthesis.anatomy import CEREBRAL_WM, label_map_paths, load_subject
    from deepwml.synthesis.appearance import RANGES_V7, RANGES_V9, paint_with_truth
    from deepwml.synthesis.generator import make_case

    assert RANGES_V7.min_visible_contrast is None and RANGES_V9.min_visible_contrast == 1.08
    subject = load_subject(label_map_paths()[0])
    lesions = np.zeros(subject.shape, np.float32)
    deep_white = ndimage.binary_erosion(np.isin(subject.labels, CEREBRAL_WM), np.ones((3, 3, 3)), iterations=6)
    centre = np.argwhere(deep_white)[0]
    box = tuple(slice(int(c) - 5, int(c) + 6) for c in centre)  # 11 mm, all white matter
    lesions[box] = 1.0
    # lesions vary +-15 % and white matter +-5 %: 0.8x stays under 1.08x its background, 1.6x over it
    faint = replace(RANGES_V9, lesion_over_wm=(0.8, 0.8), lesion_over_cortex=(0.0, 0.0),
                    faint_lesion_probability=0.0, rim_contrast=None, texture_std=(0.0, 0.0))
    _, truth = paint_with_truth(subject, lesions, np.random.default_rng(0), faint)
    assert not truth.any()  # drawn, not visibly brighter: not labelled
    bright = replace(faint, lesion_over_wm=(1.6, 1.6))
    _, truth = paint_with_truth(subject, lesions, np.random.default_rng(0), bright)
    assert np.array_equal(truth, lesions)  # visibly brighter throughout: labelled as drawn
    # v1-v8 label the mask as drawn
    assert paint_with_truth(subject, lesions, np.random.default_rng(0), RANGES_V7)[1] is lesions

    v7, v9 = make_case(2, 72, version=7), make_case(2, 72, version=9)
    (f7, t7, b7), (f9, t9, b9) = _arrays(v7), _arrays(v9)
    assert (f7 == f9).all() and (b7 == b9).all() and (t9 <= t7).all() and 0 < t9.sum() < t7.sum()
    assert {k: v for k, v in v7.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in v9.info.items() if k != "synthesis_version"}
    dropped = (t7 > 0) & (t9 == 0)
    assert np.median(f7[dropped].astype(float)) < np.median(f7[t9 > 0].astype(float))


def test_v10_moves_the_real_masks_and_nothing_else():
    """v10 is v7 with every real mask moved by a random rigid motion in MNI space: the motions are
    rigid and within their bounds, a moved mask still lies only where lesions may, a case with real
    lesions keeps its v7 draws (source, acquisition, brain) but not its lesion places, and a case
    with patterns only is its v7 case exactly."""
    from deepwml.synthesis.generator import make_case
    from deepwml.synthesis.lesions import (MASK_ROTATION_DEG, MASK_SHIFT_MM, lesion_mask_paths,
                                           random_displacement, real_lesions)

    for seed in range(5):
        motion = random_displacement(np.random.default_rng(seed))
        matrix = np.asarray(motion.GetMatrix()).reshape(3, 3)
        assert np.allclose(matrix @ matrix.T, np.eye(3)) and np.isclose(np.linalg.det(matrix), 1.0)
        assert np.all(np.abs(motion.GetTranslation()) <= MASK_SHIFT_MM)
        assert np.all(np.abs(np.rad2deg([motion.GetAngleX(), motion.GetAngleY(), motion.GetAngleZ()]))
                      <= MASK_ROTATION_DEG)

    subject = load_subject(label_map_paths()[0])
    mask = lesion_mask_paths()[0]
    at_place = real_lesions(subject, mask, np.random.default_rng(1))
    shift = sitk.TranslationTransform(3, (0.0, 0.0, 20.0))  # LPS z: the mask sampled 20 mm higher
    moved = real_lesions(subject, mask, np.random.default_rng(1), shift)
    assert at_place.sum() > 100 and moved.sum() > 100
    assert (moved[subject.lesion_allowed_soft == 0] == 0).all()
    overlap = np.minimum(at_place, moved).sum() / at_place.sum()
    assert overlap < 0.5  # lesions ~1 cm across moved by 2 cm: mostly elsewhere

    real_index, pattern_index = 2, 3  # seed 5: real:patient22+patient13, pattern+confluent
    v7, v10 = make_case(real_index, 5, version=7), make_case(real_index, 5, version=10)
    assert v7.info["lesion_source"].startswith("real:")
    assert {k: v for k, v in v7.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in v10.info.items() if k != "synthesis_version"}
    (_, t7, b7), (_, t10, b10) = _arrays(v7), _arrays(v10)
    assert (b7 == b10).all() and t10.any() and ((t7 > 0) & (t10 > 0)).sum() < 0.5 * t7.sum()
    p7, p10 = make_case(pattern_index, 5, version=7), make_case(pattern_index, 5, version=10)
    assert "real" not in p7.info["lesion_source"]
    assert all((a == b).all() for a, b in zip(_arrays(p7), _arrays(p10)))


def test_v11_brightens_normal_tracts_on_both_sides_and_labels_nothing():
    """v11 is v7 with the corticospinal tracts and peritrigonal white matter faintly brighter: the
    MNI field is bounded by the gain range, mirrored left-right within the asymmetry allowed; in a
    subject it touches cerebral white matter only; a v11 case has its v7 truth, brain and draws, an
    image no darker anywhere and at most ~12 % brighter, both sides brightened alike."""
    from deepwml.synthesis.anatomy import CEREBRAL_WM, SUBJECT_LESION_LABELS
    from deepwml.synthesis.generator import make_case
    from deepwml.synthesis.normal_tracts import ASYMMETRY, normal_tracts, tract_gain_mni

    gain = (0.03, 0.12)
    for seed in range(4):
        field = sitk.GetArrayFromImage(tract_gain_mni(np.random.default_rng(seed), gain))
        assert field.min() >= 0 and field.max() <= gain[1] * (1 + ASYMMETRY) + 1e-6
        if field.max() > 0:
            # the grid's x runs symmetric about MNI x = 0 (LPS origin -90, 91 voxels of 2 mm)
            left, right = field[..., :45], field[..., 46:][..., ::-1]
            assert abs(left.sum() - right.sum()) <= ASYMMETRY * 1.05 * max(left.sum(), right.sum())
            assert (left > 0.01).sum() > 50 and (right > 0.01).sum() > 50
    subject = load_subject(label_map_paths()[0])
    tracts = normal_tracts(subject, 1.0, gain, np.random.default_rng(3))
    assert tracts is not None and tracts.max() > 1.02
    white = np.isin(subject.labels, CEREBRAL_WM + SUBJECT_LESION_LABELS)
    assert (tracts[~white] == 1).all() and (tracts >= 1).all()
    assert normal_tracts(subject, 0.0, gain, np.random.default_rng(3)) is None

    drawn, undrawn = 2, 3  # seed 5: index 2 gets tracts, index 3 none (its own generator)
    v7, v11 = make_case(drawn, 5, version=7), make_case(drawn, 5, version=11)
    assert {k: v for k, v in v7.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in v11.info.items() if k != "synthesis_version"}
    (f7, t7, b7), (f11, t11, b11) = _arrays(v7), _arrays(v11)
    assert (t7 == t11).all() and (b7 == b11).all()
    changed = f11 != f7
    assert changed.any() and (f11 >= f7).all()
    bright = f7 > 60  # tissue, not background: ratios of uint8 values
    assert (f11[bright] / f7[bright]).max() <= 1.12 * (1 + ASYMMETRY) + 0.02
    columns = np.nonzero(changed)[2]
    middle = f7.shape[2] / 2
    assert min((columns < middle).sum(), (columns > middle).sum()) > 0.3 * changed.sum()
    assert all((a == b).all() for a, b in zip(_arrays(make_case(undrawn, 5, version=7)),
                                               _arrays(make_case(undrawn, 5, version=11))))


def test_v12_brightens_hippocampus_and_amygdala_above_the_cortex_and_labels_nothing():
    """v12 is v7 with the hippocampus and amygdala brighter than the cortex in most cases: on the
    1 mm painting only those four labels change, by a factor >= 1 that puts them at 1.0-1.25x the
    case's cortex (sides within +-5 %), texture kept; a v12 case has its v7 truth, brain and draws,
    and where it differs from its v7 image it is mostly brighter, in the mesial temporal lobes."""
    from deepwml.synthesis.anatomy import CORTEX, MESIAL_TEMPORAL
    from deepwml.synthesis.appearance import RANGES_V7, RANGES_V12, brighten_mesial_temporal, label_intensities
    from deepwml.synthesis.generator import make_case

    subject = load_subject(label_map_paths()[0])
    lut, cortex, _ = label_intensities(subject.labels, np.random.default_rng(4), RANGES_V7)
    image = lut[subject.labels] * (1 + 0.05 * np.random.default_rng(5).standard_normal(subject.shape))
    image = image.astype(np.float32)
    before = image.copy()
    always = dataclasses.replace(RANGES_V12, mesial_temporal_probability=1.0)
    assert brighten_mesial_temporal(image, subject.labels, lut, cortex, always, np.random.default_rng(6))
    mesial = np.isin(subject.labels, sum(MESIAL_TEMPORAL, ()))
    assert mesial.sum() > 1000 and (image[~mesial] == before[~mesial]).all()
    ratio = image[mesial] / before[mesial]
    assert ratio.min() >= 1.0 - 1e-6
    cortex_level = np.median(before[np.isin(subject.labels, CORTEX)])
    sides = [np.median(image[np.isin(subject.labels, side)]) / cortex_level for side in MESIAL_TEMPORAL]
    assert all(0.93 <= s <= 1.35 for s in sides) and max(sides) / min(sides) <= 1.11
    never = dataclasses.replace(RANGES_V12, mesial_temporal_probability=0.0)
    assert not brighten_mesial_temporal(image, subject.labels, lut, cortex, never, np.random.default_rng(6))

    drawn, undrawn = 0, 2  # seed 5: index 0 gets the bright mesial temporal lobes, index 2 not
    v7, v12 = make_case(drawn, 5, version=7), make_case(drawn, 5, version=12)
    assert {k: v for k, v in v7.info.items() if k != "synthesis_version"} == \
        {k: v for k, v in v12.info.items() if k != "synthesis_version"}
    (f7, t7, b7), (f12, t12, b12) = _arrays(v7), _arrays(v12)
    assert (t7 == t12).all() and (b7 == b12).all()
    difference = f12.astype(np.int32) - f7.astype(np.int32)
    brighter = difference > 0.02 * np.percentile(f7, 99)
    assert brighter.sum() > 1000 and (difference < -0.01 * np.percentile(f7, 99)).sum() < 0.01 * brighter.sum()
    columns = np.nonzero(brighter)[2]
    middle = f7.shape[2] / 2
    assert min((columns < middle).sum(), (columns > middle).sum()) > 0.3 * brighter.sum()
    assert all((a == b).all() for a, b in zip(_arrays(make_case(undrawn, 5, version=7)),
                                               _arrays(make_case(undrawn, 5, version=12))))
