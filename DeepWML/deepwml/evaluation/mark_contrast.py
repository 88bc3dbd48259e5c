"""How bright a model's marks are against the scan's own white matter (``deepwml sanity``'s
``marked_over_wm``).

Why: on an unlabelled head nothing says whether a mark is a lesion, but a white-matter
hyperintensity is by definition brighter than the normal white matter around it. Marks at
white-matter brightness mean the network leans on where lesions usually lie rather than on what
the scan shows: experiment 32 (README) marked 15 ml of the near-healthy head at a median 1.03x the
white-matter level, where its parent's marks were 1.19x and the shipped 1.6.0's 1.41x; the volume
alone did not say why. A plausibility figure, not an accuracy: bright cortex mixed into a thick
slab also scores high.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..intensity import air_level

#: histogram bins between the brain's median and its 99.5th percentile
BINS = 128


def white_matter_level(flair: np.ndarray, brain: np.ndarray) -> float | None:
    """The mode of the brain's intensities above their median; None for an empty brain or a
    volume with negative intensities in the brain.

    Why this proxy: on FLAIR the white matter is the largest class of the brain's brighter half
    (fluid is dark; cortex is brighter but thinner, and partial volume spreads it), so its peak is
    the mode there, whatever the scanner's scale; no tissue segmentation is needed. Lightly
    smoothed, so noise does not pick a stray bin."""
    values = np.asarray(flair)[np.asarray(brain, bool)].astype(np.float64)  # the brain's voxels only
    if values.size < 100:
        return None
    # one partition for the three (the contrast floor reads this on every volume); np.median is the 50th
    darkest, low, high = np.percentile(values, (1, 50, 99.5))
    if darkest < 0:
        # a ratio needs zero to mean no signal, as scanner output does; a z-scored volume (the
        # BraTS scan: brain median near 0) has no such zero and gave 28.6
        return None
    if not high > low:
        return float(low) if low > 0 else None
    counts, edges = np.histogram(values[values >= low], BINS, (low, high))
    peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(float), 1.5)))
    level = float((edges[peak] + edges[peak + 1]) / 2)
    return level if level > 0 else None


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
