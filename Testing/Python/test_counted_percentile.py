"""Percentiles by counting (issue 14): np.percentile's exact numbers and types, or no answer.

Normalisation takes its percentiles from a histogram when a volume holds whole numbers; the
bundled model stays valid only if every number is bit-identical to np.percentile's, which
these tests check against numpy itself (not against stored values).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from deepwml.counted_percentile import MIN_COUNTED, CountedValues, percentile
from deepwml.image_io import load_flair
from deepwml.intensity import air_level
from deepwml.preprocessing import counted_head_percentiles, head_mask
from deepwml.slice_layout import plan_slices

QS = [99.5, 1.0, 50.0, 0.0, 100.0, 33.3, [1.0, 50.0], (0.5, 99.5), [99.5], np.array([10.0, 90.0])]


def same(a, b) -> bool:
    """Equal values, the same Python type and the same dtype (float32 vs float64 matters)."""
    return type(a) is type(b) and np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float32])
def test_counted_percentiles_equal_numpys(dtype):
    rng = np.random.default_rng(int(np.dtype(dtype).num))
    for size in (1, 2, 3, 7, 100, 2501):
        for span in (0, 1, 3, 250, 4000):
            low = 0 if np.dtype(dtype).kind == "u" else -span // 3
            values = rng.integers(low, low + span + 1, size).astype(dtype)
            counted = CountedValues.of_integers(values)
            assert counted is not None and counted.size == size
            for q in QS:
                want = np.percentile(values.astype(np.float32), q)
                assert same(counted.percentile(q), want), (dtype, size, span, q)


def test_skewed_values_with_ties_and_gaps():
    """A head-like histogram: a spike of air, gaps, a long bright tail."""
    rng = np.random.default_rng(3)
    values = np.concatenate([np.zeros(50_000), rng.gamma(2.0, 200.0, 80_000).round(),
                             rng.integers(3000, 3005, 17)]).astype(np.float32)
    rng.shuffle(values)
    counted = CountedValues.of_integers(values)
    for q in QS:
        assert same(counted.percentile(q), np.percentile(values, q)), q


@pytest.mark.parametrize("values", [np.array([0.0, 1.5, 2.0], np.float32), np.array([1.0, np.nan], np.float32),
                                    np.array([1.0, np.inf], np.float32), np.array([0, 2 ** 21], np.int32),
                                    np.array([], np.int16), np.array([1.0, 2.0]), np.array([1, 2], np.int64)],
                         ids=["fraction", "nan", "inf", "too wide", "empty", "float64", "int64"])
def test_what_cannot_be_counted_is_refused(values):
    assert CountedValues.of_integers(values) is None


def test_percentile_counts_large_whole_float32_and_partitions_the_rest():
    rng = np.random.default_rng(5)
    whole = rng.integers(0, 900, MIN_COUNTED + 11).astype(np.float32)
    for values in (whole, whole + np.float32(0.25), whole[:100], whole.astype(np.float64)):
        for q in QS:
            assert same(percentile(values, q), np.percentile(values, q))


@pytest.mark.parametrize("offset", [0.0, 1000.0, -400.0])
def test_head_percentiles_from_the_histogram_equal_the_voxel_path(phantom_flair, offset):
    """The head mask's 99.5th percentile above the air, the mask, the head's 1st and 50th:
    the same numbers from bins as from voxels, also with air away from 0 (shifted scans)."""
    image = load_flair(phantom_flair)
    volume = plan_slices(image).to_slices(sitk.GetArrayFromImage(image)) + np.float32(offset)
    zero = air_level(volume)
    assert (zero != 0) == (offset != 0)  # the shifted scans exercise the air-level path
    want = np.percentile(volume[head_mask(volume, zero)], [1.0, 50.0])
    assert same(counted_head_percentiles(CountedValues.of_integers(volume), zero), want)
