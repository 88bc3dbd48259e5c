"""Cases to canvas tensors, through the very preprocessing inference uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ManifestError
from ..image_io import load_flair
from ..labels import read_label
from ..preprocessing import image_to_canvas, mask_to_canvas
from ..process_pool import map_in_processes
from .manifest import Case

log = logging.getLogger(__name__)


@dataclass
class CanvasCase:
    """One case on the canvas: images ``[S, 1, C, C]`` (float16 to halve memory), soft labels."""

    case: Case
    images: torch.Tensor
    labels: torch.Tensor


#: fewest cases worth a worker process of their own (see :func:`load_canvas_cases`)
CASES_PER_WORKER = 24


def load_canvas_case(case: Case, label_path=None) -> CanvasCase:
    images, labels = _canvas_arrays((case, label_path))
    return CanvasCase(case, torch.from_numpy(images), torch.from_numpy(labels))


def load_canvas_cases(cases: list[Case], workers: int = 1, progress: bool = True) -> list[CanvasCase]:
    """:func:`load_canvas_case` of every case, in ``workers`` processes (0: one per core), each
    with at least :data:`CASES_PER_WORKER` cases (a case takes ~0.1-0.3 s, a worker ~2 s to start)."""
    arrays = map_in_processes(_canvas_arrays, [(c, None) for c in cases], workers, "preprocess", "case",
                              progress, min_tasks_per_worker=CASES_PER_WORKER)
    return [CanvasCase(c, torch.from_numpy(i), torch.from_numpy(l)) for c, (i, l) in zip(cases, arrays)]


def _canvas_arrays(task: tuple[Case, object]) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one case on the canvas, float16; NumPy, which crosses processes cheaply."""
    case, label_path = task
    flair = load_flair(case.flair)
    images, mapping, layout = image_to_canvas(flair)
    path = label_path or case.label
    if path is None:
        raise ManifestError(case.flair, f"case {case.case} has no label")
    mask = layout.to_slices(read_label(path, flair, case.label_value))
    labels = mask_to_canvas(mask, mapping)
    return images.astype(np.float16), labels.astype(np.float16)


class SliceDataset(torch.utils.data.Dataset):
    """All selected slices of many cases, held in memory (a few hundred cases fit easily)."""

    def __init__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.images = torch.cat([i for i, _ in items]) if items else torch.empty(0, 1, 256, 256)
        self.labels = torch.cat([l for _, l in items]) if items else torch.empty(0, 1, 256, 256)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float(), self.labels[index].float()
