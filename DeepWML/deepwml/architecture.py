"""The U-Net's description and a numpy reference of its forward pass (no PyTorch needed).

Why a numpy forward: the ONNX graph of a model must be checked against the model's verified
safetensors weights before it runs (a replaced graph with an updated card hash otherwise runs
silently), and that check must work where PyTorch is not installed. It runs the fixed probe
of :mod:`deepwml.onnx_backend` once per load, in float64, so speed does not matter; it mirrors
:class:`deepwml.unet.UNet2D` layer by layer (tested against it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters, stored verbatim in every model card."""

    base_channels: int = 64
    depth: int = 4
    in_channels: int = 1
    #: the input is averaged over ``input_pool`` x ``input_pool`` blocks before the U-Net and the
    #: logits are repeated back to the input's size (nearest): the same network at 1/input_pool
    #: of the resolution and 1/input_pool^2 of the work. 1 for the lesion models; 2 for the
    #: brain-mask model, whose 2 mm mask measured non-inferior to the full-resolution one (deepwml.brain_mask;
    #: README "Brain mask").
    input_pool: int = 1

    def to_dict(self) -> dict:
        data = {"type": "unet2d", **asdict(self)}
        if self.input_pool == 1:  # the lesion models' cards stay as they were
            data.pop("input_pool")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        if data.get("type", "unet2d") != "unet2d":
            raise ValueError(f"unknown architecture type {data.get('type')!r}")
        pool = int(data.get("input_pool", 1))
        if pool < 1:
            raise ValueError(f"input_pool must be 1 or more, not {pool}")
        return cls(int(data["base_channels"]), int(data.get("depth", 4)),
                   int(data.get("in_channels", 1)), pool)

    @property
    def widths(self) -> list[int]:
        """Channels per level, top to bottom: the width doubles at every pooling."""
        return [self.base_channels * 2 ** level for level in range(self.depth + 1)]

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** self.depth * self.input_pool


def parameter_shapes(config: UNetConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight of :class:`deepwml.unet.UNet2D` with ``config`` (its
    state-dict keys), so a weights file can be checked against the card without PyTorch."""
    widths = config.widths
    shapes: dict[str, tuple[int, ...]] = {}

    def double_conv(prefix: str, cin: int, cout: int) -> None:
        shapes.update({f"{prefix}.0.weight": (cout, cin, 3, 3), f"{prefix}.0.bias": (cout,),
                       f"{prefix}.2.weight": (cout, cout, 3, 3), f"{prefix}.2.bias": (cout,)})
    cin = config.in_channels
    for level, w in enumerate(widths[:-1]):
        double_conv(f"down.{level}", cin, w)
        cin = w
    double_conv("bottom", widths[-2], widths[-1])
    for level, (w_low, w) in enumerate(zip(widths[:0:-1], widths[-2::-1])):
        shapes.update({f"up.{level}.weight": (w_low, w, 2, 2), f"up.{level}.bias": (w,)})
        double_conv(f"up_conv.{level}", 2 * w, w)
    shapes.update({"head.weight": (1, widths[0], 1, 1), "head.bias": (1,)})
    return shapes


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """'same' convolution of ``[N, C, H, W]`` with ``[O, C, k, k]`` (k odd), plus bias."""
    k = weight.shape[-1]
    pad = k // 2
    n, _, h, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, weight.shape[0], h, width))
    for i in range(k):
        for j in range(k):  # one matrix product per kernel tap
            out += np.einsum("oc,nchw->nohw", weight[:, :, i, j], padded[:, :, i:i + h, j:j + width],
                             optimize=True)
    return out + bias[None, :, None, None]


def _double_conv(x: np.ndarray, w: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    x = np.maximum(_conv(x, w[f"{prefix}.0.weight"], w[f"{prefix}.0.bias"]), 0)
    return np.maximum(_conv(x, w[f"{prefix}.2.weight"], w[f"{prefix}.2.bias"]), 0)


def _up(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """2x2 transposed convolution with stride 2: ``[N, C, H, W]`` -> ``[N, O, 2H, 2W]``."""
    n, _, h, width = x.shape
    out = np.einsum("nchw,coij->nohiwj", x, weight, optimize=True)
    return out.reshape(n, weight.shape[1], 2 * h, 2 * width) + bias[None, :, None, None]


def reference_logits(weights: Mapping[str, np.ndarray], config: UNetConfig, x: np.ndarray) -> np.ndarray:
    """Logits of the U-Net with ``weights`` (a state dict as numpy arrays) on ``[N, 1, H, W]``,
    computed in float64; H and W must be multiples of ``config.divisor``."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    x = np.asarray(x, dtype=np.float64)
    pool = config.input_pool
    if pool > 1:
        n, c, h, width = x.shape
        x = x.reshape(n, c, h // pool, pool, width // pool, pool).mean(axis=(3, 5))
    skips = []
    for level in range(config.depth):
        x = _double_conv(x, w, f"down.{level}")
        skips.append(x)
        n, c, h, width = x.shape
        x = x.reshape(n, c, h // 2, 2, width // 2, 2).max(axis=(3, 5))
    x = _double_conv(x, w, "bottom")
    for level, skip in enumerate(reversed(skips)):
        x = np.concatenate([skip, _up(x, w[f"up.{level}.weight"], w[f"up.{level}.bias"])], axis=1)
        x = _double_conv(x, w, f"up_conv.{level}")
    logits = _conv(x, w["head.weight"], w["head.bias"])
    return logits.repeat(pool, axis=2).repeat(pool, axis=3) if pool > 1 else logits
