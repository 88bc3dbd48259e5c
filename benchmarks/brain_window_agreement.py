"""Does the lesion network's brain window change the masks? (issue 14; README "Speed", history: docs/EXPERIMENTS.md)

With the brain mask applied, the lesion network sees only the brain's window (brain + margin,
grown by ``brain_context_px`` canvas pixels of context; :meth:`deepwml.segmenter.Segmenter.run_network`)
instead of the head's. Inside the window its probabilities still change a little, since a
convolution near the window's edge sees zeros where the scalp was. For each labelled volume of
the manifests, this segments once with the head's window and once per context, and reports per
context: the masks' agreement with the head window's (median Dice, volumes where both are empty
counting 1; summed volume change), the median per-volume Dice against the truth (volumes with
lesions) for every setting, and the lesion network's median time. Synthetic data only: the
context is chosen on it (rule in ``work-data/b22/RULE.md``, quoted in docs/EXPERIMENTS.md, "Speed history").

    .venv/bin/python benchmarks/brain_window_agreement.py -o OUT.csv work-data/b14/wval/manifest.csv \
        work-data/b12/phantom-test.csv --contexts 8 16 24 32
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.evaluation.metrics import dice
from deepwml.image_io import load_flair
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.output_files import write_csv
from deepwml.segmenter import Segmenter
from deepwml.training.manifest import read_manifest


def masks_by_context(segmenter: Segmenter, flair: sitk.Image, contexts: list[int | None]
                     ) -> dict[int | None, tuple[np.ndarray, float]]:
    """``{context: (mask [z, y, x], lesion network seconds)}`` for one volume."""
    prepared = segmenter.prepare(flair)
    out = {}
    for context in contexts:
        segmenter.brain_context_px = context
        t0 = time.perf_counter()
        probs = segmenter.run_network(prepared)
        seconds = time.perf_counter() - t0 - prepared.brain.seconds
        result = segmenter.finish(prepared, probs)
        out[context] = (sitk.GetArrayFromImage(result.mask) > 0, seconds)
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if not a.any() and not b.any() else dice(a, b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="per-volume CSV")
    parser.add_argument("--contexts", nargs="+", type=int, default=[8, 16, 24, 32])
    args = parser.parse_args(argv)
    segmenter = Segmenter(device="cpu", precision="float32")
    contexts: list[int | None] = [None, *args.contexts]
    rows = []
    for manifest in args.manifests:
        for case in tqdm(read_manifest(manifest), desc=manifest.parent.name, unit="volume"):
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case.label))) > 0
            flair = load_flair(case.flair)
            voxel_ml = voxel_volume_ml(flair)
            masks = masks_by_context(segmenter, flair, contexts)
            head = masks[None][0]
            for context, (mask, seconds) in masks.items():
                rows.append({"set": str(manifest), "case": case.case, "context": context if context else "head",
                             "truth_ml": truth.sum() * voxel_ml, "pred_ml": mask.sum() * voxel_ml,
                             "dice_truth": dice(truth, mask) if truth.any() else "",
                             "agreement_with_head": agreement(head, mask), "lesion_network_s": seconds})
    write_csv(args.output, rows)
    for manifest in args.manifests:
        print(f"\n{manifest}")
        print(f"{'context':>8} {'agree med':>9} {'agree min':>9} {'vol change':>10} {'Dice truth':>10} {'net s':>6}")
        here = [r for r in rows if r["set"] == str(manifest)]
        head_ml = sum(r["pred_ml"] for r in here if r["context"] == "head")
        for context in contexts:
            mine = [r for r in here if r["context"] == (context if context else "head")]
            agree = [r["agreement_with_head"] for r in mine]
            with_truth = [r["dice_truth"] for r in mine if r["dice_truth"] != ""]
            change = (sum(r["pred_ml"] for r in mine) - head_ml) / head_ml * 100 if head_ml else 0.0
            print(f"{context if context else 'head':>8} {statistics.median(agree):9.4f} {min(agree):9.4f} "
                  f"{change:+9.2f}% {statistics.median(with_truth):10.4f} "
                  f"{statistics.median(r['lesion_network_s'] for r in mine):6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
