"""Per-volume Dice of ``deepwml evaluate`` reports on the fresh synthetic heads, by lesion load,
and the README's rule for a candidate to replace the bundled model, read from those reports.

    .venv/bin/python benchmarks/fresh_heads_by_load.py REPORT_DIR [REPORT_DIR ...]
    .venv/bin/python benchmarks/fresh_heads_by_load.py --judge SHIPPED_WVAL CANDIDATE_WVAL SHIPPED_PTEST CANDIDATE_PTEST

Each REPORT_DIR is the output of ``deepwml evaluate work-data/b14/wval/manifest.csv --model M``
(60 fresh synthetic heads no model here was trained on). Prints, per report, the median Dice over
the heads with lesions, over the load groups < 3 ml / 3-20 ml / >= 20 ml, and the volume marked
on the lesion-free heads. Why by load: the overall median sits in the medium loads, so a change
for the heavy confluent loads (the known failure) or the light ones does not show in it; the
rules of stages 13-14 (README "Experiments after 1.2.0") read the >= 20 ml group. Synthetic data
only; no real scan is read.

``--judge`` prints criteria (1)-(4) of the rule (README "Training", fixed 2026-12-01 before any GPU
run; the twenty-first to twenty-fifth experiments were judged with it) for a candidate against the
shipped model, both evaluated with the defaults, and exits 0 only if all four pass; criterion (5),
the real floors, is a veto run afterwards (``MODEL=DIR bash benchmarks/real_scans.sh``).
``benchmarks/judge_candidate.sh`` makes the data and the four reports and calls it, so a judgement
does not depend on a session's untracked scripts.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

#: (name, lowest ml, highest ml) of the load groups; truth 0 is a lesion-free head
GROUPS = (("< 3 ml", 1e-9, 3.0), ("3-20 ml", 3.0, 20.0), (">= 20 ml", 20.0, float("inf")))


def per_volume(report: Path) -> list[tuple[float, float, float]]:
    """``(truth ml, predicted ml, Dice)`` of every volume of a ``deepwml evaluate`` report."""
    with open(report / "per_volume.csv", newline="", encoding="utf-8") as handle:
        return [(float(r["truth_ml"]), float(r["pred_ml"]), float(r["dice"])) for r in csv.DictReader(handle)]


def figures(report: Path) -> dict[str, float | int]:
    rows = per_volume(report)
    lesions = [dice for truth, _, dice in rows if truth > 0]
    out: dict[str, float | int] = {"with lesions": len(lesions), "median": statistics.median(lesions)}
    for name, low, high in GROUPS:
        group = [dice for truth, _, dice in rows if low <= truth < high]
        out[f"{name} (n {len(group)})"] = statistics.median(group) if group else float("nan")
    out["lesion-free heads, ml marked in all"] = sum(pred for truth, pred, _ in rows if truth == 0)
    return out


#: criterion (1): the issue's phantom guard, today's per-volume Dice of 0.2.0 on the phantom test
PHANTOM_GUARD = 0.691
#: criterion (2): the candidate's median over the fresh heads with lesions must gain this much
MEDIAN_GAIN = 0.02
#: criterion (3): its >= 20 ml group may lose at most this much (the known failure is heavy loads)
HEAVY_LOSS = 0.01


def phantom_test_median(report: Path) -> float:
    """Median per-volume Dice of a phantom-test report (criterion 1)."""
    return statistics.median(dice for _, _, dice in per_volume(report))


def judge(shipped_wval: Path, candidate_wval: Path, shipped_ptest: Path,
          candidate_ptest: Path) -> list[tuple[str, float, float, float, bool]]:
    """(criterion, shipped figure, candidate figure, bound, passed) for criteria (1)-(4)."""
    shipped, candidate = figures(shipped_wval), figures(candidate_wval)
    heavy = next(k for k in shipped if k.startswith(">= 20 ml"))
    free = "lesion-free heads, ml marked in all"
    rows = [("(1) phantom test, per-volume median Dice >= guard", phantom_test_median(shipped_ptest),
             phantom_test_median(candidate_ptest), PHANTOM_GUARD),
            ("(2) fresh heads with lesions, median Dice >= shipped + 0.02", shipped["median"],
             candidate["median"], shipped["median"] + MEDIAN_GAIN),
            ("(3) their >= 20 ml group >= shipped - 0.01", shipped[heavy], candidate[heavy],
             shipped[heavy] - HEAVY_LOSS)]
    out = [(name, float(a), float(b), bound, float(b) >= bound - 1e-12) for name, a, b, bound in rows]
    out.append(("(4) lesion-free heads, ml marked <= shipped", float(shipped[free]), float(candidate[free]),
                float(shipped[free]), float(candidate[free]) <= float(shipped[free]) + 1e-9))
    return out


def main(reports: list[Path]) -> None:
    for report in reports:
        print(report, "  ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                 for k, v in figures(report).items()))


if __name__ == "__main__":
    if len(sys.argv) < 2 or (sys.argv[1] == "--judge" and len(sys.argv) != 6):
        sys.exit(__doc__)
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
