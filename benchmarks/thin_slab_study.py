"""How should a 1 mm (3D) FLAIR be segmented by a 2D model trained on 3-8 mm slices? (issue 10)

Modes: every native 1 mm slice (``--thin-slab-mm 0``) or axial slabs of 3 or 5 mm (mean of
adjacent slices) with the slab probabilities interpolated back to every slice. Measured with
one warm Segmenter per mode (ONNX Runtime, float32, CPU) on:

- ``phantoms``: synthetic 1 mm phantoms (seed 101, never used in training): data on which a
  default may be chosen;
- ``lesjak2017``: the three real 1 mm scans: reported only (evaluation data; never used to
  choose anything).

Dice is per volume on the input grid; time is preprocessing + network + mapping back.

    .venv/bin/python benchmarks/thin_slab_study.py [--phantoms 12] [--data ../shared/data]
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


def lesjak_cases(root: Path) -> Iterator[tuple[str, sitk.Image, np.ndarray]]:
    for case in lesjak2017_cases(root):
        flair = load_flair(case.flair)
        yield case.case, flair, read_label(case.label, flair, case.label_value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=12)
    parser.add_argument("--data", type=Path, default=default_data_root())
    args = parser.parse_args()
    segmenters = {mode: Segmenter(device="cpu", thin_slab_mm=mode) for mode in MODES}
    print(f"model {segmenters[0.0].model.model_id}, backend {segmenters[0.0].backend}, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = " | ".join(f"Dice / s at {m:g} mm" if m else "Dice / s native" for m in MODES)
    print(f"| set | case | truth ml | {header} |\n|---|---|---:|" + "---:|" * len(MODES))
    for name, cases in (("phantoms", phantom_cases(args.phantoms)), ("lesjak2017", lesjak_cases(args.data))):
        scores: dict[float, list[float]] = {m: [] for m in MODES}
        for case, flair, truth in cases:
            cells = []
            for mode, segmenter in segmenters.items():
                t0 = time.perf_counter()
                mask = sitk.GetArrayFromImage(segmenter.segment(flair).mask) > 0
                seconds = time.perf_counter() - t0
                scores[mode].append(dice(truth, mask))
                cells.append(f"{scores[mode][-1]:.3f} / {seconds:.1f}")
            ml = truth.sum() * np.prod(flair.GetSpacing()) / 1000
            print(f"| {name} | {case} | {ml:.1f} | {' | '.join(cells)} |", flush=True)
        print(f"| {name} | **median** | | " + " | ".join(f"**{np.median(scores[m]):.3f}**" for m in MODES) + " |")


if __name__ == "__main__":
    main()
