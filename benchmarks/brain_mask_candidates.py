"""Experiment 47's rule: is a brain-mask candidate better than the bundled mask on the same synthetic heads?

Reads two ``synthetic.csv`` files of ``benchmarks/brain_mask_accuracy.py --synthetic ... --lesions`` (the
bundled mask's, then the candidate's; the same manifest) and checks the rule fixed before experiment 47
(docs/EXPERIMENTS.md, "Brain mask experiments (46, 47)"; synthetic heads only, no real scan):

(a) median ``excess3_ml`` (mask volume farther than 3 mm from the true brain) at least ``--excess-drop`` lower;
(b) lesion marks farther than 3 mm from the true brain: no more in total, and no more heads over 0.1 ml;
(c) true lesion outside the mask: at most 1.25x the bundled mask's in total, no head 2 ml worse;
(d) median brain Dice of the used mask at most 0.002 lower;
(e) lesion Dice on the heads with lesions: mean paired difference >= -0.001 and its 95 % bootstrap interval's
    lower end >= -0.003; the lesion-free heads marked no more.

    .venv/bin/python benchmarks/brain_mask_candidates.py BUNDLED/synthetic.csv CANDIDATE/synthetic.csv

Exits 0 only if every criterion passes.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from fresh_heads_by_load import bootstrap_mean_interval  # a sibling script: benchmarks/ is on sys.path


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["case"]: row for row in csv.DictReader(handle)}


def column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows])


def criteria(base: dict[str, dict], cand: dict[str, dict], excess_drop: float = 0.25) -> dict[str, tuple[str, bool]]:
    """Each criterion's one-line figures and verdict (keys ``a`` to ``e``)."""
    if set(base) != set(cand):
        raise SystemExit("the two files do not hold the same heads")
    cases = sorted(base)
    b, c = [base[k] for k in cases], [cand[k] for k in cases]
    out: dict[str, tuple[str, bool]] = {}
    ex_b, ex_c = np.median(column(b, "excess3_ml")), np.median(column(c, "excess3_ml"))
    out["a"] = (f"median excess3 {ex_b:.3f} -> {ex_c:.3f} ml ({ex_c / ex_b - 1:+.1%}; bar -{excess_drop:.0%})",
                bool(ex_c <= (1 - excess_drop) * ex_b))
    po_b, po_c = column(b, "pred_outside3_ml"), column(c, "pred_outside3_ml")
    out["b"] = (f"marks beyond the true brain {po_b.sum():.3f} -> {po_c.sum():.3f} ml; heads over 0.1 ml "
                f"{(po_b > 0.1).sum()} -> {(po_c > 0.1).sum()}",
                bool(po_c.sum() <= po_b.sum() and (po_c > 0.1).sum() <= (po_b > 0.1).sum()))
    lo_b, lo_c = column(b, "lesion_outside_ml"), column(c, "lesion_outside_ml")
    out["c"] = (f"true lesion outside the mask {lo_b.sum():.3f} -> {lo_c.sum():.3f} ml (bound {1.25 * lo_b.sum():.3f}); "
                f"worst head {(lo_c - lo_b).max():+.3f} ml",
                bool(lo_c.sum() <= 1.25 * lo_b.sum() and (lo_c - lo_b).max() <= 2.0))
    bd_b, bd_c = np.median(column(b, "dice")), np.median(column(c, "dice"))
    out["d"] = (f"brain Dice median {bd_b:.4f} -> {bd_c:.4f}", bool(bd_c >= bd_b - 0.002))
    with_lesion = [i for i, r in enumerate(b) if float(r["lesion_ml"]) > 0]
    free = [i for i, r in enumerate(b) if float(r["lesion_ml"]) == 0]
    diff = np.array([float(c[i]["lesion_dice"]) - float(b[i]["lesion_dice"]) for i in with_lesion])
    low, high = bootstrap_mean_interval(diff)
    free_b = sum(float(b[i]["pred_ml"]) for i in free)
    free_c = sum(float(c[i]["pred_ml"]) for i in free)
    out["e"] = (f"lesion Dice mean paired {diff.mean():+.4f} ({low:+.4f} to {high:+.4f}), {len(diff)} heads; "
                f"lesion-free heads ({len(free)}) marked {free_b:.2f} -> {free_c:.2f} ml",
                bool(diff.mean() >= -0.001 and low >= -0.003 and free_c <= free_b + 1e-9))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundled", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--excess-drop", type=float, default=0.25,
                        help="(a)'s bar: 0.25 on the heads that choose, 0.15 on the confirming heads")
    args = parser.parse_args()
    verdicts = criteria(read_rows(args.bundled), read_rows(args.candidate), args.excess_drop)
    for key, (text, ok) in verdicts.items():
        print(f"({key}) {'pass' if ok else 'FAIL'}: {text}")
    passed = all(ok for _, ok in verdicts.values())
    print("all pass" if passed else "fails")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
