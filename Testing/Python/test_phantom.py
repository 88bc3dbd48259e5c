"""Phantom generator: realistic acquisitions, lesion groups G1-G5, raters, determinism."""

from __future__ import annotations

import csv

import numpy as np
import SimpleITK as sitk

from deepwml.evaluation.metrics import dice
from deepwml.evaluation.stats import lv_group
from deepwml.lesion_summary import lesion_summary
from deepwml.phantom.generator import make_case


def test_phantom_set_manifest_and_acquisitions(phantom_set):
    rows = list(csv.DictReader(open(phantom_set, encoding="utf-8")))
    assert len(rows) == 9
    assert {r["disease"] for r in rows} >= {"MS", "CSVD"}  # NMOSD is drawn at random per case
    assert len({r["center"] for r in rows}) == 9
    for r in rows:
        img = sitk.ReadImage(str(phantom_set.parent / r["flair"]))
        size, spacing = img.GetSize(), img.GetSpacing()
        assert 17 <= size[2] <= 30
        assert 256 <= size[0] <= 512 and size[0] == size[1]
        assert 0.41 <= spacing[0] <= 0.94
        assert 3.0 <= float(r["slice_thickness_mm"]) <= 8.0 and spacing[2] >= float(r["slice_thickness_mm"]) - 1e-6
        for key in ("rater1", "rater2", "label"):
            lab = sitk.ReadImage(str(phantom_set.parent / r[key]))
            assert lab.GetSize() == size and lab.GetSpacing() == spacing


def test_phantoms_are_deterministic_and_flair_like():
    a, b = make_case(3, 42), make_case(3, 42)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.flair), sitk.GetArrayFromImage(b.flair))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a.rater1), sitk.GetArrayFromImage(b.rater1))
    flair = sitk.GetArrayFromImage(a.flair).astype(float)
    truth = sitk.GetArrayFromImage(a.truth) > 0
    brain = flair > np.percentile(flair, 60)
    assert truth.any()
    assert np.median(flair[truth]) > np.median(flair[brain & ~truth])  # lesions are hyperintense


def test_anatomy_has_skull_and_scalp_around_the_brain():
    """No skull stripping: the brain-extracted template gets a dark skull and a bright scalp shell."""
    from scipy import ndimage

    from deepwml.phantom.anatomy import load_anatomy

    a = load_anatomy()
    inside = a.intracranial > 0.5
    outside_mm = ndimage.distance_transform_edt(~inside)
    skull, scalp = a.skull > 0.5, a.scalp > 0.5
    assert skull.sum() > 1e5 and scalp.sum() > 1e5
    assert (skull & inside).sum() < 0.05 * skull.sum() and not (scalp & inside).any()  # edges are soft
    assert np.median(outside_mm[skull]) < np.median(outside_mm[scalp])  # scalp lies outside the skull


def test_lesion_volume_groups_and_rater_disagreement_cover_the_papers_range():
    groups, dices = set(), []
    for i in range(18):
        case = make_case(i, 7)
        for s in lesion_summary(case.truth)["slices"]:
            if s["volume_ml"] > 0:
                groups.add(lv_group(s["volume_ml"]))
        r1, r2 = (sitk.GetArrayFromImage(x) > 0 for x in (case.rater1, case.rater2))
        dices.append(dice(r1, r2))
    assert groups == {"G1", "G2", "G3", "G4", "G5"}
    dices = np.array(dices)
    assert (dices < 0.85).sum() >= 1, "the consensus check needs cases to reject"
    assert np.median(dices) >= 0.85
