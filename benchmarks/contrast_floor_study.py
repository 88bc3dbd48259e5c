"""Would a white-matter contrast floor on the marks help a lesion model? (experiment 40)

    .venv/bin/python benchmarks/contrast_floor_study.py OUT --model NAME=DIR [--model ...]
        [--manifest MANIFEST] [--probe PLAIN_SET BRIGHTENED_SET [--cases N]]
        [--factors 1.05 1.1 1.15 1.2] [--modes voxel component] [--levels METHOD ...] [--only NAME+MODE@K ...]
    .venv/bin/python benchmarks/contrast_floor_study.py --record MODEL_DIR --factors K --modes MODE [--levels METHOD]
        --why TEXT

Every model runs as the product runs it (the Segmenter's defaults: ONNX float32, flip TTA, brain mask,
card threshold); the floor (:mod:`deepwml.contrast_floor`; the white-matter level read by each of ``--levels``,
default ``above-median``, experiment 40's) is then applied to its probabilities with the segmenter's own brain
mask, so one network pass serves every factor, mode and level. With ``--manifest``: one
report folder per configuration under OUT in ``deepwml evaluate``'s ``per_volume.csv`` format (``NAME`` bare,
``NAME+MODE@K`` floored), which ``benchmarks/fresh_heads_by_load.py --judge`` reads, and a table of the mean
paired Dice gain over the first model bare and the ml marked on lesion-free heads. With ``--probe``: the
brightening probe's figure (ml marked away from the truth on the brightened form minus the plain form) per
configuration. Synthetic data only (the rule: docs/EXPERIMENTS.md, experiment 40). ``--record`` writes the floor a rule
chose into a model card (``contrast_floor``, with how it was chosen), where the Segmenter reads it.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.contrast_floor import ENVELOPE_LEVEL, FLOOR_LEVELS, MODES, ContrastFloor, apply_contrast_floor
from deepwml.evaluation.mark_contrast import DEFAULT_LEVEL
from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.model_files import read_card, write_card
from deepwml.segmenter import Segmenter
from deepwml.training.manifest import read_manifest

# sibling scripts: benchmarks/ is on sys.path
from brightening_probe import marked_away_ml, paired_cases
from ensemble_study import volume_row, write_report
from fresh_heads_by_load import lesion_free, paired, per_case

FACTORS = (1.05, 1.10, 1.15, 1.20)


def configurations(names: list[str], factors: list[float], modes: list[str], only: list[str],
                   levels: tuple[str, ...] = (DEFAULT_LEVEL,)) -> list[tuple[str, ContrastFloor | None]]:
    """(model name, floor) pairs, bare models first; ``only`` (names as :func:`config_name` writes them)
    restricts them."""
    every = [(n, None) for n in names] + [(n, ContrastFloor(k, m, level)) for n in names for level in levels
                                          for m in modes for k in factors]
    return [c for c in every if not only or config_name(*c) in only or c[1] is None]


def config_name(name: str, floor: ContrastFloor | None) -> str:
    if floor is None:
        return name
    return f"{name}+{floor.mode}@{floor.factor:g}" + ("" if floor.level == DEFAULT_LEVEL else f"~{floor.level}")


def marks(segmenter: Segmenter, image: sitk.Image, floors: list[ContrastFloor | None]) -> list[np.ndarray]:
    """The segmenter's mask of ``image`` under each floor (None: bare), from one network pass."""
    prepared = segmenter.prepare(image)
    result = segmenter.finish(prepared, segmenter.run_network(prepared))
    probs = sitk.GetArrayFromImage(result.probabilities)
    brain = sitk.GetArrayFromImage(segmenter.brain_image(prepared)) > 0
    flair = sitk.GetArrayFromImage(image)  # [k, j, i]: rows j, columns i
    pixel_mm = (image.GetSpacing()[1], image.GetSpacing()[0])
    out = []
    for floor in floors:
        kept = probs if floor is None else \
            apply_contrast_floor(probs, flair, brain, result.threshold, floor, pixel_mm)[0]
        out.append(kept >= result.threshold)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--probe", type=Path, nargs=2, metavar=("PLAIN_SET", "BRIGHTENED_SET"))
    parser.add_argument("--cases", type=int, default=40, help="probe: at most this many pairs")
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--levels", nargs="+", default=[DEFAULT_LEVEL], choices=FLOOR_LEVELS,
                        help="how the floors read the white-matter level (docs/EXPERIMENTS.md, experiment 45); --record: the first "
                             f"({ENVELOPE_LEVEL} only with --record: it needs the segmenter's white-matter envelope)")
    parser.add_argument("--min-load-ml", type=float, default=0.0,
                        help=f"--record with {ENVELOPE_LEVEL}: the envelope's level only on scans with at least this "
                             "marked load (experiment 54)")
    parser.add_argument("--full-load-ml", type=float, default=0.0,
                        help="--record with --min-load-ml: a ramp, the envelope's level blended in from --min-load-ml "
                             "to this load (experiment 60)")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME+MODE@K[~LEVEL]")
    parser.add_argument("--record", type=Path, metavar="MODEL_DIR",
                        help="write the first factor, mode and level into this card")
    parser.add_argument("--why", default="", help="--record: how the floor was chosen (the card keeps it)")
    args = parser.parse_args()
    if args.record:
        try:  # checked before the card is touched
            floor = ContrastFloor(args.factors[0], args.modes[0], args.levels[0], args.min_load_ml, args.full_load_ml)
        except ValueError as err:
            parser.error(str(err))
        card, card_path = read_card(args.record)  # a top-level entry, as the threshold is: the Segmenter applies it
        card["contrast_floor"] = {**floor.setting(), "chosen": args.why}
        write_card(card, card_path)
        print(f"{args.record}: {floor.describe()}")
        return
    if not args.out or not args.model or not (args.manifest or args.probe):
        parser.error("give OUT, --model and --manifest, --probe or both")
    if ENVELOPE_LEVEL in args.levels or args.min_load_ml or args.full_load_ml:
        parser.error(f"{ENVELOPE_LEVEL}, --min-load-ml and --full-load-ml only with --record (the study has no "
                     "white-matter envelope)")
    logging.basicConfig(level=logging.WARNING)
    models = dict(text.split("=", 1) for text in args.model)
    configs = configurations(list(models), args.factors, args.modes, args.only, tuple(args.levels))
    # no card floor: "bare" must mean the network alone, also for a model whose card names a floor (1.7.0 on)
    segmenters = {name: Segmenter(folder, contrast_floor=None) for name, folder in models.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.manifest:
        study_manifest(args.manifest, args.out, segmenters, configs)
    if args.probe:
        study_probe(args.probe, args.cases, args.out, segmenters, configs)


def study_manifest(manifest: Path, out: Path, segmenters: dict[str, Segmenter], configs) -> None:
    rows: dict[str, list[dict]] = {config_name(*c): [] for c in configs}
    for case in tqdm(read_manifest(manifest), desc="cases", unit="case"):
        flair = load_flair(case.flair)
        truth = read_label(case.label, flair, case.label_value) > 0
        for name, segmenter in segmenters.items():
            mine = [c for c in configs if c[0] == name]
            for config, mask in zip(mine, marks(segmenter, flair, [c[1] for c in mine])):
                rows[config_name(*config)].append(volume_row(case, truth, mask, flair))
    for config, config_rows in rows.items():
        write_report(out / config, config_rows)
    reference = per_case(out / configs[0][0])
    free = [case for case, head in reference.items() if lesion_free(head)]
    print(f"{'configuration':<28} {'mean paired Dice gain':>22} {'lesion-free ml':>15}  (over {configs[0][0]} bare)")
    for config in rows:
        heads = per_case(out / config)
        gain = paired(reference, heads, "dice", lambda head: head.truth_ml > 0).mean()
        print(f"{config:<28} {gain:>22.4f} {sum(heads[c].pred_ml for c in free):>15.2f}")


def study_probe(sets: list[Path], cases: int, out: Path, segmenters: dict[str, Segmenter], configs) -> None:
    names = [config_name(*c) for c in configs]
    away = {n: [0.0, 0.0] for n in names}
    table = []
    for plain, bright in tqdm(paired_cases(sets[0], sets[1], cases), desc="pairs", unit="pair"):
        images = [load_flair(plain["flair"]), load_flair(bright["flair"])]
        if np.array_equal(*(sitk.GetArrayViewFromImage(i) for i in images)):
            continue
        truth = read_label(bright["label"], images[1]) > 0
        voxel_ml = voxel_volume_ml(images[1])
        row = {"case": bright["case"], "truth_ml": round(float(truth.sum() * voxel_ml), 3)}
        for name, segmenter in segmenters.items():
            mine = [c for c in configs if c[0] == name]
            for form, image in enumerate(images):
                for config, mask in zip(mine, marks(segmenter, image, [c[1] for c in mine])):
                    ml = marked_away_ml(mask, truth, voxel_ml)
                    away[config_name(*config)][form] += ml
                    row[f"{config_name(*config)}:{'plain' if form == 0 else 'bright'}"] = round(ml, 3)
        table.append(row)
    with open(out / "probe.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print(f"{'configuration':<28} {'plain ml':>10} {'brightened ml':>14} {'added ml':>10}  ({len(table)} pairs)")
    for name in names:
        plain_ml, bright_ml = away[name]
        print(f"{name:<28} {plain_ml:>10.2f} {bright_ml:>14.2f} {bright_ml - plain_ml:>+10.2f}")


if __name__ == "__main__":
    main()
