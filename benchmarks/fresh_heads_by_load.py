"""Per-volume Dice of ``deepwml evaluate`` reports on the fresh synthetic heads, by lesion load.

    .venv/bin/python benchmarks/fresh_heads_by_load.py REPORT_DIR [REPORT_DIR ...]

Each REPORT_DIR is the output of ``deepwml evaluate work-data/b14/wval/manifest.csv --model M``
(60 fresh synthetic heads no model here was trained on). Prints, per report, the median Dice over
the heads with lesions, over the load groups < 3 ml / 3-20 ml / >= 20 ml, and the volume marked
on the lesion-free heads. Why by load: the overall median sits in the medium loads, so a change
for the heavy confluent loads (the known failure) or the light ones does not show in it; the
rules of stages 13-14 (README "Experiments after 1.2.0") read the >= 20 ml group. Synthetic data
only; no real scan is read.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

#: (name, lowest ml, highest ml) of the load groups; truth 0 is a lesion-free head
GROUPS = (("< 3 ml", 1e-9, 3.0), ("3-20 ml", 3.0, 20.0), (">= 20 ml", 20.0, float("inf")))


def figures(report: Path) -> dict[str, float | int]:
    with open(report / "per_volume.csv", newline="", encoding="utf-8") as handle:
        rows = [(float(r["truth_ml"]), float(r["pred_ml"]), float(r["dice"])) for r in csv.DictReader(handle)]
    lesions = [dice for truth, _, dice in rows if truth > 0]
    out: dict[str, float | int] = {"with lesions": len(lesions), "median": statistics.median(lesions)}
    for name, low, high in GROUPS:
        group = [dice for truth, _, dice in rows if low <= truth < high]
        out[f"{name} (n {len(group)})"] = statistics.median(group) if group else float("nan")
    out["lesion-free heads, ml marked in all"] = sum(pred for truth, pred, _ in rows if truth == 0)
    return out


def main(reports: list[Path]) -> None:
    for report in reports:
        print(report, "  ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                 for k, v in figures(report).items()))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([Path(p) for p in sys.argv[1:]])
