"""Lesion marks only where white matter is: a small white-matter network on the same canvas.

Why: a white-matter hyperintensity lies in the white matter (cerebral, cerebellar, brain stem),
yet the lesion network also marks normally bright grey matter: on the near-healthy real 3D head
(experiment 48, README "White-matter restriction") 78 % of what 1.7.0 marks lies where the MNI
grey-matter prior is above one half (the hippocampus, the amygdala, cortex), against 6-28 % on
routine MS heads; and on the TCGA tumour scan it marked orbital-roof tissue that the brain mask
calls brain. SAMSEG and LST model lesions inside the white matter for the same reason. So a
width-8 U-Net at half the canvas resolution (the brain network's architecture and cost), trained
from scratch on the white matter of synthetic heads (the SynthSeg label maps' white matter, brain
stem and ventral diencephalon, with the drawn lesions; never a real scan), runs on the lesion
network's window, and every marked component (26-connected, at the threshold) with fewer than
``min_fraction`` of its voxels within ``near_mm`` (in-plane) of that white matter, and no larger than
``MAX_DROPPED_ML``, is dropped.

Why whole components, a tolerance and a size cap: a juxtacortical lesion touches the cortex, and at
~1.9 mm per pixel the network's mask loses the 2-4 mm wide white matter of the gyri, so a lesion is
judged by where most of it lies, within two of its pixels (4 mm; one pixel, 2 mm, dropped small true
MS lesions on synthetic heads and phantoms); and the network calls large confluent lesion blobs "not
white matter", so a component above 1 ml is never dropped (what the restriction is for are specks).
Each setting was fixed by a rule before its candidate was measured, on synthetic heads only
(README "White-matter restriction", experiment 48; stages 1-3: docs/EXPERIMENTS.md).
Why a guard: a network that finds (almost) no white matter on some unseen input would delete
every lesion; below :data:`MIN_WHITE_MATTER_SHARE` of the brain (or of the head, without a brain
mask) nothing is removed and the summary says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .brain_mask import grow_in_plane
from .components import components_in_box
from .model_files import DEFAULT_MODEL_DIR, LoadedModel, load_model

#: The bundled white-matter model (``deepwml-synth-wm8``).
WHITE_MATTER_MODEL_DIR = DEFAULT_MODEL_DIR.parent / "white-matter"
#: ``task`` of a white-matter model's card.
WHITE_MATTER_TASK = "white-matter"
#: A marked component is kept when at least MIN_NEAR_FRACTION of its voxels lie within NEAR_MM (in-plane) of the
#: white matter (README "White-matter restriction"; 4 mm, two pixels of the network's grid: stage 3, docs/EXPERIMENTS.md).
NEAR_MM = 4.0
MIN_NEAR_FRACTION = 0.5
#: A marked component larger than this (ml) is never dropped: the network calls large confluent lesion blobs "not
#: white matter" (experiment 48 stage 1: whole true components of 6.6-10.1 ml dropped on heavy phantom loads), while
#: what the restriction is for, specks on normally bright grey matter, are each well under it.
MAX_DROPPED_ML = 1.0
#: Below this share of the brain mask's (or, without one, the head's) canvas pixels the white-matter mask is not
#: trusted. White matter is about 40 % of the brain on the synthetic heads (the label maps' white matter, brain
#: stem and ventral diencephalon).
MIN_WHITE_MATTER_SHARE = 0.10


def load_white_matter_model(path: str | Path | LoadedModel | None = None) -> LoadedModel:
    """The verified white-matter model at ``path`` (default: the bundled one); another task's model
    is refused in one line."""
    model = path if isinstance(path, LoadedModel) else load_model(path or WHITE_MATTER_MODEL_DIR, framework="numpy")
    return model.require_task(WHITE_MATTER_TASK, f", not a white-matter model (its card's task must be "
                                                 f"{WHITE_MATTER_TASK!r}); pass a white-matter model or "
                                                 "--no-white-matter")


@dataclass
class WhiteMatterRestriction:
    """What the white-matter restriction did to one volume (the summary's ``white_matter`` entry)."""

    applied: bool
    model: str
    sha256: str
    near_mm: float
    min_fraction: float
    #: larger marked components are never dropped (ml)
    max_dropped_ml: float
    #: marked lesion volume (ml, on the input's grid) and components that lay away from the white matter, removed
    removed_ml: float = 0.0
    removed_components: int = 0
    #: why it was not applied ('' when it was)
    reason: str = ""
    #: the white-matter model's file that ran and its SHA-256
    ran: dict = field(default_factory=dict)
    #: the mesial-temporal exclusion (deepwml.mesial_temporal) that followed: model, SHA-256, file that ran, settings,
    #: removed_ml, removed_components, reason; None without a mesial-temporal model
    mesial_temporal: dict | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def near_white_matter(white_matter: np.ndarray, grid_pixel_mm: float, near_mm: float = NEAR_MM) -> np.ndarray:
    """The white-matter mask ``[N, h, w]`` (on its network's grid of ``grid_pixel_mm`` pixels) grown in-plane by
    ``near_mm``, rounded up to whole pixels: where a marked voxel counts as near the white matter."""
    radius = int(np.ceil(near_mm / grid_pixel_mm - 1e-6))
    return grow_in_plane(white_matter, radius) if radius >= 1 else np.asarray(white_matter, bool)


def far_components(marked: np.ndarray, near: np.ndarray, min_fraction: float = MIN_NEAR_FRACTION,
                   max_voxels: int | None = None) -> tuple[np.ndarray, int]:
    """``(drop, count)``: the voxels of the 26-connected components of ``marked`` with fewer than
    ``min_fraction`` of their voxels in ``near`` (both ``[slices, rows, cols]`` bool) and, with ``max_voxels``,
    no more voxels than that, and how many such components there were."""
    return _components_where(marked, near, lambda share: share < min_fraction, max_voxels)


def inside_components(marked: np.ndarray, inside: np.ndarray, min_fraction: float,
                      max_voxels: int | None = None) -> tuple[np.ndarray, int]:
    """``(drop, count)``: the voxels of the 26-connected components of ``marked`` with at least ``min_fraction`` of
    their voxels in ``inside`` (the mesial-temporal mask, :mod:`deepwml.mesial_temporal`) and, with ``max_voxels``,
    no more voxels than that, and how many such components there were."""
    return _components_where(marked, inside, lambda share: share >= min_fraction, max_voxels)


def _components_where(marked: np.ndarray, region: np.ndarray, chosen: Callable[[np.ndarray], np.ndarray],
                      max_voxels: int | None) -> tuple[np.ndarray, int]:
    """The voxels of the components of ``marked`` whose share of voxels in ``region`` is ``chosen`` (and no larger
    than ``max_voxels``), and how many."""
    out = np.zeros(marked.shape, dtype=bool)
    found = components_in_box(marked)
    if found is None:
        return out, 0
    box, labels, _ = found
    marked, region = marked[box], region[box]
    inside = labels[marked]
    size = np.bincount(inside)
    count = np.bincount(inside, weights=region[marked].astype(np.float64), minlength=size.size)
    picked = np.zeros(size.size, dtype=bool)
    picked[1:] = chosen(count[1:] / size[1:])
    if max_voxels is not None:
        picked &= size <= max_voxels
    out[box] = picked[labels]
    return out, int(np.count_nonzero(picked))
