"""How bright a model's marks are against the scan's own white matter (``deepwml sanity``'s
``marked_over_wm``).

Why: on an unlabelled head nothing says whether a mark is a lesion, but a white-matter
hyperintensity is by definition brighter than the normal white matter around it. Marks at
white-matter brightness mean the network leans on where lesions usually lie rather than on what
the scan shows: experiment 32 (docs/EXPERIMENTS.md) marked 15 ml of the near-healthy head at a median 1.03x the
white-matter level, where its parent's marks were 1.19x and the shipped 1.6.0's 1.41x; the volume
alone did not say why. A plausibility figure, not an accuracy: bright cortex mixed into a thick
slab also scores high.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..components import bounding_box
from ..intensity import air_level

#: histogram bins between the lower cut (the brain's median, or its 25th percentile) and its 99.5th percentile
BINS = 128

#: How the white-matter level is read (a model card's ``contrast_floor`` ``level``):
#: ``above-median`` (experiment 40; the default, so cards that name none keep their figures): the histogram mode
#: of the brain above its median; ``flat-above-p25`` (experiment 45): the mode of the flattest third of the
#: brain's voxels above its 25th percentile (see :func:`white_matter_level`).
LEVEL_METHODS = ("above-median", "flat-above-p25")
DEFAULT_LEVEL = "above-median"
#: in-plane scale (mm) of the gradient that tells flat tissue from edges (``flat-above-p25``)
FLAT_GRADIENT_SIGMA_MM = 1.0


@dataclass(frozen=True)
class BrainIntensities:
    """The brain's voxel intensities and their 1st, 25th, 50th and 99.5th percentiles, read once for every level
    of a scan. Why: the envelope floor reads two levels of the same brain, and the percentile pass over a head's
    1.6 million brain voxels cost as much as the rest of a level (about 30 ms of 54 on the 2-core CPU)."""

    values: np.ndarray
    percentiles: tuple[np.float64, np.float64, np.float64, np.float64]


def brain_intensities(flair: np.ndarray, brain: np.ndarray) -> BrainIntensities | None:
    """:class:`BrainIntensities` of ``flair`` inside ``brain`` (None: under 100 voxels, too few for a level)."""
    values = np.asarray(flair)[np.asarray(brain, bool)].astype(np.float64)  # the brain's voxels only
    if values.size < 100:
        return None
    # one partition for all (the contrast floor reads this on every volume); np.median is the 50th
    # kept as float64 scalars: a Python float would be compared with float32 voxels at float32 (NEP 50)
    return BrainIntensities(values, tuple(np.percentile(values, (1, 25, 50, 99.5))))


def white_matter_level(flair: np.ndarray, brain: np.ndarray, method: str = DEFAULT_LEVEL,
                       pixel_mm: tuple[float, float] = (1.0, 1.0),
                       intensities: BrainIntensities | None = None) -> float | None:
    """The white matter's intensity on ``flair`` ``[slices, rows, cols]`` inside ``brain``; None for an
    empty brain or a volume with negative intensities in the brain.

    ``above-median``: the mode of the brain's intensities above their median. On FLAIR the white matter
    is the largest class of the brain's brighter half when grey matter is not much brighter, whatever the
    scanner's scale; no tissue segmentation is needed. But grey matter is the larger and brighter class on
    FLAIR, so the median often lies above the white matter's centre and the mode then sits on its upper tail
    or on the cortex: on 60 synthetic heads with known tissue (v4/v7 seeds 134/135, docs/EXPERIMENTS.md experiment 45) it
    read 1.062x the true white-matter median (median |ln error| 0.060, 90th percentile 0.146; up to 1.39x on
    a v7 head of seed 112).
    ``flat-above-p25``: the cut moves down to the 25th percentile (fluid and most of its partial volume
    below), and only the third of those voxels with the lowest in-plane gradient (``pixel_mm``: the rows'
    and columns' spacing) counts: white matter is the brain's broad flat tissue, the cortex a thin ribbon
    between fluid and white matter, all edge. It read 1.010x on the same heads (0.014, 0.034). No card uses it
    alone: read against the true white matter, 1.7.0's floor let through its false positives on bright-cortex heads
    (experiment 45); the bundled 1.8.1 reads it only for confluent loads inside the white matter (experiments 54, 60).
    Both modes are lightly smoothed, so noise does not pick a stray bin. ``intensities``: the brain's
    :func:`brain_intensities` when the caller has them (the same level, without a second percentile pass)."""
    if method not in LEVEL_METHODS:
        raise ValueError(f"white-matter level method must be one of {', '.join(LEVEL_METHODS)}, not {method!r}")
    flair = np.asarray(flair)
    brain = np.asarray(brain, bool)
    if intensities is None:
        intensities = brain_intensities(flair, brain)
    if intensities is None:
        return None
    values = intensities.values
    darkest, p25, median, high = intensities.percentiles
    if darkest < 0:
        # a ratio needs zero to mean no signal, as scanner output does; a z-scored volume (the
        # BraTS scan: brain median near 0) has no such zero and gave 28.6
        return None
    low = median if method == "above-median" else p25
    if not high > low:
        return float(low) if low > 0 else None
    if method == "flat-above-p25":
        values = _flattest_third(flair, brain, low, pixel_mm)
    counts, edges = np.histogram(values[values >= low], BINS, (low, high))
    peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(float), 1.5)))
    level = float((edges[peak] + edges[peak + 1]) / 2)
    return level if level > 0 else None


def _flattest_third(flair: np.ndarray, brain: np.ndarray, low: float, pixel_mm: tuple[float, float]) -> np.ndarray:
    """The intensities of the third of the brain's voxels at or above ``low`` with the lowest in-plane
    gradient magnitude. Computed slice by slice within the bounding box of that slice's voxels grown by four
    sigmas, so the filter sees the same neighbours as on the whole image (the same values, bit for bit) at a
    fraction of the work: a head's box is set by its widest slice, and the top and bottom slices hold far less
    (0.107 -> 0.088 s on the benchmark's 24 x 512 x 512 phantom, 2-core CPU)."""
    sigma = (FLAT_GRADIENT_SIGMA_MM / pixel_mm[0], FLAT_GRADIENT_SIGMA_MM / pixel_mm[1])
    grow = [int(np.ceil(4 * s)) + 1 for s in sigma]
    upper = np.asarray(brain, bool) & (flair >= low)
    crops = []
    for z in np.flatnonzero(upper.any(axis=(1, 2))):
        box = tuple(slice(max(0, b.start - g), b.stop + g) for b, g in zip(bounding_box(upper[z]), grow))
        crops.append((np.asarray(flair[z][box], dtype=np.float32), upper[z][box]))
    # the slices shared by two threads (scipy's filters release the GIL), the same arithmetic as one after the other
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda crop: _slice_steepness(*crop, sigma, pixel_mm), crops))
    steepness = np.concatenate([part[0] for part in parts])
    values = np.concatenate([part[1] for part in parts])
    return values[steepness <= np.percentile(steepness, 100 / 3)].astype(np.float64)


def _slice_steepness(crop: np.ndarray, upper: np.ndarray, sigma: tuple[float, float], pixel_mm: tuple[float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The in-plane gradient magnitude (per millimetre) of one slice's ``crop`` at its ``upper`` voxels, and their
    intensities. Not ndimage.gaussian_gradient_magnitude over the volume with sigma 0 across slices: that skips the
    smoothing *and the derivative* on a zero-sigma axis, so the "gradient" would hold the intensity itself."""
    rows = ndimage.gaussian_filter(crop, sigma, order=(1, 0))
    cols = ndimage.gaussian_filter(crop, sigma, order=(0, 1))
    # the gradient only where it is read (a third of the box's voxels): the same values, elementwise
    return np.hypot(rows[upper] / np.float32(pixel_mm[0]), cols[upper] / np.float32(pixel_mm[1])), crop[upper]


def above_air(flair: np.ndarray) -> np.ndarray:
    """``flair`` measured from its air level (:func:`deepwml.intensity.air_level`, as normalisation
    measures it), so a ratio to the white matter does not change with an offset (a DICOM rescale
    intercept): for every scan whose air lies near 0 -- all the data here -- the same numbers."""
    flair = np.asarray(flair, dtype=np.float32)
    air = air_level(flair)
    return flair - np.float32(air) if air else flair


def marked_over_white_matter(flair: np.ndarray, brain: np.ndarray, lesion: np.ndarray) -> float | None:
    """Median intensity of the marked voxels over :func:`white_matter_level`, both measured from the
    air level (:func:`above_air`); None when nothing is marked or the level cannot be read."""
    lesion = np.asarray(lesion, bool)
    if not lesion.any():
        return None
    flair = above_air(flair)
    level = white_matter_level(flair, brain)
    if level is None:
        return None
    return float(np.median(np.asarray(flair)[lesion].astype(np.float64))) / level
