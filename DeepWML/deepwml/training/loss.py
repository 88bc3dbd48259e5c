"""BCE + Dice loss (the paper's), and the Dice used for model selection."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Batch-global soft Dice: slices without lesions do not dominate, as per-slice Dice would."""
    inter = (probs * target).sum()
    return (2 * inter + eps) / (probs.sum() + target.sum() + eps)


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    return bce + (1 - soft_dice(torch.sigmoid(logits), target))
