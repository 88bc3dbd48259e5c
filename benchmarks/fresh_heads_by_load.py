"""Per-volume Dice of ``deepwml evaluate`` reports on the fresh synthetic heads, by lesion load,
and the README's rule for a candidate to replace the bundled model, read from those reports.

    .venv/bin/python benchmarks/fresh_heads_by_load.py REPORT_DIR [REPORT_DIR ...]
    .venv/bin/python benchmarks/fresh_heads_by_load.py --judge SHIPPED_WVAL CANDIDATE_WVAL SHIPPED_PTEST CANDIDATE_PTEST
    .venv/bin/python benchmarks/fresh_heads_by_load.py --proxy SHIPPED_WH3D CANDIDATE_WH3D

Each REPORT_DIR is the output of ``deepwml evaluate WORK/wval.csv --model M`` (the fresh synthetic heads
of ``judge_candidate.sh``, which no model here was trained on). Prints, per report, the median Dice over
the heads with lesions, over the load groups < 3 ml / 3-20 ml / >= 20 ml, and the volume marked
on the lesion-free heads. Why by load: the overall median sits in the medium loads, so a change
for the heavy confluent loads (the known failure) or the light ones does not show in it; the
rules of stages 13-14 (docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0") read the >= 20 ml group. Synthetic data
only; no real scan is read.

``--judge`` prints criteria (1)-(4) of the rule (README "Training"; its second form, of 2026-12-01 after
the twenty-sixth experiment, before any GPU run) for a candidate against the shipped model, both evaluated
with the defaults on the same heads, and exits 0 only if all four pass; criterion (5), the real floors, is a
veto run afterwards (``MODEL=DIR bash benchmarks/real_scans.sh``). The criteria compare the two models
head by head (paired), because the first form's difference of two medians and total of lesion-free marks
flipped with the set: the twenty-first's candidate gained 0.024 in median on the 60 heads of seeds 7/8 and
lost 0.032 on 120 fresh heads of seeds 91/92, while its paired mean difference was -0.007 and -0.004; and
one lesion-free head of 23 ml decided the total of ten.
``benchmarks/judge_candidate.sh`` makes the data and the four reports and calls it, so a judgement
does not depend on a session's untracked scripts.

``--proxy`` prints the near-healthy proxy (information, not a criterion): the false-positive millilitres
(marked minus true positive) each model leaves on whole-head 1 mm 3D synthetic heads read as 3 mm slabs
(``judge_candidate.sh`` with ``PROXY=1``), and, from reports that have ``deepwml evaluate``'s ``far_fp_ml``
column, the ml marked farther than 3 mm from every true lesion (experiment 53's criterion (d): the proxy
also counts the rims of lesions a candidate newly finds). Why: over six models (1.6.0, 1.7.0, experiments 30, 32, 41, 42)
its totals ranked the models as the near-healthy real head's marks did, with one neighbouring pair swapped,
while criteria (1)-(4) passed experiment 42, which that head's floor then vetoed (docs/EXPERIMENTS.md, the forty-second).
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from deepwml.training.threshold_choice import drawn  # the threshold sweep's test too; re-exported for the scripts

#: (name, lowest ml, highest ml) of the load groups; truth 0 is a lesion-free head
GROUPS = (("< 3 ml", 1e-9, 3.0), ("3-20 ml", 3.0, 20.0), (">= 20 ml", 20.0, float("inf")))


class Head(NamedTuple):
    """One volume of a report."""
    truth_ml: float
    pred_ml: float
    dice: float
    #: lesions were drawn in it (its manifest's disease is not "none"), even where none reached the truth
    drawn: bool
    #: ml marked farther than 3 mm from every true lesion voxel (``deepwml evaluate``'s ``far_fp_ml``);
    #: NaN in reports written before that column existed
    far_fp_ml: float = float("nan")


def lesion_free(head: Head) -> bool:
    """Nothing drawn and nothing in the truth. Why not truth 0 alone: a head drawn with a patient's
    0.3 ml of lesions on 7 mm slices can keep none in its truth (the lesion fraction stays below 0.4 on
    the acquired grid) while the image still shows them faintly; marks there are not false positives
    of a healthy head (2 of the 120 fresh heads of seeds 91/92)."""
    return head.truth_ml == 0 and not head.drawn


def per_case(report: Path) -> dict[str, Head]:
    """``{case: Head}`` of every volume of a ``deepwml evaluate`` report."""
    with open(report / "per_volume.csv", newline="", encoding="utf-8") as handle:
        return {r["case"]: Head(float(r["truth_ml"]), float(r["pred_ml"]), float(r["dice"]),
                                drawn(r, float(r["truth_ml"])), float(r.get("far_fp_ml") or "nan"))
                for r in csv.DictReader(handle)}


def per_volume(report: Path) -> list[Head]:
    """Every volume of a ``deepwml evaluate`` report."""
    return list(per_case(report).values())


def figures(report: Path) -> dict[str, float | int]:
    rows = per_volume(report)
    lesions = [h.dice for h in rows if h.truth_ml > 0]
    out: dict[str, float | int] = {"with lesions": len(lesions), "median": statistics.median(lesions)}
    for name, low, high in GROUPS:
        group = [h.dice for h in rows if low <= h.truth_ml < high]
        out[f"{name} (n {len(group)})"] = statistics.median(group) if group else float("nan")
    free = [h.pred_ml for h in rows if lesion_free(h)]
    out[f"lesion-free heads (n {len(free)}), ml marked in all"] = sum(free)
    return out


#: criterion (1): the issue's phantom guard, today's per-volume Dice of 0.2.0 on the phantom test
PHANTOM_GUARD = 0.691
#: criterion (3): the mean paired Dice difference on the >= 20 ml heads may be at most this much below 0
HEAVY_LOSS = 0.01
#: criterion (2): bootstrap resamples of the heads for the confidence interval of the mean paired gain
BOOTSTRAP_RESAMPLES = 2000


def phantom_test_median(report: Path) -> float:
    """Median per-volume Dice of a phantom-test report (criterion 1)."""
    return statistics.median(h.dice for h in per_volume(report))


def same_heads(shipped: Path, candidate: Path) -> tuple[dict[str, Head], dict[str, Head]]:
    """Both reports' heads; refused unless they hold the same ones: a judgement on different sets
    would compare nothing."""
    a, b = per_case(shipped), per_case(candidate)
    if a.keys() != b.keys():
        raise SystemExit(f"{shipped} and {candidate} do not hold the same heads: evaluate both on one manifest")
    return a, b


def paired(shipped: dict[str, Head], candidate: dict[str, Head], value: str,
           keep: Callable[[Head], bool]) -> np.ndarray:
    """Candidate minus shipped, head by head, of ``value`` ("pred_ml" or "dice") over the heads ``keep``
    accepts (the reports of :func:`same_heads`)."""
    return np.array([getattr(candidate[case], value) - getattr(shipped[case], value)
                     for case in sorted(shipped) if keep(shipped[case])])


def bootstrap_mean_interval(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                            seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of ``differences`` (heads resampled; fixed seed,
    so a judgement is reproducible)."""
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), (resamples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def judge(shipped_wval: Path, candidate_wval: Path, shipped_ptest: Path,
          candidate_ptest: Path) -> list[tuple[str, float, float, float, bool]]:
    """(criterion, shipped figure, candidate figure, bound, passed) for criteria (1)-(4); for the
    paired criteria the "shipped" figure is 0, the candidate's is its paired statistic."""
    shipped, candidate = same_heads(shipped_wval, candidate_wval)
    gain = paired(shipped, candidate, "dice", lambda head: head.truth_ml > 0)
    low, _ = bootstrap_mean_interval(gain)
    heavy = paired(shipped, candidate, "dice", lambda head: head.truth_ml >= GROUPS[-1][1])
    free = paired(shipped, candidate, "pred_ml", lesion_free)
    free_total = sum(head.pred_ml for head in shipped.values() if lesion_free(head))
    ship_ptest, cand_ptest = phantom_test_median(shipped_ptest), phantom_test_median(candidate_ptest)
    heavy_mean = float(heavy.mean()) if len(heavy) else 0.0
    free_median = float(np.median(free)) if len(free) else 0.0
    free_candidate = free_total + float(free.sum())
    return [("(1) phantom test, per-volume median Dice >= guard", ship_ptest, cand_ptest, PHANTOM_GUARD,
             cand_ptest >= PHANTOM_GUARD - 1e-12),
            (f"(2) heads with lesions (n {len(gain)}), lower end of the 95 % interval of the mean paired Dice "
             "gain > 0", 0.0, low, 0.0, low > 0),
            (f"(3) heads >= 20 ml (n {len(heavy)}), mean paired Dice difference >= -{HEAVY_LOSS}", 0.0, heavy_mean,
             -HEAVY_LOSS, heavy_mean >= -HEAVY_LOSS - 1e-12),
            (f"(4a) lesion-free heads (n {len(free)}), median paired ml difference <= 0", 0.0, free_median, 0.0,
             free_median <= 1e-9),
            ("(4b) lesion-free heads, ml marked in all <= shipped", free_total, free_candidate, free_total,
             free_candidate <= free_total + 1e-9)]


def false_positive_ml(head: Head) -> float:
    """Marked millilitres outside the truth: predicted minus true positive, the true positive read back from
    the Dice (Dice = 2 TP / (truth + predicted)); a head with nothing marked has none."""
    dice = head.dice if np.isfinite(head.dice) else 0.0
    return max(0.0, head.pred_ml - dice * (head.truth_ml + head.pred_ml) / 2)


def proxy(shipped_report: Path, candidate_report: Path) -> list[tuple[str, float, float]]:
    """(figure, shipped, candidate) of the near-healthy proxy on one set of heads (see the module docstring),
    and, where both reports have it, the ml marked far from every lesion (the cleaner figure: the proxy's
    marked-minus-true-positive also counts the rims of lesions a candidate newly finds, experiment 52)."""
    shipped, candidate = same_heads(shipped_report, candidate_report)
    fp_s = np.array([false_positive_ml(shipped[case]) for case in sorted(shipped)])
    fp_c = np.array([false_positive_ml(candidate[case]) for case in sorted(shipped)])
    figures = [(f"false-positive ml in all (n {len(fp_s)})", float(fp_s.sum()), float(fp_c.sum())),
               ("false-positive ml, median head", float(np.median(fp_s)), float(np.median(fp_c)))]
    far_s = np.array([shipped[case].far_fp_ml for case in sorted(shipped)])
    far_c = np.array([candidate[case].far_fp_ml for case in sorted(shipped)])
    if np.isfinite(far_s).all() and np.isfinite(far_c).all():
        figures.append((f"ml marked > 3 mm from every true lesion, in all (n {len(far_s)})", float(far_s.sum()),
                        float(far_c.sum())))
    return figures


def main(reports: list[Path]) -> None:
    for report in reports:
        print(report, "  ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                 for k, v in figures(report).items()))


if __name__ == "__main__":
    if len(sys.argv) < 2 or (sys.argv[1] == "--judge" and len(sys.argv) != 6) or \
            (sys.argv[1] == "--proxy" and len(sys.argv) != 4):
        sys.exit(__doc__)
    if sys.argv[1] == "--proxy":
        for name, shipped_figure, candidate_figure in proxy(Path(sys.argv[2]), Path(sys.argv[3])):
            print(f"near-healthy proxy (information, not a criterion), {name}: shipped {shipped_figure:.2f}, "
                  f"candidate {candidate_figure:.2f}")
        sys.exit(0)
    if sys.argv[1] == "--judge":
        verdicts = judge(*[Path(p) for p in sys.argv[2:6]])
        for name, shipped, candidate, bound, passed in verdicts:
            print(f"{name}: shipped {shipped:.4f}, candidate {candidate:.4f}, bound {bound:.4f}: "
                  f"{'pass' if passed else 'FAIL'}")
        ok = all(v[-1] for v in verdicts)
        print("criteria 1-4 pass: now run the real floors (5), MODEL=DIR bash benchmarks/real_scans.sh"
              if ok else "not shipped: a criterion failed")
        sys.exit(0 if ok else 1)
    main([Path(p) for p in sys.argv[1:]])
