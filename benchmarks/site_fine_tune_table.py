"""The table of ``benchmarks/site_fine_tune.sh``: each model on the site's held-out cases and on heads from elsewhere.

    .venv/bin/python benchmarks/site_fine_tune_table.py OUT NAME [NAME ...]

Reads ``OUT/eval-NAME/site/per_volume.csv`` and ``OUT/eval-NAME/heads/per_volume.csv`` (``deepwml evaluate``'s
per-volume reports) and prints one Markdown row per model: on the site's test cases the median and mean per-volume
Dice, lesion F1 and the volume found of the true volume; on the fresh heads the median Dice of the heads with lesions,
the volume marked on the lesion-free heads and the volume marked farther than 3 mm from any true lesion
(``far_fp_ml``): what a site's model also does on scans unlike its own.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from deepwml.csv_table import read_csv_rows
from deepwml.training.threshold_choice import drawn


def row(out: Path, name: str) -> str:
    site = read_csv_rows(out / f"eval-{name}" / "site" / "per_volume.csv")[1]
    heads = read_csv_rows(out / f"eval-{name}" / "heads" / "per_volume.csv")[1]
    dice = [float(r["dice"]) for r in site]
    f1 = [float(r["lesion_f1"]) for r in site]
    truth, found = sum(float(r["truth_ml"]) for r in site), sum(float(r["pred_ml"]) for r in site)
    with_lesions = [float(r["dice"]) for r in heads if drawn(r, float(r["truth_ml"]))]
    # lesion-free as the judge counts them: nothing drawn and nothing in the truth
    free = [float(r["pred_ml"]) for r in heads if not drawn(r, float(r["truth_ml"])) and float(r["truth_ml"]) == 0]
    far = sum(float(r["far_fp_ml"]) for r in heads)
    return (f"| {name} | {len(site)} | {statistics.median(dice):.3f} | {statistics.mean(dice):.3f} | "
            f"{statistics.median(f1):.3f} | {found:.1f} of {truth:.1f} | {statistics.median(with_lesions):.3f} "
            f"({len(with_lesions)}) | {sum(free):.2f} ({len(free)}) | {far:.2f} |")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    print("| model | site test cases | median Dice | mean Dice | median lesion F1 | ml found | fresh heads: median "
          "Dice (heads) | ml on lesion-free heads (heads) | ml marked > 3 mm from a lesion |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in argv[1:]:
        print(row(out, name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
