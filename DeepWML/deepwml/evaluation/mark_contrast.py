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
    if values.size < 100 or np.percentile(values, 1) < 0:
        # a ratio needs zero to mean no signal, as scanner output does; a z-scored volume (the
        # BraTS scan: brain median near 0) has no such zero and gave 28.6
        return None
    low, high = np.median(values), np.percentile(values, 99.5)
    if not high > low:
        return float(low) if low > 0 else None
    counts, edges = np.histogram(values[values >= low], BINS, (low, high))
    peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(float), 1.5)))
    level = float((edges[peak] + edges[peak + 1]) / 2)
    return level if level > 0 else None


def marked_over_white_matter(flair: np.ndarray, brain: np.ndarray, lesion: np.ndarray) -> float | None:
    """Median intensity of the marked voxels over :func:`white_matter_level`; None when nothing is
    marked or the level cannot be read."""
    lesion = np.asarray(lesion, bool)
    if not lesion.any():
        return None
    level = white_matter_level(flair, brain)
    if level is None:
        return None
    return float(np.median(np.asarray(flair)[lesion].astype(np.float64))) / level
