"""A small mark must be brighter than the tissue right around it (experiment 56, docs/EXPERIMENTS.md).

Why: the contrast floor (:mod:`deepwml.contrast_floor`) holds every mark to one white-matter level per scan, and that
level is a compromise: bright cortex pulls it up on some heads (a confluent load falls under it) and a speck of normally
bright grey matter or of partial-volume brightening stays above it on others. A hyperintensity is by definition
brighter than what surrounds it; a mark on tissue that is as bright as its neighbours is not one. So every small marked
component (26-connected, at the threshold, on the input's grid; at most ``max_ml``, so a confluent load is never judged
by a ring that lies partly in more lesion) is compared with its *shell*: the voxels on the same slices within
``shell_mm`` in-plane of it that are not marked, lie in the brain mask and are at least ``tissue_factor`` x the floor's
white-matter level (CSF and dark partial volume are not the tissue a lesion is brighter than). It is dropped when its
median intensity is below ``ratio`` x the shell's median. A component with fewer than ``min_shell_voxels`` shell voxels
is kept (nothing to compare with).

In-plane only because the slices of a routine 2D FLAIR are 3-8 mm thick: the next slice is another place.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import ndimage

from .components import components_in_box
from .errors import ModelFileError


@dataclass(frozen=True)
class LocalContrast:
    """The test's settings (a model card's ``contrast_floor.local`` entry)."""

    ratio: float
    shell_mm: float = 3.0
    max_ml: float = 1.0
    tissue_factor: float = 0.8
    min_shell_voxels: int = 20

    def __post_init__(self) -> None:
        for name in ("ratio", "shell_mm", "max_ml", "tissue_factor"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"local contrast {name} must be a positive number, got {value!r}")
        if not (isinstance(self.min_shell_voxels, int) and self.min_shell_voxels >= 1):
            raise ValueError(f"local contrast min_shell_voxels must be an integer >= 1, got {self.min_shell_voxels!r}")

    @classmethod
    def from_card(cls, entry: Any) -> "LocalContrast":
        """From a card's ``{"ratio": r, "shell_mm": ..., ...}`` (ValueError/TypeError/KeyError when malformed)."""
        if not isinstance(entry, dict):
            raise TypeError(f"local must be an object, got {entry!r}")
        unknown = set(entry) - {"ratio", "shell_mm", "max_ml", "tissue_factor", "min_shell_voxels"}
        if unknown:
            raise ValueError(f"local has unknown settings {sorted(unknown)}")
        return cls(float(entry["ratio"]), float(entry.get("shell_mm", 3.0)), float(entry.get("max_ml", 1.0)),
                   float(entry.get("tissue_factor", 0.8)), int(entry.get("min_shell_voxels", 20)))

    def as_dict(self) -> dict:
        return {"ratio": self.ratio, "shell_mm": self.shell_mm, "max_ml": self.max_ml,
                "tissue_factor": self.tissue_factor, "min_shell_voxels": self.min_shell_voxels}

    def describe(self) -> str:
        """One plain sentence for reports."""
        return (f"Marked lesions of at most {self.max_ml:g} ml whose median is below {self.ratio:g}x the tissue within "
                f"{self.shell_mm:g} mm around them were removed.")


@dataclass(frozen=True)
class LocalContrastApplied:
    """What the test did to one volume (the summary's ``contrast_floor.local`` entry)."""

    setting: LocalContrast
    removed_components: int
    removed_ml: float
    #: components small enough to be judged, and of those the ones kept for want of a shell
    judged_components: int = 0
    no_shell_components: int = 0

    def as_dict(self) -> dict:
        return {**self.setting.as_dict(), "judged_components": self.judged_components,
                "no_shell_components": self.no_shell_components, "removed_components": self.removed_components,
                "removed_ml": round(self.removed_ml, 4)}


@functools.lru_cache(maxsize=64)
def shell_footprint(shell_mm: float, pixel_mm: tuple[float, float]) -> np.ndarray:
    """The in-plane ellipse of ``shell_mm`` on pixels of ``pixel_mm`` (rows, cols), as a ``(1, h, w)`` structure."""
    ry, rx = (max(1, int(math.floor(shell_mm / mm))) for mm in pixel_mm)
    dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    disc = (dy * pixel_mm[0]) ** 2 + (dx * pixel_mm[1]) ** 2 <= shell_mm ** 2 + 1e-9
    return disc[None]


def locally_faint(marked: np.ndarray, flair: np.ndarray, brain: np.ndarray, white_matter_level: float,
                  setting: LocalContrast, pixel_mm: tuple[float, float], voxel_ml: float
                  ) -> tuple[np.ndarray, int, int, int]:
    """``(drop, dropped, judged, no_shell)``: the voxels of the small marked components that are not brighter than
    ``ratio`` x their shell (see the module), how many components that is, how many were small enough to judge, and how
    many of those had too small a shell. ``marked``, ``flair`` (intensities above the air level), ``brain``: one ``[slices, rows, cols]`` grid."""
    drop = np.zeros(marked.shape, dtype=bool)
    found = components_in_box(marked)
    if found is None:
        return drop, 0, 0, 0
    box, labels, count = found
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = np.flatnonzero(sizes[1:] * voxel_ml <= setting.max_ml) + 1
    footprint = shell_footprint(setting.shell_mm, (float(pixel_mm[0]), float(pixel_mm[1])))
    pad_y, pad_x = footprint.shape[1] // 2, footprint.shape[2] // 2
    tissue_value = np.float32(setting.tissue_factor * white_matter_level)
    objects = ndimage.find_objects(labels)
    no_shell = removed = 0
    for label in small:
        local = objects[label - 1]
        z0, z1 = box[0].start + local[0].start, box[0].start + local[0].stop
        y0, y1 = box[1].start + local[1].start, box[1].start + local[1].stop
        x0, x1 = box[2].start + local[2].start, box[2].start + local[2].stop
        wy0, wy1 = max(0, y0 - pad_y), min(marked.shape[1], y1 + pad_y)
        wx0, wx1 = max(0, x0 - pad_x), min(marked.shape[2], x1 + pad_x)
        component = np.zeros((z1 - z0, wy1 - wy0, wx1 - wx0), dtype=bool)
        component[:, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = labels[local] == label
        window = (slice(z0, z1), slice(wy0, wy1), slice(wx0, wx1))
        values = flair[window]
        shell = (ndimage.binary_dilation(component, footprint) & ~marked[window] & brain[window]
                 & (values >= tissue_value))
        if np.count_nonzero(shell) < setting.min_shell_voxels:
            no_shell += 1
            continue
        if np.median(values[component]) < setting.ratio * np.median(values[shell]):
            drop[window] |= component
            removed += 1
    return drop, removed, int(small.size), no_shell


def apply_local_contrast(probabilities: np.ndarray, flair: np.ndarray, brain: np.ndarray, white_matter_level: float,
                         threshold: float, setting: LocalContrast, pixel_mm: tuple[float, float], voxel_ml: float
                         ) -> tuple[np.ndarray, LocalContrastApplied]:
    """``probabilities`` with the locally faint small components' probabilities set to 0 (so a threshold chosen later
    never marks them either), and what was done."""
    drop, dropped, judged, no_shell = locally_faint(probabilities >= threshold, flair, brain, white_matter_level,
                                                    setting, pixel_mm, voxel_ml)
    removed = int(np.count_nonzero(drop))
    record = LocalContrastApplied(setting, dropped, removed * voxel_ml, judged, no_shell)
    if not removed:
        return probabilities, record
    return np.where(drop, np.float32(0.0), probabilities).astype(probabilities.dtype, copy=False), record


def card_local_contrast(entry: Optional[dict], path: Any) -> Optional[LocalContrast]:
    """The ``local`` setting of a card's ``contrast_floor`` entry (None: none); a malformed one refuses the model."""
    if entry is None or entry.get("local") is None:
        return None
    try:
        return LocalContrast.from_card(entry["local"])
    except (TypeError, KeyError, ValueError) as err:
        raise ModelFileError(path, f"model card's contrast_floor.local is not usable ({err})") from None
