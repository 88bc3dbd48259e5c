"""Inference: a FLAIR volume in, a lesion probability map on the same voxel grid out."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk
import torch

from .model_files import LoadedModel, load_model
from .preprocessing import volume_to_canvas
from .slice_layout import image_from_slices, plan_slices

log = logging.getLogger(__name__)

#: Called with (slices done, slices total); return False to cancel.
ProgressCallback = Callable[[int, int], bool | None]


class Cancelled(Exception):
    """The caller's progress callback asked to stop."""


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; an explicit ``cuda`` without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available (use --device cpu or auto)")
    return torch.device(device)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU runs bf16 matrix work natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto|float32|bf16|fp16) on ``device``; None = float32.

    ``auto`` takes bf16 on CUDA and on CPUs with native bf16, where it roughly halves the time
    and the masks agree with float32 (checked by the test suite), else float32.
    """
    if precision == "float32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "auto":
        if device.type == "cuda" or cpu_has_fast_bf16():
            return torch.bfloat16
        return None
    raise ValueError(f"unknown precision {precision!r} (auto, float32, bf16, fp16)")


@dataclass
class SegmentationResult:
    """Everything one run produces, on the input's voxel grid."""

    probabilities: sitk.Image
    threshold: float
    timings_s: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "float32"
    slice_thickness_mm: float = 0.0
    slice_axis: int = 0

    @property
    def mask(self) -> sitk.Image:
        return sitk.Cast(self.probabilities >= self.threshold, sitk.sitkUInt8)


class Segmenter:
    """A loaded model bound to a device; reuse one instance for many volumes."""

    def __init__(self, model: LoadedModel | str | None = None, device: str = "auto",
                 precision: str = "auto", batch_size: int = 8, flip_tta: bool = False) -> None:
        self.device = resolve_device(device)
        self.model = model if isinstance(model, LoadedModel) else load_model(model, self.device)
        self.model.network.to(self.device).eval()
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.flip_tta = flip_tta

    @property
    def precision_name(self) -> str:
        return {None: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.autocast_dtype is None:
            yield
        else:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                yield

    def predict_canvas(self, canvas: torch.Tensor,
                       progress: ProgressCallback | None = None) -> torch.Tensor:
        """Probabilities for ``[N, 1, C, C]`` canvas slices, in batches (float32, on the CPU)."""
        out = torch.empty(canvas.shape, dtype=torch.float32)
        net = self.model.network
        total = canvas.shape[0]
        with torch.inference_mode(), self._autocast():
            for start in range(0, total, self.batch_size):
                batch = canvas[start:start + self.batch_size].to(self.device, non_blocking=True)
                logits = net(batch).float()
                if self.flip_tta:
                    logits = 0.5 * (logits + net(batch.flip(-1)).float().flip(-1))
                out[start:start + batch.shape[0]] = torch.sigmoid(logits).cpu()
                done = min(start + self.batch_size, total)
                if progress is not None and progress(done, total) is False:
                    raise Cancelled("segmentation cancelled")
        return out

    def segment(self, image: sitk.Image, threshold: float | None = None,
                progress: ProgressCallback | None = None) -> SegmentationResult:
        """Segment a validated 3D FLAIR ``image`` (see :func:`deepwml.image_io.load_flair`)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        layout = plan_slices(image)
        slices = layout.to_slices(sitk.GetArrayViewFromImage(image))
        canvas, mapping = volume_to_canvas(slices, layout.in_plane_spacing_mm)
        timings["preprocess"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        probs = self.predict_canvas(canvas, progress)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        timings["network"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        native = mapping.to_native(probs)[:, 0].clamp_(0.0, 1.0).numpy()
        prob_image = image_from_slices(native.astype(np.float32), layout, image)
        timings["postprocess"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        log.info("segmented %d slices in %.2f s on %s (%s)", slices.shape[0], timings["total"],
                 self.device, self.precision_name)
        return SegmentationResult(prob_image, self.model.threshold if threshold is None else threshold,
                                  timings, str(self.device), self.precision_name,
                                  layout.slice_thickness_mm, layout.slice_axis)
