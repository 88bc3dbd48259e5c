"""60/20/20 train/validation/test splits inside every center x disease stratum.

Patient level by default: all slices of a patient land in one split. The paper split at
image level, which puts neighbouring slices of one patient (nearly the same anatomy and
lesions) in both training and test and so overstates test accuracy; ``image`` level is
offered only to reproduce the paper. A split is saved and reused, so evaluation always runs
on the cases training never saw.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import ManifestError
from .manifest import Case

FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("train", "val", "test")


def _partition(n: int, rng: np.random.Generator) -> list[str]:
    """Shuffle n items into train/val/test at 60/20/20, every split non-empty when n >= 3."""
    n_val = int(round(n * FRACTIONS[1]))
    n_test = int(round(n * FRACTIONS[2]))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = n - n_val - n_test
    labels = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    return [labels[i] for i in rng.permutation(n)]


def make_split(cases: list[Case], seed: int = 0, level: str = "patient",
               slices_per_case: dict[str, int] | None = None) -> dict:
    """Assign patients (or, at image level, slices) to splits inside each stratum."""
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in cases:
        strata[case.stratum].append(case)
    # Strata too small to split (< 3 patients) are pooled, so a small set still gets
    # validation and test cases; larger strata are split on their own.
    pooled = [c for key in sorted(strata) for c in strata[key]
              if len({m.patient for m in strata[key]}) < 3]
    groups = [strata[key] for key in sorted(strata) if len({m.patient for m in strata[key]}) >= 3]
    if pooled:
        groups.append(pooled)
    assignment: dict[str, object] = {}
    for members in groups:
        if level == "patient":
            patients = sorted({c.patient for c in members})
            for patient, split in zip(patients, _partition(len(patients), rng)):
                for c in members:
                    if c.patient == patient:
                        assignment[c.case] = split
        elif level == "image":
            if slices_per_case is None:
                raise ValueError("image-level split needs the slice count of every case")
            items = [(c.case, i) for c in members for i in range(slices_per_case[c.case])]
            per_case: dict[str, list[str]] = defaultdict(list)
            for (name, _), split in zip(items, _partition(len(items), rng)):
                per_case[name].append(split)
            assignment.update(per_case)
        else:
            raise ValueError(f"unknown split level {level!r}")
    return {"level": level, "seed": seed, "fractions": FRACTIONS, "assignment": assignment}


def save_split(split: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(split, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_split(path: Path, cases: list[Case]) -> dict:
    split = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [c.case for c in cases if c.case not in split.get("assignment", {})]
    if missing:
        raise ManifestError(path, f"split does not cover case(s) {', '.join(missing[:5])}; "
                                  "the manifest changed (delete the split to make a new one)")
    return split


def cases_in(split: dict, cases: list[Case], name: str) -> list[Case]:
    """Cases with at least one slice in split ``name`` ('all' for every case)."""
    if name == "all":
        return list(cases)
    out = []
    for c in cases:
        value = split["assignment"][c.case]
        if value == name or (isinstance(value, list) and name in value):
            out.append(c)
    return out


def slice_selection(split: dict, case: Case, name: str, n_slices: int) -> np.ndarray:
    """Boolean mask of the case's slices that belong to split ``name``."""
    value = split["assignment"][case.case]
    if isinstance(value, list):
        return np.array([v == name for v in value], dtype=bool)
    return np.full(n_slices, value == name or name == "all", dtype=bool)
