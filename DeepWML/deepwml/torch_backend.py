"""PyTorch, only where it is needed: CUDA, bf16/fp16, models without an ONNX export, training.

Nothing here imports torch at module level: CPU float32 segmentation runs in ONNX Runtime and
must work where PyTorch is not installed (Slicer users need not install it; and its import
took about 1 s of a 2 s one-volume ``deepwml segment`` on the project's 2-core CPU).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from typing import Any, Optional

import numpy as np

from .defaults import PRECISIONS


def torch_installed() -> bool:
    """Whether PyTorch can be imported (without importing it)."""
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None  # None: imports of torch are blocked
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _nvidia_driver_visible() -> bool:
    """False only when no NVIDIA driver can be present, so CUDA cannot be: on Linux the driver
    shows in /proc and /dev (WSL: /dev/dxg). Elsewhere we cannot tell without asking torch."""
    if not sys.platform.startswith("linux"):
        return True
    return (os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/dxg")
            or bool(glob.glob("/dev/nvidia[0-9]*")))


def choose_device(device: str) -> str:
    """``auto`` -> ``cuda`` when PyTorch sees a CUDA device, else ``cpu``; ``cuda[:N]`` without
    one is an error. Imports torch only when a CUDA device is possible or asked for, so a
    CPU-only machine decides in microseconds."""
    if device == "cpu":
        return "cpu"
    if device == "auto" and not (torch_installed() and _nvidia_driver_visible()):
        return "cpu"
    if not (device == "auto" or device.startswith("cuda")):
        return str(resolve_device(device))
    if not torch_installed():
        raise RuntimeError("CUDA was requested but PyTorch is not installed (pip install torch, or use "
                           "--device cpu)")
    return str(resolve_device(device))


def resolve_device(device: str) -> Any:
    """The ``torch.device`` for ``device`` (auto|cpu|cuda[:N]); an explicit CUDA without one is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available (use --device cpu or auto)")
    return torch.device(device)


def check_precision(precision: str) -> str:
    """The precision's name as reported (float32, bf16, fp16); ``auto`` is float32 everywhere.

    Why float32 for ``auto`` on every device: the default mask must not depend on which CPU or
    GPU a scan happened to run on (bf16 autocast is native on some CPUs and not on others, and
    its masks differ in boundary voxels). bf16/fp16/int8 are there on request."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    return "float32" if precision == "auto" else precision


def cpu_has_fast_bf16() -> bool:
    """True when the CPU runs bf16 matrix work natively (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TorchNetwork:
    """A PyTorch network called like :class:`deepwml.onnx_backend.OnnxNetwork`: a float32 numpy
    batch ``[N, 1, H, W]`` in, float32 numpy logits out; device, autocast and memory format
    handled here."""

    def __init__(self, network: Any, device: str, precision: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.module = network.to(self.device).eval()
        self.autocast_dtype: Optional[Any] = {"float32": None, "bf16": torch.bfloat16,
                                              "fp16": torch.float16}[precision]
        #: NHWC convolutions: 1.4x faster than NCHW on this CPU for the same float32 math
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.autocast_dtype is None:
                logits = self.module(x)
            else:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    logits = self.module(x)
            return logits.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
