"""Marks no brighter than the scan's own white matter are not hyperintensities (experiment 40).

Why: a white-matter *hyper*intensity is by definition brighter than the normal white matter around
it, and SAMSEG's lesion model encodes the same constraint (lesion intensity above white matter on
FLAIR). The from-scratch networks of experiments 30-37 (docs/EXPERIMENTS.md) over-mark faint, normal-looking
white matter on real thick slices at 1.02-1.12x its level, and grow marks from a lesion into faint
brightening beside it on synthetic heads (the brightening probe). A floor at ``k`` x the white-matter
level removes such marks whatever the network believes; what it costs is the faint partial-volume
rim of true lesions, which is why ``k`` is chosen on synthetic heads by a rule fixed beforehand.

Two forms, both on the input's voxel grid with the input's own intensities measured from their air
level (a ratio needs zero to mean no signal: an offset of +1000 would otherwise lift every voxel
towards the white matter's ratio and remove true lesions; :func:`white_matter_level` refuses a
z-scored volume):

- ``voxel``: every voxel below the floor loses its probability (set to 0), whatever the threshold,
  so a threshold chosen later (the Slicer slider) still never marks it;
- ``component``: every 26-connected marked component whose median intensity is below the floor
  is dropped (its probabilities set to 0); it keeps a lesion's faint rim but not faint spill
  joined to a lesion.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
from scipy import ndimage

from .background import in_background
from .components import components_in_box, in_plane_box
from .errors import ModelFileError
from .evaluation.mark_contrast import (DEFAULT_LEVEL, LEVEL_METHODS, above_air, brain_intensities,
                                       white_matter_level)

log = logging.getLogger(__name__)

#: The two forms (see the module's docstring).
MODES = ("voxel", "component")
#: A floor level that is two levels by place (experiments 52-54 and 60, docs/EXPERIMENTS.md; the bundled 1.8.1 uses
#: it behind a load ramp, below): for the voxels of a marked component larger than 1 ml that lie inside the white
#: matter's in-plane envelope (the white-matter network's mask with its in-plane holes filled) the accurate
#: ``flat-above-p25`` level (never above the other), everywhere else ``above-median``, which bright cortex pulls up.
#: Why: the misread level removes most of a confluent load on bright-cortex heads, and the network's false positives on
#: bright cortex lie outside the envelope. Measured on fresh synthetic heads: +0.021 mean paired Dice on thick heads,
#: but more marks on lesion-free heads and far from lesions, so it failed its rule alone. A card's ``min_load_ml``
#: (experiment 54) uses it only on scans whose marks in such components inside the envelope total at least that much
#: (a confluent load), so light loads and healthy heads keep the ``above-median`` floor bit for bit: 1.8.0 named it
#: with 20 ml. A step there makes the result jump for a small change upstream (a load read at 19.6 ml kept 0.6 ml, at
#: 21.3 ml 19.5 ml), so ``full_load_ml`` (experiment 60) makes it a ramp: the bundled 1.8.1 blends the envelope's
#: level in from 10 ml (none of it) to 20 ml (all of it).
ENVELOPE_LEVEL = "flat-in-envelope"
FLOOR_LEVELS = LEVEL_METHODS + (ENVELOPE_LEVEL,)
#: the white matter's envelope (bool, the input's grid), or a function that makes it inside an in-plane ``(rows, cols)``
#: box (None: everywhere), and returns None where there is no trusted white-matter mask
EnvelopeSource = Union[np.ndarray, Callable[[Optional[tuple[slice, slice]]], Optional[np.ndarray]]]


@dataclass(frozen=True)
class ContrastFloor:
    """Drop marks below ``factor`` x the white-matter level (``mode`` in :data:`MODES`), the level read
    by ``level`` (:data:`~deepwml.evaluation.mark_contrast.LEVEL_METHODS`; a factor means something only
    with the level it was chosen with, so both travel in the card). ``level`` None: the model card's floor's
    level (the Segmenter resolves it), and the first level, ``above-median``, where nothing resolved it."""

    factor: float
    mode: str = "voxel"
    level: Optional[str] = None
    #: with :data:`ENVELOPE_LEVEL`: the envelope's level only on a scan whose marked load (ml, at the threshold, before
    #: the floor, in components > 1 ml inside the envelope) is at least this; 0: on every scan (experiment 53's form)
    min_load_ml: float = 0.0
    #: with ``min_load_ml``: a ramp instead of a step (experiment 60). From ``min_load_ml`` to this load the envelope's
    #: level is blended in (geometrically, :meth:`envelope_weight`), fully used from here on, so the result never jumps
    #: at the gate; 0: a step at ``min_load_ml`` (1.8.0's card; the bundled 1.8.1 ramps from 10 to 20 ml)
    full_load_ml: float = 0.0

    def __post_init__(self) -> None:
        if not (self.factor > 0 and np.isfinite(self.factor)):
            raise ValueError(f"contrast floor factor must be a positive number, got {self.factor!r}")
        if self.mode not in MODES:
            raise ValueError(f"contrast floor mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.level is not None and self.level not in FLOOR_LEVELS:
            raise ValueError(f"contrast floor level must be one of {', '.join(FLOOR_LEVELS)}, got {self.level!r}")
        if self.level == ENVELOPE_LEVEL and self.mode != "voxel":
            raise ValueError(f"contrast floor level {ENVELOPE_LEVEL} needs the voxel mode, got {self.mode!r}")
        if not (self.min_load_ml >= 0 and np.isfinite(self.min_load_ml)):
            raise ValueError(f"contrast floor min_load_ml must be a number >= 0, got {self.min_load_ml!r}")
        if self.min_load_ml and self.level != ENVELOPE_LEVEL:
            raise ValueError(f"contrast floor min_load_ml needs the level {ENVELOPE_LEVEL}, got {self.level!r}")
        if not (self.full_load_ml >= 0 and np.isfinite(self.full_load_ml)):
            raise ValueError(f"contrast floor full_load_ml must be a number >= 0, got {self.full_load_ml!r}")
        if self.full_load_ml and not self.full_load_ml > self.min_load_ml:
            raise ValueError(f"contrast floor full_load_ml must be above min_load_ml ({self.min_load_ml:g}), "
                             f"got {self.full_load_ml!r}")
        if self.full_load_ml and self.level != ENVELOPE_LEVEL:
            raise ValueError(f"contrast floor full_load_ml needs the level {ENVELOPE_LEVEL}, got {self.level!r}")

    def envelope_weight(self, load_ml: Optional[float]) -> float:
        """How much of the envelope's level a scan with gate load ``load_ml`` gets: 0 below ``min_load_ml`` (or no
        load read), 1 from ``full_load_ml`` on (from ``min_load_ml`` on without a ramp), linear in the load between."""
        if load_ml is None or load_ml < self.min_load_ml:
            return 0.0
        if not self.full_load_ml:
            return 1.0
        return float(min(1.0, (load_ml - self.min_load_ml) / (self.full_load_ml - self.min_load_ml)))

    def setting(self) -> dict:
        """The floor as a card's ``contrast_floor`` entry holds it (read back by :func:`card_contrast_floor`) and as
        reports record it; a load gate and a ramp only where they are set. No level: the first one."""
        return {"factor": self.factor, "mode": self.mode, "level": self.level or DEFAULT_LEVEL,
                **({"min_load_ml": self.min_load_ml} if self.min_load_ml else {}),
                **({"full_load_ml": self.full_load_ml} if self.full_load_ml else {})}

    def describe(self) -> str:
        """One plain sentence for reports."""
        what = "voxels" if self.mode == "voxel" else "marked components (by their median)"
        text = f"Lesion {what} darker than {self.factor:g}x the scan's white-matter level were removed."
        if self.level == ENVELOPE_LEVEL:
            if self.full_load_ml:
                where = (f"where such lesions total at least {self.full_load_ml:g} ml (from {self.min_load_ml:g} ml, "
                         "in part: a ramp)")
            elif self.min_load_ml:
                where = f"where such lesions total at least {self.min_load_ml:g} ml"
            else:
                where = "on every scan"
            text += (" For marked lesions larger than 1 ml inside the white matter, " + where + ", that level is read "
                     "from the flat white matter alone, which bright cortex cannot pull up.")
        return text


@dataclass(frozen=True)
class FloorApplied:
    """What the floor did to one volume (the summary's ``contrast_floor`` entry)."""

    factor: float
    mode: str
    #: the white-matter level in the input's units above its air level (for a scan whose air is 0, the
    #: level itself); None: it could not be read and nothing was removed
    white_matter_level: Optional[float]
    #: marked voxels (at the threshold used) the floor removed
    removed_voxels: int
    #: why nothing was removed, when the floor could not be applied
    not_applied: Optional[str] = None
    #: how the level was read (:data:`FLOOR_LEVELS`)
    level: str = DEFAULT_LEVEL
    #: with :data:`ENVELOPE_LEVEL`: the level used inside the white matter's envelope (``white_matter_level`` is the
    #: one outside it); None when it was not used (no envelope, or a load under the gate: today's floor everywhere)
    envelope_level: Optional[float] = None
    #: with :data:`ENVELOPE_LEVEL`: the marked load the gate read (ml; None: not read, because there was no envelope or
    #: fewer marks in all than the gate) and whether the envelope's level was used (False: today's floor everywhere)
    envelope_load_ml: Optional[float] = None
    envelope_used: bool = False
    #: with a ramp (``full_load_ml``): the share of the envelope's level this scan got (0-1); None: no ramp
    envelope_weight: Optional[float] = None

    def as_dict(self) -> dict:
        out = {"factor": self.factor, "mode": self.mode, "level": self.level,
               "white_matter_level": None if self.white_matter_level is None else round(self.white_matter_level, 4),
               "removed_voxels": self.removed_voxels, "not_applied": self.not_applied}
        if self.level == ENVELOPE_LEVEL:
            out["envelope_level"] = None if self.envelope_level is None else round(self.envelope_level, 4)
            out["envelope_load_ml"] = None if self.envelope_load_ml is None else round(self.envelope_load_ml, 3)
            out["envelope_used"] = self.envelope_used
            if self.envelope_weight is not None:
                out["envelope_weight"] = round(self.envelope_weight, 4)
        return out


def floor_setting(factor: float | None) -> ContrastFloor | str | None:
    """The Segmenter's ``contrast_floor`` for a ``--contrast-floor`` value: None (not given) is the
    card's floor ("card"), 0 is none, K is a voxel floor at K."""
    if factor is None:
        return "card"
    return None if factor == 0 else ContrastFloor(float(factor))


def card_contrast_floor(model: Any) -> ContrastFloor | None:
    """The floor a model card names (``"contrast_floor": {"factor": K, "mode": "voxel", "level": L}``;
    None: no entry; no ``level``: the first one, ``above-median``). The floor was chosen with the model's
    weights and threshold, so it travels in its card; a malformed entry refuses the model in one line,
    as any bad card setting does."""
    entry = model.card.get("contrast_floor")
    if entry is None:
        return None
    try:
        return ContrastFloor(float(entry["factor"]), str(entry.get("mode", "voxel")),
                             str(entry.get("level", DEFAULT_LEVEL)), float(entry.get("min_load_ml", 0.0)),
                             float(entry.get("full_load_ml", 0.0)))
    except (TypeError, KeyError, ValueError) as err:
        raise ModelFileError(model.path, f"model card's contrast_floor is not usable ({err})") from None


class FloorScan:
    """What the floor reads of a scan before it looks at a mark: the input measured from its air level, the brain
    mask, the brain's intensities and the white-matter level (and, for :data:`ENVELOPE_LEVEL`, the flat level).

    Why a step of its own: none of it depends on the network's marks, so the segmenter reads it on its second core
    while it maps the marks back onto the input grid, and the envelope floor's flat level (a gradient pass over the
    brain, the costliest piece of the floor) can start there before the marks say whether the gate opens; it is read
    only if it does (README "Speed"). Every figure is the one :func:`apply_contrast_floor` reads in one go."""

    def __init__(self, flair: np.ndarray, brain: np.ndarray, floor: ContrastFloor,
                 pixel_mm: tuple[float, float] = (1.0, 1.0), start_flat: bool = False) -> None:
        self.flair = above_air(flair)
        self.brain = brain
        self.pixel_mm = pixel_mm
        self.floor = floor
        self.method = floor.level or DEFAULT_LEVEL
        self.intensities = brain_intensities(self.flair, brain)  # one percentile pass for both levels
        self.level = white_matter_level(self.flair, brain, DEFAULT_LEVEL if self.method == ENVELOPE_LEVEL
                                        else self.method, pixel_mm, self.intensities)
        self._flat: Optional[Future] = None
        self._flat_lock = threading.Lock()  # a scan read ahead may be shared by finish() calls on several threads
        if start_flat:
            self.start_flat()

    def start_flat(self) -> None:
        """Start reading the flat level on a thread of its own (once; only for the envelope floor with a level)."""
        with self._flat_lock:
            if self._flat is None and self.method == ENVELOPE_LEVEL and self.level is not None:
                self._flat = in_background(white_matter_level, self.flair, self.brain, "flat-above-p25",
                                           self.pixel_mm, self.intensities, name="deepwml-flat-level")

    def flat_level(self) -> Optional[float]:
        """The flat level (``flat-above-p25``), waited for if it is being read."""
        self.start_flat()
        return self._flat.result() if self._flat is not None else None


def apply_contrast_floor(probabilities: np.ndarray, flair: np.ndarray, brain: np.ndarray, threshold: float,
                         floor: ContrastFloor, pixel_mm: tuple[float, float] = (1.0, 1.0),
                         envelope: Optional[EnvelopeSource] = None,
                         load_voxels: Optional[int] = None,
                         voxel_ml: float = 0.001) -> tuple[np.ndarray, FloorApplied]:
    """``probabilities`` with the faint marks' probabilities set to 0 (a new array), and what was done.

    All three arrays share the input's ``[slices, rows, cols]`` grid; ``brain`` is the brain mask the
    white-matter level is read in; ``pixel_mm`` their rows' and columns' spacing (the ``flat-above-p25``
    level's gradient is in millimetres). ``envelope`` (same grid, bool): the white matter's envelope for
    :data:`ENVELOPE_LEVEL` (None: that floor is ``above-median``'s everywhere), or a function that makes it inside an
    in-plane ``(rows, cols)`` box (None: everywhere), called only when the floor's ``min_load_ml`` gate can open (the
    marks in all reach it); ``load_voxels``: the envelope's
    level only for the voxels of marked components (26-connected, before the floor) larger than this (a confluent
    load, where the misread level costs most; a speck keeps today's floor); ``voxel_ml``: one voxel's volume, for the
    floor's ``min_load_ml`` gate and the record. With no readable level (an empty brain, negative intensities) the
    probabilities come back unchanged and the record says so."""
    return floor_marks(probabilities, FloorScan(flair, brain, floor, pixel_mm), threshold, envelope, load_voxels,
                       voxel_ml)


def floor_marks(probabilities: np.ndarray, scan: FloorScan, threshold: float,
                envelope: Optional[EnvelopeSource] = None,
                load_voxels: Optional[int] = None, voxel_ml: float = 0.001) -> tuple[np.ndarray, FloorApplied]:
    """:func:`apply_contrast_floor` on a scan already read (:class:`FloorScan`, which holds the floor)."""
    flair, floor, method, wm_level = scan.flair, scan.floor, scan.method, scan.level
    if wm_level is None:
        why = "no white-matter level in the brain (empty, or intensities below zero)"
        log.warning("contrast floor not applied: %s", why)
        return probabilities, FloorApplied(floor.factor, floor.mode, None, 0, why, method)
    inner = load_ml = where = None
    used, weight = False, 0.0
    marked = probabilities >= threshold
    # fewer marks in all than the gate: it cannot open, and the envelope is not even made
    if method == ENVELOPE_LEVEL and envelope is not None and np.count_nonzero(marked) * voxel_ml >= floor.min_load_ml:
        scan.start_flat()  # on its own thread while this one makes the envelope and labels the loads
        where, load_ml = _envelope_load(marked, envelope, load_voxels, voxel_ml)
        weight = floor.envelope_weight(load_ml)
        used = weight > 0
        if used:  # never above the other level
            flat = scan.flat_level()
            inner = wm_level if flat is None else min(flat, wm_level)
            if weight < 1:  # the ramp: part of the way from the scan's level to the envelope's (a ratio of levels)
                inner = wm_level * (inner / wm_level) ** weight
    if floor.mode == "voxel":
        drop = flair < np.float32(floor.factor * wm_level)
        if used:  # the envelope's own level where it is used: the same comparison, voxel by voxel
            drop[where] = flair[where] < np.float32(floor.factor * inner)
        removed = int(np.count_nonzero(drop & marked))
    else:
        drop = faint_components(marked, flair, floor.factor * wm_level)
        removed = int(np.count_nonzero(drop))
    return np.where(drop, np.float32(0.0), probabilities).astype(probabilities.dtype, copy=False), \
        FloorApplied(floor.factor, floor.mode, wm_level, removed, level=method, envelope_level=inner,
                     envelope_load_ml=load_ml, envelope_used=used,
                     envelope_weight=weight if floor.full_load_ml else None)


def _envelope_load(marked: np.ndarray, envelope: EnvelopeSource, load_voxels: Optional[int], voxel_ml: float
                   ) -> tuple[Optional[np.ndarray], Optional[float]]:
    """``(where, load_ml)`` of the envelope floor: the voxels its own level would apply to (the envelope, or with
    ``load_voxels`` its part on the marked components larger than that) and the marked load there (None, None: no
    envelope). A function ``envelope`` is asked only for the loads' in-plane box: nothing outside it is read."""
    large = None if load_voxels is None else large_components(marked, load_voxels)
    in_plane = None if large is None else in_plane_box(large)
    boxed = callable(envelope) and in_plane is not None
    if callable(envelope):
        envelope = envelope(in_plane)
    # one made inside the box stands for a white-matter mask the guard trusted, even if the box holds none of it
    if envelope is None or (not boxed and not envelope.any()):
        return None, None
    where = envelope if large is None else envelope & large
    return where, int(np.count_nonzero(where & marked)) * voxel_ml


def large_components(marked: np.ndarray, min_voxels: int) -> np.ndarray:
    """The voxels of the 26-connected components of ``marked`` with more than ``min_voxels`` voxels."""
    out = np.zeros(marked.shape, dtype=bool)
    found = components_in_box(marked)
    if found is None:
        return out
    box, labels, _ = found
    out[box] = (np.bincount(labels.ravel()) > min_voxels)[labels] & marked[box]
    return out


def faint_components(marked: np.ndarray, flair: np.ndarray, floor_value: float) -> np.ndarray:
    """The voxels of the 26-connected components of ``marked`` whose median intensity is below ``floor_value``."""
    out = np.zeros(marked.shape, dtype=bool)
    found = components_in_box(marked)
    if found is None:
        return out
    box, labels, count = found
    values = np.asarray(flair[box], dtype=np.float64)
    medians = ndimage.median(values, labels, index=np.arange(1, count + 1))
    faint = np.concatenate([[False], np.asarray(medians) < floor_value])
    out[box] = faint[labels]
    return out
