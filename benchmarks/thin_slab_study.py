"""How should a 1 mm (3D) FLAIR be segmented by a 2D model trained on 3-8 mm slices? (issue 10)

Modes: every native 1 mm slice (``--thin-slab-mm 0``) or axial slabs of 3 or 5 mm (mean of
adjacent slices) with the slab probabilities interpolated back to every slice; with ``--sliding
MM ...`` also sliding slabs (``--sliding-slab-mm``: every slice seen through the slab centred on
it). Measured with one warm Segmenter per mode (ONNX Runtime, float32, CPU) on:

- ``phantoms``: synthetic 1 mm phantoms of one template brain (seed 101, never used in
  training): the data the default was first chosen on;
- ``synthetic``: whole-head 1 mm 3D FLAIRs synthesised from real anatomy (synthesis v4, the
  shipped model's heads; seed 31, never used in training; 150 axial 1 mm slices, 256x256 at
  0.94 mm): data on which the default may be chosen, the closer to real 3D FLAIR;
- ``lesjak2017``: the three real 1 mm scans: reported only (evaluation data; never used to
  choose anything).

Dice is per volume on the input grid; time is preprocessing + network + mapping back.

    .venv/bin/python benchmarks/thin_slab_study.py [--phantoms 12] [--synthetic 16] [--synthetic-seed 31]
        [--sliding 3 5] [--data ../shared/data] [--model DIR]

The rule for the default (fixed 2026-11-30 before the synthetic heads were first run): the mode
with the highest median per-volume Dice on the synthetic heads, unless it beats every slice (the
default since issue 10) by less than 0.01. The sliding slabs' rule (work-data/b25/RULE-sliding.md,
2026-12-01, seed 61, ``--sliding 3 5``) added: lesion-free synthetic heads marked no more than
native's + 0.5 ml, and the phantoms' median no lower than native's - 0.02 (README, "Sliding slabs").
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from deepwml.evaluation.metrics import dice
from deepwml.evaluation.realdata import default_data_root, lesjak2017_cases
from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.segmenter import Segmenter

MODES = (0.0, 3.0, 5.0)
PHANTOM_ACQUISITION = {"slice_thickness_mm": 1.0, "slice_spacing_mm": 1.0, "slices": 140, "matrix": 256,
                       "pixel_mm": 0.9375}


def phantom_cases(count: int) -> Iterator[tuple[str, sitk.Image, np.ndarray]]:
    from deepwml.phantom.generator import make_case

    for i in range(count):
        case = make_case(i, 101, acquisition=PHANTOM_ACQUISITION)
        yield f"phantom{i:02d} {case.info['disease']}", sitk.Cast(case.flair, sitk.sitkFloat32), \
            sitk.GetArrayFromImage(case.truth) > 0


SYNTHETIC_SEED, SYNTHETIC_VERSION = 31, 4


def synthetic_cases(count: int, seed: int = SYNTHETIC_SEED) -> Iterator[tuple[str, sitk.Image, np.ndarray]]:
    from deepwml.synthesis.acquisition import WHOLE_HEAD_3D
    from deepwml.synthesis.generator import make_case

    for i in range(count):
        case = make_case(i, seed, version=SYNTHETIC_VERSION, acquisition=WHOLE_HEAD_3D)
        yield f"synth{i:02d} {case.info['disease']}", sitk.Cast(case.flair, sitk.sitkFloat32), \
            sitk.GetArrayFromImage(case.truth) > 0


def lesjak_cases(root: Path) -> Iterator[tuple[str, sitk.Image, np.ndarray]]:
    for case in lesjak2017_cases(root):
        flair = load_flair(case.flair)
        yield case.case, flair, read_label(case.label, flair, case.label_value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=12)
    parser.add_argument("--synthetic", type=int, default=16)
    parser.add_argument("--synthetic-seed", type=int, default=SYNTHETIC_SEED,
                        help=f"seed of the synthetic heads (default {SYNTHETIC_SEED}, the 2026-11-30 study's)")
    parser.add_argument("--sliding", type=float, nargs="*", default=[],
                        help="also sliding slabs of these thicknesses in mm (every slice the centre of its own slab)")
    parser.add_argument("--data", type=Path, default=default_data_root())
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--no-real", action="store_true", help="leave out the real Lesjak scans")
    args = parser.parse_args()
    modes = {f"{m:g} mm slabs" if m else "native": Segmenter(args.model, device="cpu", thin_slab_mm=m)
             for m in MODES}
    for mm in args.sliding:
        modes[f"{mm:g} mm sliding"] = Segmenter(args.model, device="cpu", thin_slab_mm=mm, thin_slab_sliding=True)
    print(f"model {modes['native'].model.model_id}, backend {modes['native'].backend}, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = " | ".join(f"Dice / s {label}" for label in modes)
    print(f"| set | case | truth ml | {header} |\n|---|---|---:|" + "---:|" * len(modes))
    medians: dict[str, dict[str, float]] = {}
    lesion_free_ml: dict[str, dict[str, float]] = {}
    for name, cases in (("phantoms", phantom_cases(args.phantoms)),
                        ("synthetic", synthetic_cases(args.synthetic, args.synthetic_seed)),
                        ("lesjak2017", iter(()) if args.no_real else lesjak_cases(args.data))):
        scores: dict[str, list[float]] = {label: [] for label in modes}
        free = lesion_free_ml.setdefault(name, {label: 0.0 for label in modes})
        for case, flair, truth in cases:
            cells = []
            voxel_ml = voxel_volume_ml(flair)
            for label, segmenter in modes.items():
                t0 = time.perf_counter()
                mask = sitk.GetArrayFromImage(segmenter.segment(flair).mask) > 0
                seconds = time.perf_counter() - t0
                if truth.any():
                    scores[label].append(dice(truth, mask))
                    cells.append(f"{scores[label][-1]:.3f} / {seconds:.1f}")
                else:  # Dice is undefined without lesions: what is marked on a lesion-free head
                    free[label] += mask.sum() * voxel_ml
                    cells.append(f"{mask.sum() * voxel_ml:.2f} ml / {seconds:.1f}")
            ml = truth.sum() * voxel_ml
            print(f"| {name} | {case}{'' if truth.any() else ' (no lesion)'} | {ml:.1f} | {' | '.join(cells)} |",
                  flush=True)
        if scores["native"]:
            medians[name] = {label: float(np.median(scores[label])) for label in modes}
            print(f"| {name} | **median** | | " + " | ".join(f"**{medians[name][m]:.3f}**" for m in modes) + " |")
            print(f"| {name} | lesion-free heads, ml marked in all | | "
                  + " | ".join(f"{free[m]:.2f}" for m in modes) + " |")
    if "synthetic" in medians:
        print(verdict(medians, lesion_free_ml, list(modes)))


def verdict(medians: dict[str, dict[str, float]], lesion_free_ml: dict[str, dict[str, float]],
            modes: list[str]) -> str:
    """The default's rule on these figures: the best mode on the synthetic heads unless it beats
    native by less than 0.01 (2026-11-30); when sliding slabs are among the modes, the 2026-12-01
    rule's guards too: its lesion-free synthetic heads marked <= native's + 0.5 ml and, when
    phantoms ran, their median >= native's - 0.02."""
    synthetic = medians["synthetic"]
    best = max(modes, key=lambda m: synthetic[m])
    if best == "native":
        return "rule: native (every slice) stays the default (the best on the synthetic heads)"
    failed = []
    if synthetic[best] - synthetic["native"] < 0.01:
        failed.append("beats native by less than 0.01 on the synthetic heads")
    if any("sliding" in m for m in modes):
        if lesion_free_ml["synthetic"][best] > lesion_free_ml["synthetic"]["native"] + 0.5:
            failed.append("marks more than native + 0.5 ml on the lesion-free synthetic heads")
        if "phantoms" in medians and medians["phantoms"][best] < medians["phantoms"]["native"] - 0.02:
            failed.append(f"phantoms {medians['phantoms'][best]:.3f} < native's - 0.02 "
                          f"({medians['phantoms']['native'] - 0.02:.3f})")
    if failed:
        return f"rule: native (every slice) stays the default ({best}: {'; '.join(failed)})"
    return f"rule: {best} becomes the default"


if __name__ == "__main__":
    main()
