"""Batch augmentation on the canvas: the paper's random horizontal flip and +-10 degree
rotation, optional intensity/resolution augmentation, optional random crops (for speed).

Every function runs on the device of its input batch (the trainer moves the batch first, so on
a GPU the warps, gamma, blur and crops run there and the CPU only indexes the batch); the random
draws always come from a CPU generator, so a seed gives the same draws on any device and the CPU
path is unchanged bit for bit."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def flip_rotate(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                max_degrees: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sign
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * sign
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return (F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False),
            F.grid_sample(labels, grid, mode="bilinear", padding_mode="zeros", align_corners=False))


def intensity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma, contrast and blur: other vendors' curves and thicker partial volume."""
    n = images.shape[0]
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.3).to(images.device)
    gain = (1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.15).to(images.device)
    out = images.clamp(min=0) ** gamma * gain
    blur = (torch.rand(n, generator=generator) < 0.3).to(images.device)
    if blur.any():
        kernel = torch.tensor([0.25, 0.5, 0.25], device=images.device)
        k2 = (kernel[:, None] * kernel[None, :])[None, None]
        out[blur] = F.conv2d(out[blur], k2, padding=1)
    return out


def random_crop(images: torch.Tensor, labels: torch.Tensor, size: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random ``size`` crop per batch, biased towards lesions half of the time."""
    full = images.shape[-1]
    if size <= 0 or size >= full:
        return images, labels
    lesion = labels.sum(0)[0] > 0.5
    if lesion.any() and torch.rand(1, generator=generator).item() < 0.5:
        idx = lesion.nonzero()
        r, c = idx[torch.randint(len(idx), (1,), generator=generator).item()].tolist()
        r0 = min(max(r - size // 2, 0), full - size)
        c0 = min(max(c - size // 2, 0), full - size)
    else:
        r0, c0 = (torch.randint(full - size + 1, (2,), generator=generator)).tolist()
    return images[..., r0:r0 + size, c0:c0 + size], labels[..., r0:r0 + size, c0:c0 + size]
