"""Would averaging the probabilities of two lesion models beat the bundled model alone? (experiment 29)

    .venv/bin/python benchmarks/ensemble_study.py MANIFEST OUT --base DIR --member NAME=DIR [--member ...]
        [--thresholds 0.5 0.6 0.7 0.8 0.9] [--only NAME@T]

Every model runs as the product runs it (the Segmenter's defaults: ONNX float32 on the CPU, flip TTA,
brain mask, the input's grid). For every case of MANIFEST the probe writes, in ``deepwml evaluate``'s
``per_volume.csv`` format (case, center, disease, slices, truth_ml, pred_ml, dice), one report folder per
configuration under OUT: ``base`` (the base model alone at its card threshold; must reproduce ``deepwml
evaluate``'s report of it) and ``base+NAME@T`` (mean of the two probability maps, thresholded at T).
``benchmarks/fresh_heads_by_load.py`` reads them like evaluate's reports, ``--judge`` included. Then it
prints, per configuration, the mean paired Dice gain over the base on the heads with lesions and the ml
marked on the lesion-free heads. Synthetic data only (the rule: docs/EXPERIMENTS.md, experiment 29).
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.evaluation.metrics import dice
from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import mask_volume_ml
from deepwml.segmenter import Segmenter
from deepwml.training.manifest import read_manifest

from fresh_heads_by_load import lesion_free, paired, per_case  # a sibling script: benchmarks/ is on sys.path

FIELDS = ("case", "center", "disease", "slices", "truth_ml", "pred_ml", "dice")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def volume_row(case, truth: np.ndarray, pred: np.ndarray, flair: sitk.Image) -> dict:
    """One ``per_volume.csv`` row, rounded as ``deepwml evaluate`` rounds it."""
    value = dice(truth, pred)
    return {"case": case.case, "center": case.center, "disease": case.disease, "slices": truth.shape[0],
            "truth_ml": round(mask_volume_ml(truth, flair), 4), "pred_ml": round(mask_volume_ml(pred, flair), 4),
            "dice": round(value, 5) if value == value else float("nan")}


def write_report(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "per_volume.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def configurations(members: list[str], thresholds: list[float], only: list[str]) -> list[tuple[str, float]]:
    """(member, threshold) pairs to score; ``only`` ("NAME@T") restricts them."""
    every = [(name, t) for name in members for t in thresholds]
    if not only:
        return every
    wanted = {(text.rsplit("@", 1)[0], float(text.rsplit("@", 1)[1])) for text in only}
    return [c for c in every if c in wanted] + sorted(wanted - set(every))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--base", required=True, help="the bundled model's folder (or 'bundled')")
    parser.add_argument("--member", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME@T")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    members = dict(text.split("=", 1) for text in args.member)
    base = Segmenter(None if args.base == "bundled" else args.base)
    nets = {name: Segmenter(folder) for name, folder in members.items()}
    configs = configurations(list(members), args.thresholds, args.only)
    rows: dict[str, list[dict]] = {"base": []}
    rows.update({f"base+{name}@{t:g}": [] for name, t in configs})
    for case in tqdm(read_manifest(args.manifest), desc="ensemble", unit="case"):
        flair = load_flair(case.flair)
        truth = read_label(case.label, flair, case.label_value)
        result = base.segment(flair)
        p_base = sitk.GetArrayFromImage(result.probabilities)
        rows["base"].append(volume_row(case, truth, p_base >= result.threshold, flair))
        probs = {name: sitk.GetArrayFromImage(net.segment(flair).probabilities)
                 for name, net in nets.items() if any(name == c[0] for c in configs)}
        for name, t in configs:
            mean = (p_base + probs[name]) / 2
            rows[f"base+{name}@{t:g}"].append(volume_row(case, truth, mean >= t, flair))
    for config, config_rows in rows.items():
        write_report(args.out / config, config_rows)
    print_summary(args.out, [config for config in rows if config != "base"])


def print_summary(out: Path, configs: list[str]) -> None:
    """Per configuration, read back as the judge reads reports: the mean paired Dice gain over ``base``
    on the heads with lesions and the ml marked on the lesion-free heads."""
    base = per_case(out / "base")
    free = [case for case, head in base.items() if lesion_free(head)]
    print(f"{'configuration':<22} {'mean paired Dice gain':>22} {'lesion-free ml':>15}")
    print(f"{'base alone':<22} {0.0:>22.4f} {sum(base[c].pred_ml for c in free):>15.2f}")
    for config in configs:
        heads = per_case(out / config)
        gain = paired(base, heads, "dice", lambda head: head.truth_ml > 0).mean()
        print(f"{config:<22} {gain:>22.4f} {sum(heads[c].pred_ml for c in free):>15.2f}")


if __name__ == "__main__":
    main()
