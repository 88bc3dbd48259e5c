"""Should lesions below a minimum volume be removed after the threshold? (rule: work-data/b25/RULE-minsize.md)

    .venv/bin/python benchmarks/min_lesion_size_study.py NAME=MANIFEST [NAME=MANIFEST ...] -o OUT [--model DIR]

The first set selects: for every candidate V (mm3) the mask's 26-connected components smaller
than V are removed and the per-volume Dice (on the input's grid) is computed on the set's cases
with lesions; a V qualifies when its mean Dice beats V = 0 by at least 0.005 and its median is not
below V = 0's by more than 0.005, and the qualifying V with the highest mean is chosen. The other
sets are then reported for that V against V = 0 (mean, median; volume marked on lesion-free cases).
Each case is segmented once, as ``deepwml segment`` does with the given model (TTA, brain mask,
card threshold); the candidates only filter its mask. Per-case rows go to OUT/NAME.csv. Synthetic
and phantom data only: the rule forbids choosing anything on the real scans.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.evaluation.metrics import dice
from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.segmenter import Segmenter
from deepwml.training.manifest import read_manifest

CANDIDATES_MM3 = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0)
MEAN_GAIN, MEDIAN_SLACK = 0.005, 0.005


def without_small_lesions(mask: sitk.Image, min_mm3: float) -> sitk.Image:
    """``mask`` (uint8) without its 26-connected components of less than ``min_mm3``."""
    if min_mm3 <= 0:
        return mask
    voxel_mm3 = float(np.prod(mask.GetSpacing()))
    labels = sitk.ConnectedComponent(mask, True)
    kept = sitk.RelabelComponent(labels, minimumObjectSize=max(1, math.ceil(min_mm3 / voxel_mm3 - 1e-9)))
    return sitk.Cast(kept > 0, sitk.sitkUInt8)


def run_set(name: str, manifest: Path, segmenter: Segmenter, out: Path) -> list[dict]:
    rows = []
    for case in tqdm(read_manifest(manifest), desc=name, unit="case"):
        image = load_flair(case.flair)
        truth = read_label(case.label, image, case.label_value)
        voxel_ml = voxel_volume_ml(image)
        mask = segmenter.segment(image).mask
        row = {"case": case.case, "truth_ml": round(float(truth.sum()) * voxel_ml, 4)}
        for v in CANDIDATES_MM3:
            kept = sitk.GetArrayFromImage(without_small_lesions(mask, v)) > 0  # a copy: the image is a temporary
            row[f"dice_{v:g}"] = round(dice(truth, kept), 5) if truth.any() else ""
            row[f"ml_{v:g}"] = round(float(kept.sum()) * voxel_ml, 4)
        rows.append(row)
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def stats(rows: list[dict]) -> dict[float, dict[str, float]]:
    lesion = [r for r in rows if r["truth_ml"] > 0]
    free = [r for r in rows if r["truth_ml"] == 0]
    return {v: {"mean": float(np.mean([r[f"dice_{v:g}"] for r in lesion])),
                "median": float(np.median([r[f"dice_{v:g}"] for r in lesion])),
                "lesion_free_ml": float(sum(r[f"ml_{v:g}"] for r in free)),
                "cases": len(lesion), "lesion_free": len(free)} for v in CANDIDATES_MM3}


def choose(selection: dict[float, dict[str, float]]) -> float | None:
    base = selection[0.0]
    qualifying = [v for v in CANDIDATES_MM3[1:]
                  if selection[v]["mean"] >= base["mean"] + MEAN_GAIN
                  and selection[v]["median"] >= base["median"] - MEDIAN_SLACK]
    return max(qualifying, key=lambda v: selection[v]["mean"]) if qualifying else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="NAME=MANIFEST; the first selects")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(args.model, device="cpu")
    report: dict = {"model": segmenter.model.model_id, "candidates_mm3": list(CANDIDATES_MM3), "sets": {}}
    for i, item in enumerate(args.sets):
        name, manifest = item.split("=", 1)
        table = stats(run_set(name, Path(manifest), segmenter, args.output))
        report["sets"][name] = {f"{v:g}": s for v, s in table.items()}
        print(f"{name}: " + "; ".join(f"V {v:g}: mean {s['mean']:.4f} median {s['median']:.4f} "
                                      f"lesion-free {s['lesion_free_ml']:.2f} ml" for v, s in table.items()), flush=True)
        if i == 0:
            report["chosen_mm3"] = choose(table)
            print(f"chosen by the rule on {name}: {report['chosen_mm3']}", flush=True)
    (args.output / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
