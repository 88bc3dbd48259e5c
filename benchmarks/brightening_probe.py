"""Do a model's marks grow when the same heads get unlabelled brightening? (experiment 37)

    .venv/bin/python benchmarks/brightening_probe.py MODEL PLAIN_SET BRIGHTENED_SET [--cases N] [--csv OUT.csv]

PLAIN_SET and BRIGHTENED_SET are two ``deepwml synth`` sets of one seed whose versions differ only by
brightening that is never labelled (e.g. v7 and v11: ``--synthesis-version 7`` and ``11``, same ``--seed``;
same truth per case). For every case in both whose images differ, the model (run as the product runs it:
the Segmenter's defaults, card threshold) marks each form; the probe reports the millilitres marked away from
the truth (outside its one-voxel dilation) in each, per case and in all. Why: the real scans split the
from-scratch models from 1.6.0 by how readily they mark faint white-matter brightening, and this is the first
synthetic measurement that shows the same split (docs/EXPERIMENTS.md, experiment 37: v11 adds +1.4 ml to 1.6.0's marks and
+4 to +15 ml to every from-scratch descendant on 33 pairs of seed 111). Synthetic data only; chooses nothing.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.segmenter import Segmenter

from training_mix import synth_rows  # a sibling script: benchmarks/ is on sys.path

FIELDS = ("case", "truth_ml", "plain_ml", "brightened_ml", "added_ml")
log = logging.getLogger("brightening_probe")


def marked_away_ml(mask: np.ndarray, truth: np.ndarray, voxel_ml: float) -> float:
    """Millilitres of ``mask`` outside the truth's one-voxel (face-connected) dilation, as
    the false-positive placements of experiments 30-37 (docs/EXPERIMENTS.md) count them."""
    near = ndimage.binary_dilation(truth)
    return float(np.count_nonzero(mask & ~near) * voxel_ml)


def paired_cases(plain: Path, brightened: Path, limit: int | None = None) -> list[tuple[dict, dict]]:
    """Rows of the cases both sets hold, by case name, in the brightened set's order (lesion-free first:
    they say most plainly whether brightening alone is marked)."""
    plain_rows = {r["case"]: r for r in synth_rows(plain)}
    pairs = [(plain_rows[r["case"]], r) for r in synth_rows(brightened) if r["case"] in plain_rows]
    if not pairs:
        raise SystemExit(f"{brightened}: no case shares its name with a case of {plain}")
    # a stable sort: lesion-free heads first, each group in the set's order
    ordered = sorted(pairs, key=lambda pair: bool(sitk.GetArrayFromImage(sitk.ReadImage(pair[1]["label"])).any()))
    return ordered[:limit] if limit else ordered


def probe(segmenter, pairs: list[tuple[dict, dict]], progress: bool = True) -> list[dict]:
    """One row per pair whose images differ (see :data:`FIELDS`)."""
    rows = []
    for plain, bright in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
        images = [load_flair(plain["flair"]), load_flair(bright["flair"])]
        if np.array_equal(*(sitk.GetArrayViewFromImage(i) for i in images)):
            continue
        truth = read_label(bright["label"], images[1]) > 0
        voxel_ml = voxel_volume_ml(images[1])
        marks = [marked_away_ml(sitk.GetArrayFromImage(segmenter.segment(i).mask) > 0, truth, voxel_ml)
                 for i in images]
        rows.append({"case": bright["case"], "truth_ml": round(float(truth.sum() * voxel_ml), 3),
                     "plain_ml": round(marks[0], 3), "brightened_ml": round(marks[1], 3),
                     "added_ml": round(marks[1] - marks[0], 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="lesion model folder, or 'bundled'")
    parser.add_argument("plain", type=Path, help="synthetic set without the brightening")
    parser.add_argument("brightened", type=Path, help="the same heads with it (same seed, same case names)")
    parser.add_argument("--cases", type=int, default=None, help="at most this many pairs (lesion-free first)")
    parser.add_argument("--csv", type=Path, default=None, help="write the per-pair table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    segmenter = Segmenter(None if args.model == "bundled" else args.model)
    rows = probe(segmenter, paired_cases(args.plain, args.brightened, args.cases))
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    for r in rows:
        print(*(r[k] for k in FIELDS))
    plain, bright = sum(r["plain_ml"] for r in rows), sum(r["brightened_ml"] for r in rows)
    free = [r for r in rows if r["truth_ml"] == 0]
    print(f"model {args.model}: {len(rows)} pairs that differ ({len(free)} lesion-free); marked away from the truth "
          f"{plain:.2f} ml plain, {bright:.2f} ml brightened, added {bright - plain:+.2f} ml "
          f"(lesion-free heads {sum(r['added_ml'] for r in free):+.2f} ml)")


if __name__ == "__main__":
    main()
