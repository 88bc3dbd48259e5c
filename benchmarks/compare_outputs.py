"""Compare two ``deepwml segment`` output folders: masks voxel by voxel, probabilities by value.

Used to check that a speed change left results unchanged (README "Speed", RESULTS.md):

    .venv/bin/python benchmarks/compare_outputs.py BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def main(before: Path, after: Path) -> int:
    different = 0
    for seg in sorted(s for s in before.glob("*.seg.nrrd") if (after / s.name).exists()):
        name = seg.name[: -len(".seg.nrrd")]
        a, b = read(seg) > 0, read(after / seg.name) > 0
        line = f"{name}: mask voxels {int(a.sum())}, differing {int((a != b).sum())}"
        different += int((a != b).sum())
        prob = before / f"{name}_probabilities.nii.gz"
        if prob.exists() and (after / prob.name).exists():
            pa, pb = read(prob), read(after / prob.name)
            line += (f"; probabilities bit-identical {np.array_equal(pa, pb)}, max |diff| "
                     f"{float(np.abs(pa - pb).max()):.2e}, differing values {float((pa != pb).mean()):.2%}")
        print(line)
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
