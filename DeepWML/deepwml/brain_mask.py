"""Lesion probabilities only inside the brain: a small brain-mask network on the same canvas.

Why: white matter hyperintensities lie in the brain, yet on whole-head scans the lesion
network marks bright things outside it (a strip of scalp at the vertex, orbital fat, specks in
the tongue and face), and what a radiologist sees first in a contact sheet is a contour on the
scalp. The established tools remove the head first (LST-AI runs HD-BET, SAMSEG models the
whole head). A registration-based brain mask (the sanity check's MNI template, 3-11 s) is too
slow for the button, and it is the sanity check's own yardstick. So a width-8 U-Net at half the
canvas resolution (``input_pool`` 2), trained on the brain masks of the synthetic whole heads
(the same label maps that make the lesion network's training data; never a real scan), runs on
the canvas the lesion network sees, first, on the head's window; the lesion probability is set to
0 farther than ``margin_mm`` outside its brain, and so the lesion network runs only on the brain's
window (:func:`lesion_window`; about a quarter less lesion-network time on whole heads, issue 14).

Why the largest component, filled holes and a margin: the brain is one connected object, so
what the network calls brain apart from it (a speck of orbital fat, the scalp) is dropped; a
lesion is never removed for lying in a hole of the mask (a ventricle, a lesion the network took
for CSF); at its edge the margin (``--brain-margin-mm``) decides: 3 mm until experiment 46 (README
"Brain mask"; history: docs/EXPERIMENTS.md), which found no margin non-inferior on synthetic heads (0.13 % of true lesion, all in confluent
small-vessel loads, lies outside the mask) and made 0 the default.

Why a plausibility guard: a brain network that fails on some unseen input (a phantom that is
not a head, an odd field of view) would delete true lesions silently. When the brain mask
covers less than :data:`MIN_BRAIN_SHARE` of the head on the canvas, it is not applied, a
warning is logged and the summary says so.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .canvas_window import brain_window
from .model_files import DEFAULT_MODEL_DIR, LoadedModel, load_model

log = logging.getLogger(__name__)

#: The bundled brain-mask model (``deepwml-synth-brain8``).
BRAIN_MODEL_DIR = DEFAULT_MODEL_DIR.parent / "brain"
#: ``task`` of a brain-mask model's card; lesion models have none (or ``"lesion"``).
BRAIN_TASK = "brain"
#: Below this share of the head's canvas pixels the brain mask is not trusted (not applied).
#: On the 60 fresh synthetic validation heads (whole heads, 17-39 slices, 15 % skull-stripped)
#: the share is 0.23-0.90, on the 14 real heads 0.43-0.91; see the README's "Brain mask".
MIN_BRAIN_SHARE = 0.15


def load_brain_model(path: str | Path | LoadedModel | None = None) -> LoadedModel:
    """The verified brain-mask model at ``path`` (default: the bundled one); a lesion model is
    refused in one line."""
    model = path if isinstance(path, LoadedModel) else load_model(path or BRAIN_MODEL_DIR, framework="numpy")
    return model.require_task(BRAIN_TASK, f", not a brain-mask model (its card's task must be {BRAIN_TASK!r}); "
                                          "pass a brain-mask model or --no-brain-mask")


@dataclass
class BrainMasking:
    """What the brain mask did to one volume (the summary's ``brain_mask`` entry)."""

    applied: bool
    model: str
    sha256: str
    margin_mm: float
    #: brain volume the mask covers in the scanned slices (ml, from the canvas; not intracranial volume)
    brain_ml: float
    #: lesion volume at the threshold that lay outside brain + margin and was removed (ml, counted
    #: on the input's voxel grid), within the lesion network's window: it runs only on the brain's
    #: window plus some context (:func:`lesion_window`), so what lies farther out is not computed
    removed_ml: float
    #: why the mask was not applied ('' when it was)
    reason: str = ""
    #: the brain model's file that ran and its SHA-256 (the ONNX graph, its int8 graph under
    #: ``--precision int8``, or the safetensors weights in PyTorch)
    ran: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _window_shape(rows: slice, cols: slice, size: int) -> tuple[int, int]:
    return len(range(*rows.indices(size))), len(range(*cols.indices(size)))


@dataclass
class BrainCanvas:
    """The brain-mask network's mask of one volume, on its own grid: ``mask`` ``[N, h, w]`` (bool)
    covers the head window ``rows`` x ``cols`` of the canvas at 1/``block`` of its resolution
    (the network pools ``block`` x ``block`` pixels, so this is all it said). Post-processing on
    this grid costs 1/block^2 of doing it on the canvas."""

    rows: slice
    cols: slice
    block: int
    mask: np.ndarray
    #: the brain network's time on this volume (s), part of the segmenter's "network" time
    seconds: float = 0.0
    _regions: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def empty(cls, slices: int, rows: slice, cols: slice, size: int, block: int) -> "BrainCanvas":
        h, w = _window_shape(rows, cols, size)
        return cls(rows, cols, block, np.zeros((slices, -(-h // block), -(-w // block)), dtype=bool))

    def put(self, picked: np.ndarray, logits: np.ndarray) -> None:
        """Store the brain network's logits ``[k, 1, h, w]`` (repeated block x block) of slices ``picked``."""
        self.mask[picked] = logits[:, 0, ::self.block, ::self.block] >= 0.0  # probability >= 0.5

    def regions(self, margin_px: float) -> tuple[np.ndarray, np.ndarray]:
        """:func:`brain_region` of the whole mask (once all slices are :meth:`put`), computed once
        per margin: the lesion network's window and :func:`restrict_to_brain` both need it."""
        if margin_px not in self._regions:
            self._regions[margin_px] = brain_region(self.mask, margin_px)
        return self._regions[margin_px]

    def on_canvas(self, small: np.ndarray, size: int) -> np.ndarray:
        """A ``[N, h', w']`` array on this grid back on the ``[N, size, size]`` canvas (False outside the window)."""
        out = np.zeros((small.shape[0], size, size), dtype=bool)
        h, w = _window_shape(self.rows, self.cols, size)
        out[:, self.rows, self.cols] = small.repeat(self.block, axis=1).repeat(self.block, axis=2)[:, :h, :w]
        return out


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a ``[slices, rows, cols]`` mask (the brain is one
    connected object; a speck the network calls brain in the orbit or the scalp is not)."""
    labels = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    return sitk.GetArrayFromImage(sitk.RelabelComponent(labels, sortByObjectSize=True)) == 1


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``mask`` ``[slices, rows, cols]`` with every in-plane hole (background not 4-connected to
    the slice's border) filled, slice by slice.

    One SimpleITK call for all slices: the background of the slices is stacked with an empty
    slice between each two and at both ends, so it can only connect within its own slice; its
    face-connected components are then each slice's 4-connected ones, and a hole is a component
    that touches no in-plane border (tested against per-slice 2D filling). 24 slices took 30 ms
    as 24 ``BinaryFillhole`` calls on the 2-core CPU, 8 ms as one, 3 ms as one labelling (159
    slices of a 1 mm 3D head: 59 -> 19 ms); the cold start, issue 14."""
    n, rows, cols = mask.shape
    stack = np.zeros((2 * n + 1, rows, cols), dtype=np.uint8)
    stack[1::2] = ~np.asarray(mask, dtype=bool)
    labels = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(stack), False))[1::2]
    border = np.unique(np.concatenate([labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]], axis=None))
    return ~np.isin(labels, border[border > 0])


def brain_region(brain: np.ndarray, margin_px: float) -> tuple[np.ndarray, np.ndarray]:
    """``(brain, region)`` for a brain mask ``[N, h, w]`` (bool): the mask's largest 3D component
    with holes filled slice by slice, and that grown in-plane by a disc of ``margin_px`` pixels
    rounded up (where lesion probability is kept); both ``[N, h, w]``.

    SimpleITK's filters, not scipy.ndimage: importing scipy.ndimage took ~0.2 s of a timed
    cold start on the 2-core CPU, and SimpleITK is loaded anyway."""
    brain = fill_holes_per_slice(largest_component(np.asarray(brain, dtype=bool)))
    radius = int(np.ceil(margin_px - 1e-6))
    if radius < 1:
        return brain, brain
    return brain, grow_in_plane(brain, radius)


@functools.lru_cache(maxsize=None)
def disc_offsets(radius: int) -> np.ndarray:
    """``(dy, dx)`` of SimpleITK's in-plane ball of ``radius`` (``BinaryDilate`` with kernel
    radius ``[radius, radius, 0]`` and ``sitkBall``): taken from SimpleITK itself, once."""
    size = 2 * radius + 1
    dot = np.zeros((1, size, size), np.uint8)
    dot[0, radius, radius] = 1
    ball = sitk.BinaryDilate(sitk.GetImageFromArray(dot), [radius, radius, 0], sitk.sitkBall)
    return np.argwhere(sitk.GetArrayViewFromImage(ball)[0] > 0) - radius


def grow_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` ``[slices, rows, cols]`` dilated slice by slice by SimpleITK's ball of ``radius``,
    as shifted ORs in numpy: the same pixels as ``sitk.BinaryDilate`` (tested), ~3 ms instead of
    ~13 ms for 24 slices of 128x128 on the 2-core CPU (the cold start, issue 14)."""
    n, rows, cols = mask.shape
    padded = np.zeros((n, rows + 2 * radius, cols + 2 * radius), dtype=bool)
    padded[:, radius:radius + rows, radius:radius + cols] = mask
    out = np.zeros((n, rows, cols), dtype=bool)
    for dy, dx in disc_offsets(radius):
        out |= padded[:, radius - dy:radius - dy + rows, radius - dx:radius - dx + cols]
    return out


def brain_share(brain: np.ndarray, block: int, canvas: np.ndarray) -> float:
    """The share of the head's canvas pixels (``canvas`` ``[N, 1, C, C]`` > 0) that the brain mask
    ``brain`` (on its own grid of ``block`` x ``block`` canvas pixels) covers: the plausibility
    guard's quantity (:data:`MIN_BRAIN_SHARE`); 0 for a canvas without head."""
    head_pixels = int(np.count_nonzero(canvas[:, 0] > 0))
    return int(np.count_nonzero(brain)) * block * block / head_pixels if head_pixels else 0.0


def margin_in_pixels(margin_mm: float, pixel_mm: tuple[float, float], block: int) -> float:
    """The margin in pixels of the brain network's grid (``block`` canvas pixels of ``pixel_mm``)."""
    return margin_mm / (min(pixel_mm) * block)


def lesion_window(brain_canvas: BrainCanvas, canvas: np.ndarray, margin_px: float, divisor: int,
                  context: int) -> tuple[np.ndarray, slice, slice] | None:
    """Where the lesion network must run on ``[N, 1, C, C]`` ``canvas`` slices when this brain
    mask will be applied: ``(slices, rows, cols)`` of
    :func:`deepwml.canvas_window.brain_window` around brain + margin (``margin_px`` on the brain
    network's grid), ``context`` canvas pixels beyond it; None when the mask will not be
    trusted (:data:`MIN_BRAIN_SHARE`): the lesion network then sees the head's window as without
    a brain mask, so an implausible brain mask never hides a lesion."""
    brain, region = brain_canvas.regions(margin_px)
    if brain_share(brain, brain_canvas.block, canvas) < MIN_BRAIN_SHARE:
        return None
    return brain_window(brain_canvas.on_canvas(region, canvas.shape[-1]), divisor, context,
                        brain_canvas.rows, brain_canvas.cols)


def restrict_to_brain(probs: np.ndarray, brain_canvas: BrainCanvas, canvas: np.ndarray, threshold: float,
                      pixel_mm: tuple[float, float], slice_mm: float, margin_mm: float,
                      model: LoadedModel, ran: dict | None = None) -> tuple[BrainMasking, np.ndarray, np.ndarray]:
    """Set canvas lesion probabilities ``probs`` ``[N, 1, C, C]`` to 0 outside the brain of
    ``brain_canvas`` grown by ``margin_mm`` (in place; the margin is rounded up to the brain
    network's grid of ``block`` canvas pixels), unless the brain mask is implausible.
    ``canvas``: the network input (the head is > 0 there); ``pixel_mm``: a canvas pixel's
    (row, col) size; ``slice_mm``: the distance between canvas slices.

    Returns what was done (``removed_ml`` still 0: the segmenter counts it on the input's grid,
    :func:`removed_voxels`), the indices of the canvas slices where a pixel at or above
    ``threshold`` was zeroed, and those slices' zeroed probabilities ``[k, 1, C, C]``."""
    block = brain_canvas.block
    pixel_ml = pixel_mm[0] * pixel_mm[1] * slice_mm / 1000.0
    brain, region = brain_canvas.regions(margin_in_pixels(margin_mm, pixel_mm, block))
    share = brain_share(brain, block, canvas)
    common = dict(model=model.model_id, sha256=str(model.card.get("weights_sha256", "")), ran=dict(ran or {}),
                  margin_mm=margin_mm, brain_ml=int(np.count_nonzero(brain)) * block * block * pixel_ml, removed_ml=0.0)
    none = np.zeros(0, dtype=np.intp), np.zeros((0, *probs.shape[1:]), dtype=probs.dtype)
    if share < MIN_BRAIN_SHARE:
        reason = (f"brain mask covers {share:.0%} of the head (< {MIN_BRAIN_SHARE:.0%}): not trusted, lesion "
                  "probabilities left as they are")
        log.warning("%s", reason)
        return BrainMasking(False, reason=reason, **common), *none
    outside = ~brain_canvas.on_canvas(region, probs.shape[-1])
    marked = np.flatnonzero(((probs[:, 0] >= threshold) & outside).any(axis=(1, 2)))
    lost = np.where(outside[marked, None], probs[marked], np.float32(0.0))
    probs[:, 0][outside] = 0.0
    return BrainMasking(True, **common), marked, lost


def removed_voxels(kept: np.ndarray, lost: np.ndarray, threshold: float) -> int:
    """Voxels at or above ``threshold`` with the zeroed probabilities ``lost`` added back and
    below it without them: the lesion the brain mask removed, on the input's grid. The canvas
    is mapped back linearly, so the map without the brain mask is ``kept + lost``."""
    return int(np.count_nonzero((kept < threshold) & (kept + lost >= threshold)))
