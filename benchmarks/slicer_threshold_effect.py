"""What the Slicer panel's old default did: its result at the slider's 0.5 instead of the model
card's threshold (0.8 for the bundled model), on the real scans. Evaluation only: it reports the
effect of a bug fixed on 2026-12-01 (README, "3D Slicer extension"); nothing is chosen by it.

    .venv/bin/python benchmarks/slicer_threshold_effect.py REAL_OUT [--data ../shared/data]

REAL_OUT is a folder ``benchmarks/real_scans.sh`` wrote (its Lesjak manifests are read).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import SimpleITK as sitk

from deepwml.evaluation.metrics import dice
from deepwml.evaluation.realdata import default_data_root
from deepwml.image_io import load_flair
from deepwml.labels import read_label
from deepwml.lesion_summary import voxel_volume_ml
from deepwml.segmenter import Segmenter
from deepwml.training.manifest import read_manifest

THRESHOLDS = (0.8, 0.5)  # the card's, the panel's old default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real_out", type=Path)
    parser.add_argument("--data", type=Path, default=default_data_root())
    args = parser.parse_args()
    segmenter = Segmenter(device="cpu")
    for resolution in ("native", "5mm"):
        for case in read_manifest(args.real_out / f"lesjak2017-{resolution}" / "manifest.csv"):
            image = load_flair(case.flair)
            truth = read_label(case.label, image, case.label_value)
            probabilities = sitk.GetArrayFromImage(segmenter.segment(image).probabilities)
            ml = voxel_volume_ml(image)
            print(resolution, case.case, f"truth {truth.sum() * ml:.2f} ml",
                  *(f"at {t}: {(probabilities >= t).sum() * ml:.2f} ml, Dice {dice(truth, probabilities >= t):.3f}"
                    for t in THRESHOLDS))
    heads = [args.data / "rorden-synthsr-flair3d" / "FLAIR.nii.gz"] + sorted(
        Path(p) for p in glob.glob(str(args.data / "lesjak2016-ms-longitudinal-raw" / "patient*" / "study*_FLAIR.nii.gz")))
    for path in heads:
        image = load_flair(path)
        probabilities = sitk.GetArrayFromImage(segmenter.segment(image).probabilities)
        ml = voxel_volume_ml(image)
        print(path.parent.name, path.name, *(f"at {t}: {(probabilities >= t).sum() * ml:.2f} ml" for t in THRESHOLDS))


if __name__ == "__main__":
    main()
