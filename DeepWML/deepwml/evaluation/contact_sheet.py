"""Contact sheet: every k-th acquisition slice of a scan with lesion and brain-mask outlines.

Why: a radiologist judges a whole-head result by scrolling through it; one PNG per scan with
the FLAIR, the predicted lesion outline (red), the lesion voxels beyond the brain tolerance
(filled yellow) and the independent brain mask outline (cyan) shows at a glance whether the
model marks lesions, cortex, scalp or eyes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Aim for about this many panels per scan when no step is given.
TARGET_PANELS = 24
COLUMNS = 6


def slice_step(n_slices: int, target: int = TARGET_PANELS) -> int:
    """Every how many slices to show so that about ``target`` panels cover the scan."""
    return max(1, math.ceil(n_slices / target))


def plot_contact_sheet(image: np.ndarray, lesion: np.ndarray, brain: np.ndarray, outside: np.ndarray,
                       pixel_mm: tuple[float, float], png: Path, title: str, step: int = 0) -> Path:
    """Write the sheet for ``[slice, row, col]`` stacks (canonical orientation) to ``png``.

    ``pixel_mm`` (row, column) spacing sets the aspect ratio; ``step`` 0 picks one so that
    about :data:`TARGET_PANELS` slices are shown. Slices without any signal are skipped.
    """
    from .plots import _plt, _save

    plt = _plt()
    has_signal = np.nonzero(image.reshape(image.shape[0], -1).max(1) > image.min())[0]
    first, last = (int(has_signal[0]), int(has_signal[-1])) if has_signal.size else (0, image.shape[0] - 1)
    step = step or slice_step(last - first + 1)
    shown = list(range(first, last + 1, step))
    rows = math.ceil(len(shown) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(2.6 * COLUMNS, 2.6 * rows + 0.4), squeeze=False)
    lo, hi = np.percentile(image[first:last + 1], [1, 99.5])
    aspect = pixel_mm[0] / pixel_mm[1]
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(image[i], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="antialiased")
        if brain[i].any():
            ax.contour(brain[i], [0.5], colors="cyan", linewidths=0.6)
        if lesion[i].any():
            ax.contour(lesion[i], [0.5], colors="red", linewidths=0.7)
        out = lesion[i] & outside[i]
        if out.any():
            overlay = np.zeros((*out.shape, 4))
            overlay[out] = (1.0, 0.9, 0.0, 0.8)
            ax.imshow(overlay, aspect=aspect, interpolation="nearest")
        area = float(lesion[i].sum()) * pixel_mm[0] * pixel_mm[1]
        ax.set_title(f"slice {i}: {area:.0f} mm²", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, png, 80)
