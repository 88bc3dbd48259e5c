"""Choose a model's threshold on its own validation cases (never on real evaluation scans).

    .venv/bin/python benchmarks/threshold_on_validation.py MODEL_DIR MANIFEST SPLIT_JSON [PART]

MANIFEST and SPLIT_JSON are the training run's (``deepwml train`` writes ``split.json``); PART is
``val`` (default). Prints the median and mean per-volume Dice over the cases with lesions at each
candidate threshold; the bundled model's threshold is the one with the highest median (the
project's primary figure), recorded in its card under ``metrics.threshold_selection``.
"""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.image_io import load_flair
from deepwml.segmenter import Segmenter

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def dice_by_threshold(model: str, manifest: str, split_json: str, part: str = "val") -> dict[float, list[float]]:
    with open(split_json, encoding="utf-8") as f:
        assignment = json.load(f)["assignment"]
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if assignment.get(row["patient"]) == part]
    segmenter = Segmenter(model, device="cpu")
    dice: dict[float, list[float]] = {t: [] for t in THRESHOLDS}
    for row in tqdm(rows, desc=f"{part} cases", unit="case"):
        truth = sitk.GetArrayFromImage(sitk.ReadImage(row["label"])) > 0
        if not truth.any():
            continue  # Dice is undefined without lesion; empty cases do not choose a threshold
        prob = sitk.GetArrayFromImage(segmenter.segment(load_flair(row["flair"])).probabilities)
        for t in THRESHOLDS:
            mask = prob >= t
            dice[t].append(2 * float((mask & truth).sum()) / float(mask.sum() + truth.sum()))
    return dice


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    dice = dice_by_threshold(*argv)
    print(f"cases with lesions: {len(dice[THRESHOLDS[0]])}")
    for t in THRESHOLDS:
        print(f"threshold {t}: median per-volume Dice {np.median(dice[t]):.4f}, mean {np.mean(dice[t]):.4f}")
    best = max(THRESHOLDS, key=lambda t: float(np.median(dice[t])))
    print(f"highest median: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
