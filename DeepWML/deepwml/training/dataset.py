"""Cases to canvas tensors, through the very preprocessing inference uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import ManifestError
from ..image_io import load_flair
from ..labels import read_label
from ..preprocessing import image_to_canvas, mask_to_canvas
from .manifest import Case

log = logging.getLogger(__name__)


@dataclass
class CanvasCase:
    """One case on the canvas: images ``[S, 1, C, C]`` (float16 to halve memory), soft labels."""

    case: Case
    images: torch.Tensor
    labels: torch.Tensor


def load_canvas_case(case: Case, label_path=None) -> CanvasCase:
    flair = load_flair(case.flair)
    images, mapping, layout = image_to_canvas(flair)
    path = label_path or case.label
    if path is None:
        raise ManifestError(case.flair, f"case {case.case} has no label")
    mask = layout.to_slices(read_label(path, flair, case.label_value))
    labels = mask_to_canvas(mask, mapping)
    return CanvasCase(case, torch.from_numpy(images).half(), torch.from_numpy(labels).half())


class SliceDataset(torch.utils.data.Dataset):
    """All selected slices of many cases, held in memory (a few hundred cases fit easily)."""

    def __init__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.images = torch.cat([i for i, _ in items]) if items else torch.empty(0, 1, 256, 256)
        self.labels = torch.cat([l for _, l in items]) if items else torch.empty(0, 1, 256, 256)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float(), self.labels[index].float()
