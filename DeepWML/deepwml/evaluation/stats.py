"""The paper's statistics with scipy: Shapiro-Wilk, Kruskal-Wallis, pairwise Mann-Whitney
with Bonferroni correction (only where Kruskal-Wallis is significant)."""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
#: Lesion volume per image (ml) groups of the paper: G1 < 0.2 <= G2 < 0.7 <= G3 < 2 <= G4 < 5 <= G5.
LV_EDGES_ML = (0.2, 0.7, 2.0, 5.0)
LV_GROUPS = ("G1", "G2", "G3", "G4", "G5")


def lv_group(volume_ml: float) -> str:
    return LV_GROUPS[int(np.searchsorted(LV_EDGES_ML, volume_ml, side="right"))]


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def shapiro(values: Sequence[float]) -> dict:
    v = _clean(values)
    if len(v) < 3 or np.ptp(v) == 0:
        return {"n": len(v), "W": math.nan, "p": math.nan}
    res = stats.shapiro(v)
    return {"n": len(v), "W": float(res.statistic), "p": float(res.pvalue)}


def compare_groups(groups: dict[str, Sequence[float]]) -> dict:
    """Kruskal-Wallis over groups with >= 2 values; Bonferroni-corrected pairwise Mann-Whitney."""
    clean = {k: _clean(v) for k, v in groups.items()}
    usable = {k: v for k, v in clean.items() if len(v) >= 2}
    out: dict = {"groups": {k: len(v) for k, v in clean.items()},
                 "shapiro": {k: shapiro(v) for k, v in clean.items()},
                 "kruskal": {"H": math.nan, "p": math.nan}, "pairwise": []}
    if len(usable) < 2:
        return out
    values = list(usable.values())
    if all(np.ptp(np.concatenate(values)) == 0 for _ in [0]):
        return out
    kw = stats.kruskal(*values)
    out["kruskal"] = {"H": float(kw.statistic), "p": float(kw.pvalue)}
    if kw.pvalue < ALPHA:
        pairs = list(itertools.combinations(usable, 2))
        for a, b in pairs:
            mw = stats.mannwhitneyu(usable[a], usable[b], alternative="two-sided")
            out["pairwise"].append({"a": a, "b": b, "U": float(mw.statistic), "p": float(mw.pvalue),
                                    "p_bonferroni": float(min(1.0, mw.pvalue * len(pairs)))})
    return out
