"""One overlay figure per evaluated case, so every number in the report can be looked at.

Why: a per-volume Dice of 0.1 can mean lesions missed, a scalp ring marked, or a small truth
drowned in false positives; only the image tells which. For each case we show the slices
with the most manual lesion and the slice with the largest false-positive area.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .plots import plot_overlays

#: Slices shown per case (the last one goes to the worst false-positive slice when there is one).
SLICES_PER_CASE = 4
#: Reports of very large sets show the first cases only (each figure is ~100 kB in the HTML).
MAX_CASE_FIGURES = 60


#: Shown slices of one case are at least this far apart (mm) when possible: neighbouring
#: 1 mm slices look alike.
MIN_GAP_MM = 8.0


def pick_slices(truth: np.ndarray, pred: np.ndarray, keep: np.ndarray, count: int = SLICES_PER_CASE,
                min_gap: int = 1) -> list[int]:
    """Indices of ``[slice, row, col]`` stacks to show: most manual lesion (at least ``min_gap``
    slices apart where possible), then most false positives."""
    flat = truth.shape[0], -1
    lesion = truth.reshape(flat).sum(1) * keep
    false_pos = (pred & ~truth).reshape(flat).sum(1) * keep
    by_lesion = [int(i) for i in np.argsort(-lesion, kind="stable") if lesion[i] > 0]
    chosen: list[int] = []
    for i in by_lesion:
        if len(chosen) < count - 1 and all(abs(i - j) >= min_gap for j in chosen):
            chosen.append(i)
    worst_fp = int(np.argmax(false_pos))
    if false_pos[worst_fp] > 0 and worst_fp not in chosen:
        chosen.append(worst_fp)
    chosen += [i for i in by_lesion if i not in chosen][:count - len(chosen)]
    if not chosen:  # neither lesion nor prediction: show the middle slice
        chosen = [truth.shape[0] // 2]
    return sorted(chosen)


def case_samples(case: str, disease: str, image: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                 keep: np.ndarray, slice_mm: float) -> list[dict]:
    """The chosen slices as :func:`plot_overlays` samples (copies: the volumes can be freed)."""
    gap = max(1, int(round(MIN_GAP_MM / slice_mm)))
    return [{"case": case, "disease": disease, "slice": i, "image": np.array(image[i]),
             "truth": truth[i].copy(), "pred": pred[i].copy()} for i in pick_slices(truth, pred, keep, min_gap=gap)]


def file_stem(case: str) -> str:
    """A case name safe as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", case) or "case"


def plot_case(samples: list[dict], folder: Path) -> Path:
    """One PNG per case in ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    return plot_overlays(samples, folder / f"{file_stem(samples[0]['case'])}.png")
