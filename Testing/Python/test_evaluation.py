"""Metrics against hand-computed cases, statistics against scipy, consensus and the report."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import stats

from deepwml.evaluation.consensus import run_consensus
from deepwml.evaluation.metrics import (avd_percent, dice, far_false_positive_ml, hausdorff95,
                                        lesion_detection, precision, sensitivity, slice_metrics,
                                        volume_metrics)
from deepwml.evaluation.report import evaluate
from deepwml.evaluation.stats import compare_groups, lv_group, shapiro


def box(shape=(4, 20, 20), *slices):
    m = np.zeros(shape, bool)
    for s in slices:
        m[s] = True
    return m


def test_slice_metrics_hand_computed():
    t = np.zeros((10, 10), bool)
    p = np.zeros((10, 10), bool)
    t[2:6, 2:6] = True  # 16 px
    p[4:8, 2:6] = True  # 16 px, 8 overlap
    m = slice_metrics(t, p)
    assert (m["tp"], m["fp"], m["fn"]) == (8, 8, 8)
    assert m["dice"] == pytest.approx(0.5)
    assert m["sensitivity"] == pytest.approx(0.5) and m["precision"] == pytest.approx(0.5)


def test_empty_identical_disjoint_and_one_voxel_cases():
    empty = np.zeros((5, 5), bool)
    one = empty.copy()
    one[2, 2] = True
    other = empty.copy()
    other[0, 0] = True
    assert math.isnan(dice(empty, empty))  # undefined, never silently 1 or 0
    assert math.isnan(sensitivity(empty, one)) and precision(empty, one) == 0.0 and dice(empty, one) == 0.0
    assert math.isnan(precision(one, empty)) and sensitivity(one, empty) == 0.0
    assert dice(one, one) == 1.0 and sensitivity(one, one) == 1.0 and precision(one, one) == 1.0
    assert dice(one, other) == 0.0


def image(arr, spacing=(1.0, 1.0, 3.0)):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    return img


def test_hausdorff95_hand_computed():
    t = box((3, 20, 20), (1, slice(5, 10), slice(5, 10)))
    p = box((3, 20, 20), (1, slice(5, 10), slice(8, 13)))  # shifted 3 voxels in x
    assert hausdorff95(image(t), image(p)) == pytest.approx(3.0)
    assert hausdorff95(image(t), image(t)) == 0.0
    assert math.isnan(hausdorff95(image(t), image(np.zeros_like(t))))
    # spacing is honoured (mm): 3 voxels of 0.5 mm
    assert hausdorff95(image(t, (0.5, 0.5, 3.0)), image(p, (0.5, 0.5, 3.0))) == pytest.approx(1.5)


def test_avd_and_lesion_detection_hand_computed():
    t = box((3, 20, 20), (1, slice(1, 3), slice(1, 3)), (1, slice(10, 12), slice(10, 12)),
            (1, slice(15, 17), slice(1, 3)))  # three 4-voxel lesions
    p = box((3, 20, 20), (1, slice(1, 3), slice(1, 3)), (1, slice(5, 7), slice(15, 17)))  # one hit, one FP
    assert avd_percent(t, p) == pytest.approx(abs(8 - 12) / 12 * 100)
    recall, f1 = lesion_detection(t, p)
    assert recall == pytest.approx(1 / 3)
    assert f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    # 26-connectivity: diagonal neighbours across slices form one lesion
    diag = np.zeros((3, 5, 5), bool)
    diag[0, 1, 1] = diag[1, 2, 2] = True
    assert lesion_detection(diag, diag) == (1.0, 1.0)
    vm = volume_metrics(image(t), image(p))
    assert vm["dice"] == pytest.approx(2 * 4 / (12 + 8))


def test_far_false_positive_ml_hand_computed():
    """Marks farther than 3 mm (physical, 3D) from every true voxel; a lesion's rim never counts."""
    t = box((5, 20, 20), (2, slice(5, 10), slice(5, 10)))
    p = t.copy()
    p[2, 5:10, 10] = True        # the rim: 1 mm beside the lesion, 5 voxels
    p[3, 7, 7] = True            # one slice above: exactly 3 mm, not farther
    p[4, 7, 7] = True            # two slices above: 6 mm, far
    p[2, 7, 14] = True           # 5 mm beside it in-plane: far
    voxel_ml = 1.0 * 1.0 * 3.0 / 1000.0
    assert far_false_positive_ml(image(t), image(p)) == pytest.approx(2 * voxel_ml)
    assert far_false_positive_ml(image(t), image(t)) == 0.0
    assert far_false_positive_ml(image(t), image(np.zeros_like(t))) == 0.0
    # no lesion at all: every mark is far
    assert far_false_positive_ml(image(np.zeros_like(t)), image(p)) == pytest.approx(p.sum() * voxel_ml)
    # spacing is honoured: at 0.5 mm in-plane the 5-voxel gap is 2.5 mm, no longer far
    fine = far_false_positive_ml(image(t, (0.5, 0.5, 3.0)), image(p, (0.5, 0.5, 3.0)))
    assert fine == pytest.approx(1 * 0.25 * 3.0 / 1000.0)
    assert volume_metrics(image(t), image(p))["far_fp_ml"] == pytest.approx(2 * voxel_ml)


def test_lv_groups_follow_the_paper():
    assert [lv_group(v) for v in (0.0, 0.19, 0.2, 0.69, 0.7, 1.99, 2.0, 4.99, 5.0, 30)] == \
        ["G1", "G1", "G2", "G2", "G3", "G3", "G4", "G4", "G5", "G5"]


def test_statistics_match_scipy():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(0.6, 0.1, 30), rng.normal(0.62, 0.1, 25), rng.normal(0.8, 0.1, 28)
    res = compare_groups({"a": list(a), "b": list(b), "c": list(c)})
    assert res["kruskal"]["p"] == pytest.approx(stats.kruskal(a, b, c).pvalue)
    assert res["shapiro"]["a"]["p"] == pytest.approx(stats.shapiro(a).pvalue)
    pairs = {(p["a"], p["b"]): p for p in res["pairwise"]}
    raw = stats.mannwhitneyu(a, c, alternative="two-sided").pvalue
    assert pairs[("a", "c")]["p_bonferroni"] == pytest.approx(min(1.0, raw * 3))
    # no pairwise tests when Kruskal-Wallis is not significant
    same = compare_groups({"a": list(a), "b": list(rng.normal(0.6, 0.1, 30))})
    assert same["kruskal"]["p"] > 0.05 and same["pairwise"] == []
    assert math.isnan(shapiro([1.0, 2.0])["p"])
    # a known textbook value: Kruskal-Wallis H for three small groups
    assert compare_groups({"x": [1, 2, 3], "y": [4, 5, 6], "z": [7, 8, 9]})["kruskal"]["H"] == pytest.approx(7.2)


def test_consensus_flags_low_agreement_and_builds_ground_truth(phantom_set, tmp_path):
    report = run_consensus(phantom_set, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "consensus.csv", encoding="utf-8")))
    assert len(rows) == 9
    for r in rows:
        assert (r["status"] == "relabel") == (float(r["dice"]) < 0.85)
        assert bool(r["consensus"]) == (r["status"] == "pass")
    gt = list(csv.DictReader(open(tmp_path / "consensus_manifest.csv", encoding="utf-8")))
    assert {g["case"] for g in gt} == {r["case"] for r in rows if r["status"] == "pass"}
    assert "re-labelling" in report.read_text(encoding="utf-8")
    # STAPLE of two raters lies between their intersection and union
    r = next(r for r in rows if r["status"] == "pass")
    cons = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / r["consensus"]))) > 0
    base = phantom_set.parent / r["case"]
    r1, r2 = (sitk.GetArrayFromImage(sitk.ReadImage(str(base / f"rater{i}.nii.gz"))) > 0 for i in (1, 2))
    assert (r1 & r2)[cons == 0].sum() == 0 and cons[~(r1 | r2)].sum() == 0


def test_evaluation_report_builds_on_phantoms(phantom_set, tmp_path):
    report = evaluate(phantom_set, tmp_path, device="cpu", split="all", max_cases=4, progress=False)
    html = report.read_text(encoding="utf-8")
    for part in ("Table 2", "Kruskal", "MICCAI", "data:image/png;base64"):
        assert part in html
    for name in ("per_slice.csv", "per_volume.csv", "table2.csv", "table2.md", "statistics.json",
                 "fig2_overlays.png", "fig3_boxplots.png", "fig4_lesion_volume_groups.png", "timings.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    slices = list(csv.DictReader(open(tmp_path / "per_slice.csv", encoding="utf-8")))
    assert summary["counts"]["lesion_slices"] == len(slices)
    assert summary["counts"]["slices"] == (summary["counts"]["lesion_slices"] + summary["counts"].get("both_empty", 0)
                                           + summary["counts"].get("false_positive_slices", 0))
    table = list(csv.DictReader(open(tmp_path / "table2.csv", encoding="utf-8")))
    overall = table[-1]
    dices = [float(s["dice"]) for s in slices]
    assert float(overall["median_dice"]) == pytest.approx(np.median(dices), abs=1e-3)
    with pytest.raises(Exception, match="is not empty"):
        evaluate(phantom_set, tmp_path, device="cpu", split="all", max_cases=1, progress=False)


def test_evaluate_takes_segment_tta_and_says_so(phantom_set, tiny_model_dir, tmp_path):
    """``evaluate`` measures what ``segment`` gives (TTA on by default, ``--no-tta`` one pass), and its
    report and summary say which."""
    from deepwml.cli import main

    for flag, out in (([], tmp_path / "tta"), (["--no-tta"], tmp_path / "plain")):  # on by default (float32)
        assert main(["evaluate", str(phantom_set), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                     "--split", "all", "--max-cases", "1", "-q", *flag]) == 0
    tta = json.loads((tmp_path / "tta" / "summary.json").read_text(encoding="utf-8"))
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text(encoding="utf-8"))
    assert tta["flip_tta"] is True and plain["flip_tta"] is False
    assert "flip test-time augmentation" in (tmp_path / "tta" / "report.html").read_text(encoding="utf-8")
    assert "flip test-time augmentation" not in (tmp_path / "plain" / "report.html").read_text(encoding="utf-8")


def test_marked_over_white_matter_reads_the_scans_own_white_matter_level():
    """The white-matter level is the mode of the brain's brighter half, whatever the scale; marks
    on lesions score their contrast, marks on white matter about 1, no marks or no brain nothing.
    Both are measured from the scan's air level (as normalisation measures the head), so an offset
    or a z-scoring (affine maps) leave the ratio as it was."""
    from deepwml.evaluation.mark_contrast import marked_over_white_matter, white_matter_level

    rng = np.random.default_rng(0)
    shape = (20, 64, 64)
    tissue = rng.choice([0, 1, 2], size=shape, p=[0.15, 0.6, 0.25])  # fluid, white matter, cortex
    flair = np.choose(tissue, [20.0, 100.0, 125.0]) + rng.normal(0, 3, shape)
    lesion = np.zeros(shape, bool)
    lesion[8:12, 20:30, 20:30] = True
    flair[lesion] = 150 + rng.normal(0, 3, int(lesion.sum()))
    air = np.ones(shape, bool)
    air[:, 4:-4, 4:-4] = False
    flair[air] = np.abs(rng.normal(0, 2, int(air.sum())))  # magnitude noise around the head
    brain = ~air
    brain[:, :6] = False
    assert white_matter_level(flair, brain) == pytest.approx(100, abs=3)
    assert white_matter_level(7 * flair + 1000, brain) == pytest.approx(7 * 100 + 1000, rel=0.01)
    contrast = marked_over_white_matter(flair, brain, lesion)
    assert contrast == pytest.approx(1.5, abs=0.05)
    on_white = (tissue == 1) & ~lesion & brain
    assert marked_over_white_matter(flair, brain, on_white) == pytest.approx(1.0, abs=0.04)
    assert marked_over_white_matter(flair, brain, np.zeros(shape, bool)) is None
    assert marked_over_white_matter(flair, np.zeros(shape, bool), lesion) is None
    zscored = (flair - flair.mean()) / flair.std()  # negative values: no raw ratio ...
    assert white_matter_level(zscored, brain) is None
    for affine in (zscored, 7 * flair + 1000):  # ... but measured from the air, the same one
        assert marked_over_white_matter(affine, brain, lesion) == pytest.approx(contrast, rel=0.02)
