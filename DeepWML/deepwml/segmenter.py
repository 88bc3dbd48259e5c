"""Inference: a FLAIR volume in, a lesion probability map on the same voxel grid out."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import SimpleITK as sitk
import torch

from .errors import ModelFileError
from .model_files import LoadedModel, load_model
from .onnx_backend import OnnxNetwork, check_reproduces_weights, onnx_file_of, onnxruntime_available
from .options import check_non_negative, check_positive_int, check_threshold
from .preprocessing import image_to_canvas, thin_slabs
from .reslice import THIN_SLAB_MM, interpolate_from_slabs
from .slice_layout import image_from_slices

log = logging.getLogger(__name__)

#: Called with (slices done, slices total); return False to cancel. ``Optional``, not
#: ``bool | None``: this alias is evaluated at import, and Slicer 5.6/5.8 embed Python 3.9.
ProgressCallback = Callable[[int, int], Optional[bool]]


class Cancelled(Exception):
    """The caller's progress callback asked to stop."""


#: Canvas pixels (about 1 mm each at a 240 mm field of view) of air kept around the head.
HEAD_MARGIN = 16


def head_window(canvas: torch.Tensor, divisor: int, margin: int = HEAD_MARGIN) -> tuple[slice, slice]:
    """The rows and columns of ``[N, 1, C, C]`` canvas slices that hold the head, plus a margin.

    Normalisation maps everything darker than the head's 1st percentile (air, zero padding)
    to exactly 0, so the head is where any slice is > 0. One window for the whole volume keeps
    results independent of the batch size; its sides are multiples of the network's divisor.
    A routine 512x512 FLAIR with a 220-240 mm field of view leaves roughly half the canvas as
    air, and the network's time is proportional to the pixels it sees.
    """
    size = canvas.shape[-1]
    foreground = (canvas > 0).flatten(0, -3).any(0)
    windows = []
    for axis in (1, 0):  # any over columns -> rows in use; over rows -> columns in use
        used = foreground.any(axis).nonzero()[:, 0]
        if used.numel() == 0:
            windows.append(slice(0, size))
            continue
        lo, hi = int(used[0]) - margin, int(used[-1]) + 1 + margin
        length = min(size, -(-(hi - lo) // divisor) * divisor)
        start = min(max(0, (lo + hi - length) // 2), size - length)
        windows.append(slice(start, start + length))
    return windows[0], windows[1]


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

    ``auto`` is float32 on every device: the default mask must not depend on which CPU or GPU
    a radiologist's scan happened to run on (bf16 autocast is used on some CPUs and not on
    others, and its masks differ in boundary voxels). bf16/fp16 are there on request, for
    speed on a GPU or a CPU with native bf16 (:func:`cpu_has_fast_bf16`).
    """
    if precision in ("auto", "float32"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    raise ValueError(f"unknown precision {precision!r} (auto, float32, bf16, fp16)")


def resolve_onnx_file(backend: str, model: LoadedModel, device: torch.device,
                      autocast_dtype: torch.dtype | None) -> Path | None:
    """The verified ``model.onnx`` to run for ``backend`` (auto|torch|onnx); None means PyTorch.

    ``auto`` takes ONNX Runtime for float32 on the CPU when the model carries a verified
    ``model.onnx`` and onnxruntime is installed (faster than PyTorch there: see onnx_backend),
    PyTorch otherwise (CUDA, bf16/fp16, models without an ONNX export). The file is hashed
    once, here.
    """
    if backend == "torch":
        return None
    if backend not in ("auto", "onnx"):
        raise ValueError(f"unknown backend {backend!r} (auto, torch, onnx)")
    usable = device.type == "cpu" and autocast_dtype is None
    if backend == "onnx":
        if not usable:
            raise RuntimeError("the ONNX backend runs float32 on the CPU only (use --backend torch for "
                               "CUDA or bf16/fp16)")
        if not onnxruntime_available():
            raise RuntimeError("the ONNX backend needs the onnxruntime package (pip install onnxruntime)")
        path = onnx_file_of(model)
        if path is None:
            raise RuntimeError(f"model {model.model_id} has no ONNX export (run 'deepwml export-onnx "
                               f"{model.path.parent}' or use --backend torch)")
        return path
    return onnx_file_of(model) if usable and onnxruntime_available() else None


@dataclass
class SegmentationResult:
    """Everything one run produces, on the input's voxel grid."""

    probabilities: sitk.Image
    threshold: float
    timings_s: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "float32"
    backend: str = "torch"
    slice_thickness_mm: float = 0.0
    slice_axis: int = 0
    #: Slab thickness the network saw for a thin-slice volume; 0.0 = native slices.
    slab_mm: float = 0.0

    @property
    def mask(self) -> sitk.Image:
        return sitk.Cast(self.probabilities >= self.threshold, sitk.sitkUInt8)


class Segmenter:
    """A loaded model bound to a device; reuse one instance for many volumes."""

    def __init__(self, model: LoadedModel | str | None = None, device: str = "auto",
                 precision: str = "auto", batch_size: int = 8, flip_tta: bool = False,
                 head_crop: bool = True, backend: str = "auto",
                 thin_slab_mm: float = THIN_SLAB_MM) -> None:
        self.batch_size = check_positive_int(batch_size, "batch size")
        self.device = resolve_device(device)
        self.model = model if isinstance(model, LoadedModel) else load_model(model, self.device)
        self.model.network.to(self.device).eval()
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.network: Callable[[torch.Tensor], torch.Tensor] = self.model.network
        self.backend = "torch"
        onnx_file = resolve_onnx_file(backend, self.model, self.device, self.autocast_dtype)
        if onnx_file is not None:
            try:
                network = OnnxNetwork(onnx_file, self.model.network.divisor)
                check_reproduces_weights(network, self.model, onnx_file)
                self.network, self.backend = network, "onnx"
            except ModelFileError as err:
                if backend == "onnx":
                    raise
                # a verified file this onnxruntime cannot run (too old, broken install): slower, not wrong
                log.warning("%s; using PyTorch instead", err)
        #: NHWC convolutions: 1.4x faster than NCHW on this CPU for the same float32 math
        self.channels_last = self.backend == "torch" and self.device.type == "cpu"
        if self.channels_last:
            self.model.network.to(memory_format=torch.channels_last)
        self.flip_tta = flip_tta
        #: Run the network only on slices with head and only on the head's window (see
        #: :func:`head_window`); outside it the lesion probability is 0. False: whole canvas.
        self.head_crop = head_crop
        #: Thin-slice volumes (< 2 mm) are seen as axial slabs of this thickness (mm), the
        #: probabilities interpolated back to every slice; 0: every native slice. The model
        #: was trained on 3-8 mm slices; see the README's "Accuracy on real scans".
        self.thin_slab_mm = check_non_negative(thin_slab_mm, "thin slab thickness")

    @property
    def ran_file(self) -> dict[str, str]:
        """The model file that computes the probabilities and its SHA-256 (verified at load):
        what a summary must name, since the ONNX graph and the weights are separate files."""
        card = self.model.card
        if self.backend == "onnx":
            return {"file": card["onnx"].get("file", "model.onnx"), "sha256": card["onnx"]["sha256"]}
        return {"file": card["weights_file"], "sha256": card["weights_sha256"]}

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
        net = self.network
        out = torch.zeros(canvas.shape, dtype=torch.float32)
        if self.head_crop:
            todo = (canvas.flatten(1) > 0).any(1).nonzero()[:, 0]
            rows, cols = (head_window(canvas[todo], self.model.network.divisor) if todo.numel()
                          else (slice(0), slice(0)))
        else:
            todo = torch.arange(canvas.shape[0])
            rows = cols = slice(None)
        total = todo.numel()
        with torch.inference_mode(), self._autocast():
            for start in range(0, total, self.batch_size):
                picked = todo[start:start + self.batch_size]
                batch = canvas[picked][..., rows, cols].to(self.device, non_blocking=True)
                if self.channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                logits = net(batch).float()
                if self.flip_tta:
                    logits = 0.5 * (logits + net(batch.flip(-1)).float().flip(-1))
                out[picked, :, rows, cols] = torch.sigmoid(logits).cpu()
                done = min(start + self.batch_size, total)
                if progress is not None and progress(done, total) is False:
                    raise Cancelled("segmentation cancelled")
        if progress is not None and total == 0:
            progress(0, 0)
        return out

    def segment(self, image: sitk.Image, threshold: float | None = None,
                progress: ProgressCallback | None = None) -> SegmentationResult:
        """Segment a validated 3D FLAIR ``image`` (see :func:`deepwml.image_io.load_flair`)."""
        threshold = self.model.threshold if threshold is None else check_threshold(threshold)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        canvas, mapping, layout = image_to_canvas(image, self.thin_slab_mm)
        n_slices = image.GetSize()[2 - layout.transpose[layout.slice_axis]]  # numpy axis n = index axis 2-n
        slabs = thin_slabs(layout.slice_thickness_mm, n_slices, self.thin_slab_mm)
        timings["preprocess"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        probs = self.predict_canvas(canvas, progress)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        timings["network"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        native = mapping.to_native(probs)[:, 0].clamp_(0.0, 1.0).numpy()
        if slabs is not None:
            native = interpolate_from_slabs(native, slabs, n_slices)
        prob_image = image_from_slices(native.astype(np.float32), layout, image)
        timings["postprocess"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        log.info("segmented %d slices in %.2f s on %s (%s, %s)", canvas.shape[0], timings["total"],
                 self.device, self.precision_name, self.backend)
        return SegmentationResult(prob_image, threshold,
                                  timings, str(self.device), self.precision_name, self.backend,
                                  layout.slice_thickness_mm, layout.slice_axis,
                                  (slabs[0][1] - slabs[0][0]) * layout.slice_thickness_mm if slabs else 0.0)
