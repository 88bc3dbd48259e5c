"""Percentiles of integer volumes by counting: np.percentile's exact numbers, several times faster.

Why this exists: normalisation takes percentiles of up to millions of head voxels (the head
mask's 99.5th, then the head's 1st and 50th). ``np.percentile`` copies the voxels out with a
boolean mask and partitions the copy; on a 24x512x512 volume that was ~70 ms of the ~110 ms
normalisation, on the 2-core CPU, per scan (issue 14: the time that is not the network).
Clinical FLAIR is stored as integers (int16/uint16, sometimes uint8; still whole numbers after
the reader's cast to float32), so a histogram with one bin per integer -- one counting pass, in
cache-sized chunks -- holds every order statistic; the masks the normalisation needs ("brighter
than t") are then thresholds on the bins, not on the voxels.

Bit-identical to ``np.percentile`` of the same values as float32 (what normalisation used): the
two order statistics around the virtual index are read from the cumulative counts, the weight
between them is computed as numpy computes it (Hyndman & Fan method 7, index ``(n - 1) q``),
and the interpolation itself is numpy's own formula (:func:`_numpy_lerp`), so float32 vs
float64 results and rounding follow numpy's rules. Tested against
``np.percentile`` on random and real-looking volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Volumes whose integer range is wider than this are left to np.percentile (bins cost memory).
MAX_BINS = 1 << 20
#: Voxels counted per np.bincount call: the intp copy bincount makes stays in the CPU cache.
CHUNK = 1 << 18


@dataclass(frozen=True)
class CountedValues:
    """A multiset of values as non-decreasing ``levels`` (float32) with their ``counts``."""

    levels: np.ndarray
    counts: np.ndarray

    @classmethod
    def of_integers(cls, values: np.ndarray) -> "CountedValues | None":
        """The histogram of an array of whole numbers (an integer dtype, or floats that are all
        whole: a scan cast to float32 on reading), one bin per integer from its minimum to its
        maximum, levels as float32; None for an array with a fraction, NaN, no values or too
        wide a range (checked while counting, chunk by chunk)."""
        values = np.asarray(values)
        if values.dtype.kind not in "iuf" or values.size == 0 or values.dtype.itemsize > 4:
            return None
        flat = values.reshape(-1)
        low, high = flat.min(), flat.max()
        if not (np.isfinite(low) and np.isfinite(high)) or float(high) - float(low) >= MAX_BINS:
            return None
        first = int(low)
        if first != low:
            return None
        bins = int(high) - first + 1
        counts = np.zeros(bins, np.int64)
        for start in range(0, flat.size, CHUNK):
            chunk = flat[start:start + CHUNK]
            whole = chunk.astype(np.int64)
            if values.dtype.kind == "f" and not np.array_equal(whole, chunk):
                return None
            if first:
                whole -= first
            counts += np.bincount(whole, minlength=bins)
        levels = (np.arange(bins, dtype=np.int64) + first).astype(np.float32)
        return cls(levels, counts)

    @property
    def size(self) -> int:
        return int(self.counts.sum())

    def where(self, keep: np.ndarray) -> "CountedValues":
        """The values of the bins where ``keep`` (a boolean per bin) holds."""
        return CountedValues(self.levels[keep], self.counts[keep])

    def mapped(self, levels: np.ndarray) -> "CountedValues":
        """The same counts at other levels: the values after an elementwise non-decreasing map
        (such a map keeps every order statistic's rank)."""
        return CountedValues(levels, self.counts)

    def order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        """The values at 0-based ``ranks`` of the sorted multiset."""
        cumulative = np.cumsum(self.counts)
        return self.levels[np.searchsorted(cumulative, ranks, side="right")]

    def percentile(self, q: float | list[float]):
        """``np.percentile(np.repeat(levels, counts), q)``, the same numbers and types."""
        n = self.size
        if n == 0:
            raise ValueError("percentile of no values")
        fractions = np.true_divide(q, 100)
        virtual = np.asanyarray((n - 1) * fractions)  # numpy's 'linear' virtual index
        below = np.floor(virtual)
        gamma = np.asanyarray(virtual - below, dtype=virtual.dtype)
        lower = np.minimum(below, n - 1).astype(np.intp)  # numpy takes the last value from n - 1 on
        upper = np.where(virtual >= n - 1, n - 1, lower + 1)
        a, b = self.order_statistics(lower.ravel()), self.order_statistics(upper.ravel())
        if type(q) in (int, float):  # numpy's weak promotion for a Python scalar q: a Python float weight
            return _numpy_lerp(a[0], b[0], float(gamma))
        results = [_numpy_lerp(ai, bi, np.asarray(g)) for ai, bi, g in zip(a, b, gamma.ravel())]
        return np.array(results).reshape(np.shape(virtual))


def _numpy_lerp(a: np.floating, b: np.floating, t: float | np.ndarray) -> np.floating:
    """numpy's own interpolation between two order statistics (``_lerp`` of
    ``numpy/lib/_function_base_impl.py``, numpy 2.x: from ``b`` backwards when ``t >= 0.5``),
    with its dtype rules; what ``np.quantile`` of ``[a, b]`` at ``t`` returns. Done here rather
    than through ``np.quantile`` because that call imports ``numpy.ma`` (~10 ms of a cold start,
    issue 14) to ask whether two numbers are masked. Checked against ``np.percentile`` itself
    by the tests."""
    a, b = np.asarray(a), np.asarray(b)
    diff = b - a
    result = np.add(a, diff * t, out=...)  # out=...: a 0-d array, not a scalar
    np.subtract(b, diff * (1 - t), out=result, where=t >= 0.5, casting="unsafe", dtype=type(result.dtype))
    return result[()]


#: Fewer values than this are left to np.percentile: counting pays off on volumes, not on a few edges.
MIN_COUNTED = 1 << 16


def percentile(values: np.ndarray, q: float | tuple[float, ...] | list[float]):
    """``np.percentile(values, q)``, the same numbers and types; counted when ``values`` is a
    large float32 array of whole numbers (a scan as read), partitioned otherwise."""
    values = np.asarray(values)
    counted = (CountedValues.of_integers(values)
               if values.dtype == np.float32 and values.size >= MIN_COUNTED else None)
    return np.percentile(values, q) if counted is None else counted.percentile(q)
