"""The paper's 2D U-Net, with a configurable width.

Four 2x2 max-poolings, two 3x3 conv + ReLU per block, 2x2 transposed-conv up-sampling,
skip connections by concatenation, a 1x1 conv to one channel. ``base_channels=64`` is the
published network (64 -> 1024 channels, 31 M parameters, ~96 GFLOP per 256x256 slice);
narrower widths trade little accuracy for large speed-ups on the CPU. Convolutions are
padded ("same") so the output has the input's size, as needed for a 256x256 canvas.
The module returns logits; :meth:`UNet2D.probabilities` applies the sigmoid.
"""

from __future__ import annotations

import torch
from torch import nn

from .architecture import UNetConfig  # noqa: F401  (the card's description; torch-free)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )


class UNet2D(nn.Module):
    """2D U-Net (Ronneberger et al. 2015) as DeepWML uses it."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.down = nn.ModuleList()
        cin = config.in_channels
        for w in widths[:-1]:
            self.down.append(_double_conv(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.bottom = _double_conv(widths[-2], widths[-1])
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w_low, w in zip(widths[:0:-1], widths[-2::-1]):
            self.up.append(nn.ConvTranspose2d(w_low, w, 2, stride=2))
            self.up_conv.append(_double_conv(2 * w, w))
        self.head = nn.Conv2d(widths[0], 1, 1)

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return self.config.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.config.input_pool
        if pool > 1:
            x = nn.functional.avg_pool2d(x, pool)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = conv(torch.cat([skip, up(x)], dim=1))
        logits = self.head(x)
        return nn.functional.interpolate(logits, scale_factor=pool, mode="nearest") if pool > 1 else logits

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(x).float())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
