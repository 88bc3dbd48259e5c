"""Inference: a FLAIR volume in, a lesion probability map on the same voxel grid out.

Numpy end to end around the network, which is ONNX Runtime (CPU, float32, the default where
the model has a verified ``model.onnx``) or PyTorch (CUDA, bf16/fp16, ``--backend torch``):
PyTorch is imported only when it runs the network (see :mod:`deepwml.torch_backend`). A volume
goes through three steps, :meth:`Segmenter.prepare` (normalise, resample to the canvas),
:meth:`Segmenter.run_network` and :meth:`Segmenter.finish` (back to the input's grid), so a
batch can overlap them across volumes (:mod:`deepwml.batch`); :meth:`Segmenter.segment` runs
the three in a row.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import SimpleITK as sitk

from .brain_mask import (BrainCanvas, BrainMasking, fill_holes_per_slice, lesion_window, load_brain_model,
                         margin_in_pixels, removed_voxels, restrict_to_brain)
from .background import in_background
from .canvas_window import head_window
from .components import in_plane_box
from .contrast_floor import (ENVELOPE_LEVEL, ContrastFloor, FloorApplied, FloorScan, card_contrast_floor,
                             floor_marks)
from .defaults import (DEFAULT_MARGIN_MM, DEFAULT_MESIAL_TEMPORAL_MODEL, DEFAULT_WHITE_MATTER_MODEL, THIN_SLAB_MM,
                       default_flip_tta)
from .errors import ModelFileError
from .evaluation.mark_contrast import DEFAULT_LEVEL
from .known_limits import known_limits
from .model_files import LoadedModel, load_model
from .onnx_backend import (PROBE_SEED, PROBE_SHAPE, REPRODUCE_TOLERANCE, OnnxNetwork, check_reproduces_weights,
                           onnx_file_of, onnxruntime_available)
from .onnx_int8 import (INT8_INPUT_OVERFLOW_SHARE, INT8_REPRODUCE_TOLERANCE, WEIGHT_STEP_TOLERANCE, check_int8_graph,
                        input_overflow_share, int8_input_max)
from .options import check_non_negative, check_positive_int, check_threshold
from .preprocessing import CanvasMapping, image_to_canvas, slices_with_head, sliding_slab_size, thin_slabs
from .reslice import THIN_SLICE_MM, interpolate_from_slabs
from .slice_layout import SliceLayout, image_from_slices
from .thin_model import resolve_thin_model, sees_thin_slices
from .torch_backend import (TorchNetwork, check_precision, choose_device, cpu_has_fast_bf16,  # noqa: F401
                            resolve_device, torch_installed)
from .verified_graphs import check_key, check_once
from .mesial_temporal import MAX_MESIAL_TEMPORAL_SHARE, MIN_INSIDE_FRACTION, load_mesial_temporal_model
from .white_matter import (MAX_DROPPED_ML, MIN_NEAR_FRACTION, MIN_WHITE_MATTER_SHARE, NEAR_MM,
                           WhiteMatterRestriction, far_components, inside_components, load_white_matter_model,
                           near_white_matter)

log = logging.getLogger(__name__)

#: Called with (slices done, slices total); return False to cancel. ``Optional``, not
#: ``bool | None``: this alias is evaluated at import, and Slicer 5.6/5.8 embed Python 3.9.
ProgressCallback = Callable[[int, int], Optional[bool]]


class Cancelled(Exception):
    """The caller's progress callback asked to stop."""


#: Canvas pixels of context the lesion network sees beyond brain + margin (about 1 mm each at a
#: 240 mm field of view; chosen on synthetic data by the rule in docs/EXPERIMENTS.md, "Speed history").
BRAIN_CONTEXT = 8


def _shifted(progress: ProgressCallback | None, before: int, after: int) -> ProgressCallback | None:
    """``progress`` for one of two passes over slices reported as one: ``before`` slices were done
    by an earlier pass, ``after`` are still to come in a later one."""
    if progress is None:
        return None
    return lambda done, total: progress(before + done, before + total + after)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Float32 logistic function (exp overflows to inf for very negative logits: 1/inf = 0)."""
    with np.errstate(over="ignore"):
        out = np.exp(-logits, dtype=np.float32)
    out += np.float32(1)
    return np.reciprocal(out, out=out)


def resolve_onnx_file(backend: str, model: LoadedModel, device: str, precision: str) -> Path | None:
    """The verified ``model.onnx`` to run for ``backend`` (auto|torch|onnx); None means PyTorch.

    ``auto`` takes ONNX Runtime for float32 on the CPU when the model carries a verified
    ``model.onnx`` and onnxruntime is installed (faster than PyTorch there, and no PyTorch
    import: see onnx_backend), PyTorch otherwise (CUDA, bf16/fp16, models without an ONNX
    export). ``int8`` is always the model's quantised graph in ONNX Runtime. The file is
    hashed once, here.
    """
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"unknown backend {backend!r} (auto, torch, onnx)")
    if precision == "int8":  # only ONNX Runtime runs the quantised graph, and only on the CPU
        if backend == "torch" or device != "cpu":
            raise RuntimeError("int8 runs in ONNX Runtime on the CPU only (use --device cpu, or another "
                               "precision for PyTorch or CUDA)")
        if not onnxruntime_available():
            raise RuntimeError("int8 needs the onnxruntime package (pip install onnxruntime)")
        from .onnx_int8 import int8_file_of

        return int8_file_of(model)
    if backend == "torch":
        return None
    usable = device == "cpu" and precision == "float32"
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


def verify_graph(network: OnnxNetwork, model: LoadedModel, path: Path, int8: bool) -> None:
    """Refuse an ONNX graph that does not compute what the model's weights compute
    (:func:`deepwml.onnx_backend.check_reproduces_weights`; int8: :func:`check_int8_graph`),
    unless this very check passed before for these files on this machine
    (:mod:`deepwml.verified_graphs`: ~0.05 s of a cold start)."""
    import onnxruntime

    graph = ran_file_of(model, "onnx", "int8" if int8 else "float32")
    if int8:
        what, check = (f"int8 graph, weights within {WEIGHT_STEP_TOLERANCE} steps, {INT8_REPRODUCE_TOLERANCE} "
                       f"of the spread, head probe {PROBE_SHAPE[-1]} {PROBE_SEED}",
                       lambda: check_int8_graph(network, model, path))
    else:
        what, check = (f"float32 graph, {REPRODUCE_TOLERANCE}, probe {PROBE_SEED} {PROBE_SHAPE}",
                       lambda: check_reproduces_weights(network, model, path))
    check_once(check_key(what, graph["sha256"], model.card["weights_sha256"], onnxruntime.__version__), check)


def ran_file_of(model: LoadedModel, backend: str, precision: str) -> dict[str, str]:
    """The file of ``model`` that runs under ``backend`` and ``precision`` (as :func:`build_network`
    chose them) and its SHA-256, verified at load."""
    card = model.card
    if backend == "onnx":
        entry = card["onnx_int8" if precision == "int8" else "onnx"]
        return {"file": entry.get("file", "model.onnx"), "sha256": entry["sha256"]}
    return {"file": card["weights_file"], "sha256": card["weights_sha256"]}


def build_network(model: LoadedModel, backend: str, device: str, precision: str
                  ) -> tuple[Callable[[np.ndarray], np.ndarray], str, LoadedModel]:
    """``(network, backend name, model)`` that runs ``model``: its verified ONNX graph in ONNX
    Runtime where :func:`resolve_onnx_file` picks one (checked against the weights before use),
    else PyTorch (the returned model then carries the PyTorch network). Used for the lesion
    network and the brain-mask network alike."""
    onnx_file = runnable_file(model, backend, device, precision)
    if onnx_file is not None:
        try:
            network = OnnxNetwork(onnx_file, model.config.divisor)
            verify_graph(network, model, onnx_file, precision == "int8")
            return network, "onnx", model
        except ModelFileError as err:
            if backend == "onnx" or precision == "int8":
                raise
            # a verified file this onnxruntime cannot run (too old, broken install): slower, not wrong
            log.warning("%s; using PyTorch instead", err)
    _require_torch(model, device, precision)
    if model.network is None:
        model = load_model(model.path, device)
    return TorchNetwork(model.network, device, precision), "torch", model


def runnable_file(model: LoadedModel, backend: str, device: str, precision: str) -> Path | None:
    """The verified ONNX graph :func:`build_network` will run (None: PyTorch), refusing at once a
    model that cannot run here at all: a missing or altered graph it needs (int8, ``--backend
    onnx``), or PyTorch needed and not installed. Called early for a model whose network is built
    later (the thin-slice model's, on the first thin volume)."""
    onnx_file = resolve_onnx_file(backend, model, device, precision)
    if onnx_file is None:
        _require_torch(model, device, precision)
    return onnx_file


def _require_torch(model: LoadedModel, device: str, precision: str) -> None:
    if model.network is None and not torch_installed():
        raise RuntimeError(f"model {model.model_id} needs PyTorch here (no verified ONNX export, "
                           f"{device}, {precision}); install torch, or run 'deepwml "
                           "export-onnx MODEL' and use the CPU")


@dataclass
class PreparedVolume:
    """A volume on the canvas, with what leads back to its voxel grid (:meth:`Segmenter.prepare`)."""

    image: sitk.Image
    canvas: np.ndarray
    mapping: CanvasMapping
    layout: SliceLayout
    n_slices: int
    slabs: Optional[list] = None
    timings_s: dict = field(default_factory=dict)
    #: the brain-mask network's mask and time (deepwml.brain_mask.BrainCanvas); None without one
    brain: Optional[BrainCanvas] = None
    #: time of the brain mask's post-processing (largest component, holes, margin): done before
    #: the lesion network for its window, counted by finish() as post-processing, not network
    brain_region_s: float = 0.0
    #: the network sees thin slices and the segmenter has a thin-slice model: that model runs
    #: (:mod:`deepwml.thin_model`)
    thin: bool = False
    #: thickness (mm) of the sliding slab every thin slice was seen through; 0.0: none
    sliding_slab_mm: float = 0.0
    #: the white-matter network's mask and time (same grid type as ``brain``); None without one
    white_matter: Optional[BrainCanvas] = None
    #: the canvas slices the white-matter network ran on (the others count as near white matter)
    white_matter_slices: Optional[np.ndarray] = None
    #: the mesial-temporal network's mask and time, on the same slices (deepwml.mesial_temporal); None without one
    mesial_temporal: Optional[BrainCanvas] = None
    #: the contrast floor's scan of the input (:class:`~deepwml.contrast_floor.FloorScan`), started by
    #: :meth:`Segmenter.run_network` on a thread of its own while the white-matter networks run; None: not started
    floor_scan: Optional[Future] = None
    #: under --precision int8: the share of the head beyond the int8 graph's input range, when above
    #: INT8_INPUT_OVERFLOW_SHARE (the float32 graph then ran on this volume); None: the int8 graph ran or no int8
    int8_overflow: Optional[float] = None

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
    #: What the brain mask did (None: no brain-mask model).
    brain_mask: Optional[BrainMasking] = None
    #: The lesion model that computed the probabilities (the thin-slice model on thin slices).
    model: Optional[LoadedModel] = None
    #: The slabs of ``slab_mm`` were sliding (one centred on every thin slice), not consecutive.
    slab_sliding: bool = False
    #: What the white-matter contrast floor did (None: no floor; :mod:`deepwml.contrast_floor`).
    contrast_floor: Optional[FloorApplied] = None
    #: What the white-matter restriction did (None: no white-matter model; :mod:`deepwml.white_matter`).
    white_matter: Optional[WhiteMatterRestriction] = None
    #: Under --precision int8, why this volume ran the float32 graph instead (None: it did not); the summaries'
    #: ``int8_fallback`` (:data:`deepwml.onnx_int8.INT8_INPUT_OVERFLOW_SHARE`).
    int8_fallback: Optional[dict] = None

    def brain_mask_summary(self) -> Optional[dict]:
        """The summaries' ``brain_mask`` entry (None: no brain mask), one definition for the
        command line, the Slicer module and its background worker."""
        return self.brain_mask.as_dict() if self.brain_mask else None

    def contrast_floor_summary(self) -> Optional[dict]:
        """The summaries' ``contrast_floor`` entry (None: no floor), one definition for every output."""
        return self.contrast_floor.as_dict() if self.contrast_floor else None

    def white_matter_summary(self) -> Optional[dict]:
        """The summaries' ``white_matter`` entry (None: no white-matter model), one definition for every output."""
        return self.white_matter.as_dict() if self.white_matter else None

    def panel_info(self) -> dict:
        """What the Slicer module keeps of a result (how it ran, what each step did, the model's limits that apply):
        one definition for the module's run in Slicer's process and its background worker's ``result.json``."""
        return {"timings_s": self.timings_s, "device": self.device, "precision": self.precision,
                "backend": self.backend, "model": self.model.model_id,  # the thin-slice model on thin slices
                "brain_mask": self.brain_mask_summary(), "contrast_floor": self.contrast_floor_summary(),
                "white_matter": self.white_matter_summary(), "known_limits": self.known_limits(),
                "int8_fallback": self.int8_fallback}  # int8 asked, float32 ran on this bright head (README "Speed")

    def known_limits(self) -> dict[str, str]:
        """The measured limits of the model that ran that apply to this input
        (:func:`deepwml.known_limits.known_limits`; :func:`~deepwml.known_limits.cautions` adds the volume)."""
        return known_limits(self.model.card, self.slice_thickness_mm, self.slab_mm, self.slab_sliding)

    @property
    def ran_file(self) -> dict[str, str]:
        """The file of :attr:`model` that ran and its SHA-256 (:func:`ran_file_of`): what a summary must name."""
        return ran_file_of(self.model, self.backend, self.precision)

    @functools.cached_property
    def mask(self) -> sitk.Image:
        """The binary mask (computed once: the outputs and the summary all need it)."""
        return sitk.Cast(self.probabilities >= self.threshold, sitk.sitkUInt8)


class Segmenter:
    """A verified model bound to a device and backend; reuse one instance for many volumes."""

    def __init__(self, model: LoadedModel | str | None = None, device: str = "auto",
                 precision: str = "auto", batch_size: int = 8, flip_tta: bool | None = None,
                 head_crop: bool = True, backend: str = "auto",
                 thin_slab_mm: float = THIN_SLAB_MM, brain_model: LoadedModel | str | None = "bundled",
                 brain_margin_mm: float = DEFAULT_MARGIN_MM,
                 brain_context_px: int | None = BRAIN_CONTEXT,
                 thin_model: LoadedModel | str | None = "auto", thin_slab_sliding: bool = False,
                 contrast_floor: ContrastFloor | str | None = "card",
                 white_matter_model: LoadedModel | str | None = DEFAULT_WHITE_MATTER_MODEL,
                 mesial_temporal_model: LoadedModel | str | None = DEFAULT_MESIAL_TEMPORAL_MODEL) -> None:
        self.batch_size = check_positive_int(batch_size, "batch size")
        #: Thin-slice volumes (< 2 mm) are seen as axial slabs of this thickness (mm), the
        #: probabilities interpolated back to every slice; 0: every native slice. The model
        #: was trained on 3-8 mm slices; see the README's "Accuracy on real scans".
        self.thin_slab_mm = check_non_negative(thin_slab_mm, "thin slab thickness")
        #: With ``thin_slab_mm``: every thin slice seen through the slab centred on it (a moving
        #: average, :func:`deepwml.reslice.sliding_slab_mean`) instead of consecutive slabs, so
        #: nothing is interpolated back (README, "Sliding slabs"; opt-in, not the default).
        self.thin_slab_sliding = bool(thin_slab_sliding)
        self.precision_name = check_precision(precision)
        self.device = choose_device(device)
        #: Average with the left-right flipped slice (None: :func:`deepwml.defaults.default_flip_tta`)
        self.flip_tta = default_flip_tta(self.precision_name) if flip_tta is None else bool(flip_tta)
        #: Run the network only on slices with head and only on the head's window (see
        #: :func:`head_window`); outside it the lesion probability is 0. False: whole canvas.
        self.head_crop = head_crop
        #: Marks darker than a factor of the white-matter level are removed (deepwml.contrast_floor):
        #: "card" = the floor the card of the model that ran names (none if it names none), None = off.
        if not (contrast_floor in ("card", None) or isinstance(contrast_floor, ContrastFloor)):
            raise ValueError(f"contrast_floor must be 'card', None or a ContrastFloor, not {contrast_floor!r}")
        self.contrast_floor = contrast_floor
        if not isinstance(model, LoadedModel):
            model = load_model(model, framework="numpy")  # PyTorch only if it runs the network
        model.require_task("lesion", ", not a lesion model; pass it as the brain-mask model (--brain-model), "
                                     "not as --model")
        self.network, self.backend, self.model = build_network(model, backend, self.device, self.precision_name)
        #: The thin-slice model (None: every volume goes to ``model``); verified here, its network
        #: built on the first thin volume, so thick-only runs do not pay for it (issue 14's cold start).
        self.thin_model: LoadedModel | None = resolve_thin_model(thin_model, self.model)
        if self.thin_model is not None:  # refused now, in one line, not at the first thin volume
            runnable_file(self.thin_model, backend, self.device, self.precision_name)
        for lesion_model in (self.model, self.thin_model):  # a bad card floor is refused now, too
            if lesion_model is not None:
                self.contrast_floor_of(lesion_model)
        self._backend_asked = backend
        #: Under int8: the largest canvas value the lesion model's int8 graph represents, and its float32 network,
        #: built for the first volume beyond that range (:meth:`_int8_overflow`); None otherwise / not yet.
        self.int8_input_max: float | None = int8_input_max(self.model) if self.precision_name == "int8" else None
        self._float32: tuple[Callable[[np.ndarray], np.ndarray], str, LoadedModel] | None = None
        self._thin: tuple[Callable[[np.ndarray], np.ndarray], str, LoadedModel] | None = None
        self._lazy_lock = threading.Lock()
        #: The brain-mask model and network (None: lesion probabilities everywhere in the head);
        #: see :mod:`deepwml.brain_mask`. Float32, or its int8 graph beside an int8 lesion network.
        self.brain_margin_mm = check_non_negative(brain_margin_mm, "brain margin")
        #: Canvas pixels of context the lesion network sees around brain + margin (None: it sees
        #: the head's window, as before the brain's window existed; for measuring). See run_network.
        self.brain_context_px = None if brain_context_px is None else check_positive_int(brain_context_px,
                                                                                         "brain context")
        self.brain_model: LoadedModel | None = None
        self.brain_network: Callable[[np.ndarray], np.ndarray] | None = None
        #: The brain model's file that runs (ran_file_of), for the summary's ``brain_mask.ran``.
        self.brain_ran_file: dict[str, str] = {}
        if brain_model is not None:
            self.brain_network, self.brain_model, self.brain_ran_file = self._mask_network(
                load_brain_model(None if brain_model == "bundled" else brain_model), backend)
        #: The white-matter model and network (None: marks are kept wherever they lie in the brain);
        #: see :mod:`deepwml.white_matter`. Float32 (no int8 graph is made for it).
        self.white_matter_model: LoadedModel | None = None
        self.white_matter_network: Callable[[np.ndarray], np.ndarray] | None = None
        self.white_matter_ran_file: dict[str, str] = {}
        if white_matter_model is not None:
            self.white_matter_network, self.white_matter_model, self.white_matter_ran_file = self._mask_network(
                load_white_matter_model(None if white_matter_model == "bundled" else white_matter_model), backend)
        #: The mesial-temporal model and network, part of the white-matter restriction (None: no exclusion; never
        #: without a white-matter model); see :mod:`deepwml.mesial_temporal`. Float32.
        self.mesial_temporal_model: LoadedModel | None = None
        self.mesial_temporal_network: Callable[[np.ndarray], np.ndarray] | None = None
        self.mesial_temporal_ran_file: dict[str, str] = {}
        if white_matter_model is not None and mesial_temporal_model is not None:
            self.mesial_temporal_network, self.mesial_temporal_model, self.mesial_temporal_ran_file = \
                self._mask_network(load_mesial_temporal_model(None if mesial_temporal_model == "bundled"
                                                              else mesial_temporal_model), backend)

    def _mask_network(self, model: LoadedModel, backend: str
                      ) -> tuple[Callable[[np.ndarray], np.ndarray], LoadedModel, dict[str, str]]:
        """``(network, model, file that runs)`` of a mask model (brain, white matter): its int8 graph beside an
        int8 lesion network when it carries one (the cold start, issue 14; the brain masks measured against
        float32's in the README), else float32; PyTorch only when the lesion network runs in PyTorch."""
        precision = "int8" if self.precision_name == "int8" and model.card.get("onnx_int8") else "float32"
        network, ran_backend, model = build_network(model, "torch" if backend == "torch" else "auto", self.device,
                                                    precision)
        return network, model, ran_file_of(model, ran_backend, precision)

    def brain_mask_setting(self) -> str:
        """One plain-text sentence on what this segmenter's brain mask does (for reports)."""
        if self.brain_model is None:
            return "No brain mask: lesion probabilities were kept everywhere in the head."
        return (f"Lesion probabilities farther than {self.brain_margin_mm:g} mm outside the brain mask of "
                f"{self.brain_model.model_id} (a network) were set to 0.")

    @property
    def ran_file(self) -> dict[str, str]:
        """The lesion model's file that computes the probabilities of thick volumes and its SHA-256
        (verified at load): what a summary must name, since the ONNX graph and the weights are
        separate files. A result names the file that ran for its volume (``result.ran_file``)."""
        return ran_file_of(self.model, self.backend, self.precision_name)

    def _lesion(self, thin: bool, float32: bool = False) -> tuple[Callable[[np.ndarray], np.ndarray], str, LoadedModel]:
        """``(network, backend, model)`` for thick (the lesion model) or thin volumes (the
        thin-slice model's, built on first use; thread-safe). ``float32``: the lesion model's float32
        network under int8, for a volume beyond its int8 graph's input range (built on first use)."""
        if float32 and not thin:
            with self._lazy_lock:
                if self._float32 is None:
                    self._float32 = build_network(self.model, self._backend_asked, self.device, "float32")
                return self._float32
        if not thin:
            return self.network, self.backend, self.model
        with self._lazy_lock:
            if self._thin is None:
                # build_network hashes the graph again (runnable_file did at start): the file is
                # read now, perhaps long after that check, and must still be the verified one
                self._thin = build_network(self.thin_model, self._backend_asked, self.device, self.precision_name)
                log.info("thin-slice volume: %s runs", self._thin[2].model_id)
            return self._thin

    def describe_thin_slices(self) -> str:
        """One plain-text sentence on how thin-slice volumes are seen (for reports)."""
        if self.thin_slab_mm <= 0:
            return f"Thin-slice (< {THIN_SLICE_MM:g} mm) volumes: every native slice."
        if self.thin_slab_sliding:
            return (f"Thin-slice (< {THIN_SLICE_MM:g} mm) volumes: every slice seen through the sliding "
                    f"{self.thin_slab_mm:g} mm slab centred on it.")
        return (f"Thin-slice (< {THIN_SLICE_MM:g} mm) volumes: {self.thin_slab_mm:g} mm axial slabs, "
                "probabilities interpolated back to every slice.")

    def describe_models(self) -> str:
        """One plain-text sentence on which lesion model runs on which volumes (for reports)."""
        if self.thin_model is None:
            return f"Lesion model {self.model.model_id} on every volume."
        return (f"Lesion model {self.model.model_id}; volumes the network sees at slices thinner than "
                f"{THIN_SLICE_MM:g} mm: thin-slice model {self.thin_model.model_id}.")

    def predict_canvas(self, canvas: Any, progress: ProgressCallback | None = None,
                       where: tuple[np.ndarray, slice, slice] | None = None, thin: bool = False,
                       float32: bool = False) -> np.ndarray:
        """Lesion probabilities for ``[N, 1, C, C]`` canvas slices, in batches (float32 numpy):
        on ``where`` = ``(slices, rows, cols)`` only (0 elsewhere; the brain's window, see
        :meth:`run_network`), by default on the head's window of the slices with head (the whole
        canvas when ``head_crop`` is off). ``thin``: the thin-slice model's network runs;
        ``float32``: under int8, the lesion model's float32 network (see :meth:`_int8_overflow`)."""
        net = self._lesion(thin, float32)[0]
        canvas = np.asarray(canvas, dtype=np.float32)
        out = np.zeros(canvas.shape, dtype=np.float32)
        todo, rows, cols = where if where is not None else self._head_where(canvas)

        def probabilities(batch: np.ndarray) -> np.ndarray:
            logits = net(batch)
            if self.flip_tta:
                logits = np.float32(0.5) * (logits + net(np.ascontiguousarray(batch[..., ::-1]))[..., ::-1])
            return sigmoid(logits)

        for picked, result in self._batches(canvas, todo, rows, cols, probabilities, progress):
            out[picked, :, rows, cols] = result
        return out

    def predict_brain(self, canvas: Any, progress: ProgressCallback | None = None,
                      head: tuple[np.ndarray, slice, slice] | None = None) -> BrainCanvas:
        """The brain-mask network's mask of ``[N, 1, C, C]`` canvas slices on the head's window
        (on its own grid, with its time; requires a brain-mask model). ``head``: the canvas's
        :meth:`_head_where`, when the caller has it already."""
        return self._predict_mask(canvas, self.brain_model, self.brain_network, head, progress)

    def predict_white_matter(self, canvas: Any, where: tuple[np.ndarray, slice, slice] | None = None,
                             progress: ProgressCallback | None = None) -> BrainCanvas:
        """The white-matter network's mask of ``[N, 1, C, C]`` canvas slices on ``where`` (default: the
        head's window), on its own grid, with its time (requires a white-matter model)."""
        return self._predict_mask(canvas, self.white_matter_model, self.white_matter_network, where, progress)

    def _predict_mask(self, canvas: Any, model: LoadedModel, network: Callable[[np.ndarray], np.ndarray],
                      where: tuple[np.ndarray, slice, slice] | None, progress: ProgressCallback | None) -> BrainCanvas:
        """A half-resolution mask network's (brain, white matter) mask on ``where`` (default: the head's window)."""
        canvas = np.asarray(canvas, dtype=np.float32)
        t0 = time.perf_counter()
        todo, rows, cols = where if where is not None else self._head_where(canvas)
        mask = BrainCanvas.empty(canvas.shape[0], rows, cols, canvas.shape[-1], model.config.input_pool)

        def logits(batch: np.ndarray) -> np.ndarray:
            return self._mask_logits(model, network, batch)

        for picked, out in self._batches(canvas, todo, rows, cols, logits, progress):
            mask.put(picked, out)
        mask.seconds = time.perf_counter() - t0
        return mask

    def _head_where(self, canvas: np.ndarray) -> tuple[np.ndarray, slice, slice]:
        """``(slices, rows, cols)``: the slices with head and the head's window
        (:func:`deepwml.canvas_window.head_window`), or every slice's whole canvas without ``head_crop``."""
        if not self.head_crop:
            return np.arange(canvas.shape[0]), slice(0, canvas.shape[-1]), slice(0, canvas.shape[-1])
        todo = np.flatnonzero(slices_with_head(canvas))
        if not todo.size:
            return todo, slice(0), slice(0)
        return (todo, *head_window(canvas[todo], self.model.config.divisor))

    def _batches(self, canvas: np.ndarray, todo: np.ndarray, rows: slice, cols: slice,
                 network: Callable[[np.ndarray], np.ndarray], progress: ProgressCallback | None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(slice indices, network output)`` for ``todo``'s slices cropped to ``rows`` x ``cols``,
        ``batch_size`` at a time, reporting ``progress`` after each batch (False from it cancels)."""
        total = int(todo.size)
        for start in range(0, total, self.batch_size):
            picked = todo[start:start + self.batch_size]
            yield picked, network(np.ascontiguousarray(canvas[picked][..., rows, cols]))
            if progress is not None and progress(min(start + self.batch_size, total), total) is False:
                raise Cancelled("segmentation cancelled")
        if progress is not None and total == 0:
            progress(0, 0)

    @staticmethod
    def _mask_logits(model: LoadedModel, network: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
        """A mask network (brain, white matter) on a lesion-network batch: padded with air (0, what the canvas
        holds outside the head window) up to the network's divisor, cropped back."""
        h, w = batch.shape[-2:]
        d = model.config.divisor
        padded_h, padded_w = -(-h // d) * d, -(-w // d) * d
        if (padded_h, padded_w) != (h, w):
            batch = np.pad(batch, ((0, 0), (0, 0), (0, padded_h - h), (0, padded_w - w)))
        return network(batch)[..., :h, :w]

    def prepare(self, image: sitk.Image) -> PreparedVolume:
        """Normalise and resample a validated 3D FLAIR onto the canvas (no network; thread-safe)."""
        t0 = time.perf_counter()
        canvas, mapping, layout = image_to_canvas(image, self.thin_slab_mm, self.thin_slab_sliding)
        n_slices = image.GetSize()[2 - layout.transpose[layout.slice_axis]]  # numpy axis n = index axis 2-n
        sliding = sliding_slab_size(layout.slice_thickness_mm, self.thin_slab_mm) if self.thin_slab_sliding else None
        slabs = None if self.thin_slab_sliding else thin_slabs(layout.slice_thickness_mm, n_slices, self.thin_slab_mm)
        # thin slices seen through sliding slabs look thick to the network: the lesion model runs
        thin = self.thin_model is not None and sliding is None and sees_thin_slices(layout.slice_thickness_mm, slabs)
        return PreparedVolume(image, canvas, mapping, layout, n_slices, slabs,
                              {"preprocess": time.perf_counter() - t0}, thin=thin,
                              sliding_slab_mm=sliding * layout.slice_thickness_mm if sliding else 0.0)

    def run_network(self, prepared: PreparedVolume, progress: ProgressCallback | None = None) -> np.ndarray:
        """The canvas probabilities of a prepared volume (records the network's time).

        With a brain-mask model, its network runs first, and the lesion network then sees only
        the brain's window (:func:`deepwml.brain_mask.lesion_window`: slices with brain, the
        bounding box of brain + margin grown by ``brain_context_px``), since lesion probability
        outside brain + margin is set to 0 anyway; the head's window when the mask will not be
        trusted, ``head_crop`` is off or ``brain_context_px`` is None. Progress counts the brain
        network's slices, then the lesion network's."""
        t1 = time.perf_counter()
        region_s = 0.0
        prepared.int8_overflow = self._int8_overflow(prepared)
        float32 = prepared.int8_overflow is not None
        if self.brain_network is None:
            probs = self.predict_canvas(prepared.canvas, progress, thin=prepared.thin, float32=float32)
        else:
            head = self._head_where(prepared.canvas)
            first = int(head[0].size)
            prepared.brain = self.predict_brain(prepared.canvas, _shifted(progress, 0, first), head)
            t_region = time.perf_counter()
            where = self._lesion_where(prepared)
            region_s = time.perf_counter() - t_region
            probs = self.predict_canvas(prepared.canvas, _shifted(progress, first, 0),
                                       where if where is not None else head, thin=prepared.thin, float32=float32)
        if prepared.brain is not None:  # independent of the marks: read while the white-matter networks run
            lesion_model = self._lesion(prepared.thin)[2]
            prepared.floor_scan = self._start_floor_scan(prepared, probs, lesion_model.threshold, lesion_model)
        if self.white_matter_network is not None:  # on the lesion network's window: marks lie nowhere else
            todo, rows, cols = where if self.brain_network is not None and where is not None else \
                self._head_where(prepared.canvas)
            # only the slices with a mark at the card's threshold (a third to a half of a head's, so most of its cost
            # goes); finish() treats the others as near white matter, so a lower threshold never drops more there
            threshold = self._lesion(prepared.thin)[2].threshold
            marked = np.flatnonzero((probs[:, 0] >= threshold).any(axis=(1, 2)))
            prepared.white_matter_slices = np.intersect1d(todo, marked)
            prepared.white_matter = self.predict_white_matter(prepared.canvas,
                                                              (prepared.white_matter_slices, rows, cols))
            if self.mesial_temporal_network is not None:
                prepared.mesial_temporal = self._predict_mask(prepared.canvas, self.mesial_temporal_model,
                                                              self.mesial_temporal_network,
                                                              (prepared.white_matter_slices, rows, cols), None)
        network = self._lesion(prepared.thin, float32)[0]
        if isinstance(network, TorchNetwork):
            network.synchronize()
        prepared.timings_s["network"] = time.perf_counter() - t1 - region_s
        prepared.brain_region_s = region_s
        return probs

    def _int8_overflow(self, prepared: PreparedVolume) -> float | None:
        """Under int8, the share of the head beyond the int8 graph's input range when it exceeds
        :data:`~deepwml.onnx_int8.INT8_INPUT_OVERFLOW_SHARE` (this volume then runs the float32 graph, with a
        warning); None: the int8 graph runs (or no int8, or a thin-slice model's volume)."""
        if self.int8_input_max is None or prepared.thin:
            return None
        share = input_overflow_share(prepared.canvas, self.int8_input_max)
        if share <= INT8_INPUT_OVERFLOW_SHARE:
            return None
        log.warning("%.1f %% of the head is brighter than the int8 graph's input range (%.2f, where the head's median "
                    "is 1; limit %g %%), where int8 loses marks: this volume runs in float32", 100 * share,
                    self.int8_input_max, 100 * INT8_INPUT_OVERFLOW_SHARE)
        return share

    def _lesion_where(self, prepared: PreparedVolume) -> tuple[np.ndarray, slice, slice] | None:
        """The brain's window for the lesion network (see :meth:`run_network`); None: the head's."""
        if not self.head_crop or self.brain_context_px is None:
            return None
        return lesion_window(prepared.brain, prepared.canvas, self._brain_margin_px(prepared),
                             self.model.config.divisor, self.brain_context_px)

    def _brain_margin_px(self, prepared: PreparedVolume) -> float:
        """``brain_margin_mm`` in pixels of the brain network's grid for this volume."""
        return margin_in_pixels(self.brain_margin_mm, self._canvas_pixel_mm(prepared), prepared.brain.block)

    @staticmethod
    def _canvas_pixel_mm(prepared: PreparedVolume) -> tuple[float, float]:
        """A canvas pixel's (row, col) size in mm for this volume."""
        rows_mm, cols_mm = prepared.layout.in_plane_spacing_mm
        per_row, per_col = prepared.mapping.native_per_canvas_pixel
        return rows_mm * per_row, cols_mm * per_col

    def finish(self, prepared: PreparedVolume, probs: np.ndarray,
               threshold: float | None = None) -> SegmentationResult:
        """Canvas probabilities back onto the input's voxel grid (no network; thread-safe).
        ``threshold`` None: the card's of the model that ran (the thin-slice model's on thin slices)."""
        fallback = prepared.int8_overflow is not None
        _, backend, model = self._lesion(prepared.thin, fallback)
        threshold = model.threshold if threshold is None else check_threshold(threshold)
        t2 = time.perf_counter()
        mapping, layout = prepared.mapping, prepared.layout
        slabs = prepared.slabs
        slab_mm = (slabs[0][1] - slabs[0][0]) * layout.slice_thickness_mm if slabs else 0.0
        brain_mask, marked, lost = None, None, None
        if prepared.brain is not None:
            brain_mask, marked, lost = restrict_to_brain(probs, prepared.brain, prepared.canvas, threshold,
                                                         self._canvas_pixel_mm(prepared),
                                                         slab_mm or layout.slice_thickness_mm,
                                                         self.brain_margin_mm, self.brain_model, self.brain_ran_file)
        scan = None
        if brain_mask is not None and brain_mask.applied:  # read ahead by run_network, or now on a second core
            scan = prepared.floor_scan or self._start_floor_scan(prepared, probs, threshold, model)
        native = np.zeros((probs.shape[0], *mapping.native_shape), dtype=np.float32)
        busy = np.flatnonzero(probs.reshape(probs.shape[0], -1).any(1))  # slices without head stay 0
        if busy.size:
            native[busy] = mapping.to_native(probs[busy])[:, 0]
        np.clip(native, 0.0, 1.0, out=native)
        if marked is not None and marked.size:
            brain_mask = replace(brain_mask, removed_ml=self._removed_ml(prepared, native, marked, lost, threshold))
        if slabs is not None:
            native = interpolate_from_slabs(native, slabs, prepared.n_slices)
        native, floor_applied = self._apply_contrast_floor(prepared, native, threshold, model, brain_mask, scan)
        native, white_matter = self._restrict_to_white_matter(prepared, native, threshold)
        prob_image = image_from_slices(native, layout, prepared.image)
        timings = dict(prepared.timings_s)
        timings["postprocess"] = time.perf_counter() - t2 + prepared.brain_region_s
        timings["total"] = sum(timings.values())
        if prepared.brain is not None:  # part of "network", not added to the total
            timings["brain_network"] = prepared.brain.seconds
        if prepared.white_matter is not None:  # part of "network", too
            timings["white_matter_network"] = prepared.white_matter.seconds
        if prepared.mesial_temporal is not None:  # part of "network", too
            timings["mesial_temporal_network"] = prepared.mesial_temporal.seconds
        precision = "float32" if fallback else self.precision_name
        log.info("segmented %d slices in %.2f s on %s (%s, %s, %s)", probs.shape[0], timings["total"],
                 self.device, precision, backend, model.model_id)
        int8_fallback = {"head_share_above_input_range": round(prepared.int8_overflow, 4),
                         "input_range_max": round(self.int8_input_max, 4),
                         "limit": INT8_INPUT_OVERFLOW_SHARE} if fallback else None
        return SegmentationResult(prob_image, threshold, timings, self.device, precision, backend,
                                  layout.slice_thickness_mm, layout.slice_axis, slab_mm or prepared.sliding_slab_mm,
                                  brain_mask, model, slab_sliding=prepared.sliding_slab_mm > 0,
                                  contrast_floor=floor_applied, white_matter=white_matter, int8_fallback=int8_fallback)

    def contrast_floor_setting(self) -> dict | None:
        """The lesion model's floor as reports record it (None: none)."""
        floor = self.contrast_floor_of(self.model)
        return None if floor is None else floor.setting()

    def describe_contrast_floor(self) -> str:
        """One plain sentence on the lesion model's floor (for reports)."""
        floor = self.contrast_floor_of(self.model)
        return "No white-matter contrast floor." if floor is None else floor.describe()

    def contrast_floor_of(self, model: LoadedModel) -> ContrastFloor | None:
        """The floor applied to ``model``'s marks (the card's, unless the segmenter was given one or none).
        A floor given without a level (``--contrast-floor K``) reads the white matter as the card's floor
        does (its load gate included); with no card floor, as the first level."""
        if self.contrast_floor == "card":
            return card_contrast_floor(model)
        if isinstance(self.contrast_floor, ContrastFloor) and self.contrast_floor.level is None:
            card = card_contrast_floor(model)
            if card is None:
                return replace(self.contrast_floor, level=DEFAULT_LEVEL)
            return replace(self.contrast_floor, level=card.level, min_load_ml=card.min_load_ml,
                           full_load_ml=card.full_load_ml)
        return self.contrast_floor

    def _start_floor_scan(self, prepared: PreparedVolume, probs: np.ndarray, threshold: float, model: LoadedModel
                          ) -> Future | None:
        """The floor's :class:`~deepwml.contrast_floor.FloorScan` (the input above its air level, the brain mask on
        the input grid, the white-matter level) read on a thread of its own, or None where ``model`` has no floor
        (``finish`` uses it only where the brain mask is trusted).

        Why: none of it depends on the marks, so it runs while the white-matter networks run (``run_network``) or,
        for canvas probabilities from elsewhere, while ``finish`` maps the marks back (README "Speed"). An envelope
        floor whose gate the canvas's marks could open (at least half its load: a hint only, the gate itself counts
        the input grid's marks) starts its flat level there as well."""
        floor = self.contrast_floor_of(model)
        if floor is None:
            return None
        start_flat = floor.level == ENVELOPE_LEVEL and self._canvas_marks_ml(prepared, probs, threshold) \
            >= floor.min_load_ml / 2
        flair = prepared.layout.to_slices(sitk.GetArrayViewFromImage(prepared.image))
        return in_background(lambda: FloorScan(flair, self._brain_slices(prepared), floor,
                                               prepared.layout.in_plane_spacing_mm, start_flat),
                             name="deepwml-floor-scan")

    def _canvas_marks_ml(self, prepared: PreparedVolume, probs: np.ndarray, threshold: float) -> float:
        """The marked volume (ml) on the canvas: a canvas pixel's area times the depth a canvas slice stands for."""
        rows_mm, cols_mm = self._canvas_pixel_mm(prepared)
        depth_mm = prepared.n_slices * prepared.layout.slice_thickness_mm / max(probs.shape[0], 1)
        return int(np.count_nonzero(probs >= threshold)) * rows_mm * cols_mm * depth_mm / 1000.0

    def _apply_contrast_floor(self, prepared: PreparedVolume, native: np.ndarray, threshold: float,
                              model: LoadedModel, brain_mask: BrainMasking | None, scan: Future | None
                              ) -> tuple[np.ndarray, FloorApplied | None]:
        """``native`` (slice stack on the input grid) with the floor applied; the white-matter level
        is read inside the brain mask, so without one, or with one the plausibility guard did not trust,
        the floor is not applied (and the record says why). ``scan``: :meth:`_start_floor_scan`'s (made whenever the
        floor is applied)."""
        floor = self.contrast_floor_of(model)
        if floor is None:
            return native, None
        if brain_mask is None:  # None exactly when the segmenter has no brain-mask model
            return native, FloorApplied(floor.factor, floor.mode, None, 0, "no brain mask to read the white matter in",
                                        floor.level)
        if not brain_mask.applied:
            return native, FloorApplied(floor.factor, floor.mode, None, 0,
                                        f"brain mask not applied ({brain_mask.reason or 'not trusted'})", floor.level)
        envelope = load_voxels = None
        if floor.level == ENVELOPE_LEVEL:  # computed only if the floor's load gate can open (CPU time: README "Speed")
            envelope, load_voxels = functools.partial(self._white_matter_envelope, prepared), self._load_voxels(prepared)
        return floor_marks(native, scan.result(), threshold, envelope, load_voxels, self._voxel_ml(prepared))

    def _white_matter_envelope(self, prepared: PreparedVolume,
                               box: tuple[slice, slice] | None = None) -> np.ndarray | None:
        """The white matter's in-plane envelope on the input's slice stack (the white-matter network's mask with its
        in-plane holes filled, :data:`~deepwml.contrast_floor.ENVELOPE_LEVEL`); None without a white-matter
        network, or where its plausibility guard would not trust it. ``box``: only inside these in-plane
        ``(rows, cols)`` (False elsewhere; :meth:`_on_input_grid`)."""
        white = prepared.white_matter
        if white is None or self._white_matter_share(prepared)[1] < MIN_WHITE_MATTER_SHARE:
            return None
        filled = fill_holes_per_slice(white.mask)
        return self._on_input_grid(prepared, white.on_canvas(filled, prepared.canvas.shape[-1]), box) >= 0.5

    def _restrict_to_white_matter(self, prepared: PreparedVolume, native: np.ndarray, threshold: float
                                  ) -> tuple[np.ndarray, WhiteMatterRestriction | None]:
        """``native`` (slice stack on the input grid) without the marked components that lie away from the
        white matter (:mod:`deepwml.white_matter`) or on the hippocampus and amygdala
        (:mod:`deepwml.mesial_temporal`), and what was done (None without a white-matter model)."""
        white = prepared.white_matter
        if white is None:
            return native, None
        record = WhiteMatterRestriction(True, self.white_matter_model.model_id,
                                        str(self.white_matter_model.card.get("weights_sha256", "")), NEAR_MM,
                                        MIN_NEAR_FRACTION, MAX_DROPPED_ML, ran=dict(self.white_matter_ran_file))
        marked = native >= threshold
        if not marked.any():
            return native, replace(record, mesial_temporal=self._mesial_temporal_record())
        within, share = self._white_matter_share(prepared)
        max_voxels = self._load_voxels(prepared)
        if share < MIN_WHITE_MATTER_SHARE:
            reason = (f"white-matter mask covers {share:.0%} of the {'brain' if within is not None else 'head'} "
                      f"(< {MIN_WHITE_MATTER_SHARE:.0%}) on the slices it ran on: not trusted, marks left as they are")
            log.warning("%s", reason)
            record = replace(record, applied=False, reason=reason)
        else:
            grid_mm = min(self._canvas_pixel_mm(prepared)) * white.block
            near = white.on_canvas(near_white_matter(white.mask, grid_mm), prepared.canvas.shape[-1])
            unseen = np.ones(near.shape[0], dtype=bool)
            unseen[prepared.white_matter_slices] = False
            near[unseen] = True  # no white matter predicted there: never judged far
            drop, count = far_components(marked, self._on_input_grid(prepared, near, in_plane_box(marked)) >= 0.5,
                                          max_voxels=max_voxels)
            if count:
                native, marked = self._dropped(native, marked, drop)
                record = replace(record, removed_ml=self._ml(prepared, drop), removed_components=count)
        native, mesial = self._exclude_mesial_temporal(prepared, native, marked, within, max_voxels)
        return native, replace(record, mesial_temporal=mesial)

    def _exclude_mesial_temporal(self, prepared: PreparedVolume, native: np.ndarray, marked: np.ndarray,
                                 within: np.ndarray | None, max_voxels: int) -> tuple[np.ndarray, dict | None]:
        """``native`` without the marked components (at most ``max_voxels``) that lie mostly on the hippocampus and
        amygdala (:mod:`deepwml.mesial_temporal`), and the summary's record of it (None without that model)."""
        mesial = prepared.mesial_temporal
        record = self._mesial_temporal_record()
        if mesial is None or not marked.any():
            return native, record
        share = self._mask_share(prepared, mesial, within)
        if share > MAX_MESIAL_TEMPORAL_SHARE:
            reason = (f"mesial-temporal mask covers {share:.0%} of the {'brain' if within is not None else 'head'} "
                      f"(> {MAX_MESIAL_TEMPORAL_SHARE:.0%}) on the slices it ran on: not trusted, marks left as they "
                      "are")
            log.warning("%s", reason)
            return native, {**record, "applied": False, "reason": reason}
        inside = mesial.on_canvas(mesial.mask, prepared.canvas.shape[-1])  # slices it did not run on: all False
        inside = self._on_input_grid(prepared, inside, in_plane_box(marked))
        drop, count = inside_components(marked, inside >= 0.5, MIN_INSIDE_FRACTION, max_voxels=max_voxels)
        if not count:
            return native, record
        return self._dropped(native, marked, drop)[0], {**record, "removed_ml": round(self._ml(prepared, drop), 3),
                                                         "removed_components": count}

    def _mesial_temporal_record(self) -> dict | None:
        """The white-matter record's ``mesial_temporal`` entry before anything was removed (None without a model)."""
        model = self.mesial_temporal_model
        if model is None:
            return None
        return {"applied": True, "model": model.model_id, "sha256": str(model.card.get("weights_sha256", "")),
                "min_fraction": MIN_INSIDE_FRACTION, "max_dropped_ml": MAX_DROPPED_ML, "removed_ml": 0.0,
                "removed_components": 0, "reason": "", "ran": dict(self.mesial_temporal_ran_file)}

    @staticmethod
    def _on_input_grid(prepared: PreparedVolume, canvas_mask: np.ndarray,
                       box: tuple[slice, slice] | None = None) -> np.ndarray:
        """A canvas mask ``[N, C, C]`` on the input's slice stack (fractions; slabs interpolated to every slice).
        ``box``: the in-plane ``(rows, cols)`` the caller reads (every slice): computed only there, 0 elsewhere (the
        masks are read at marked voxels only, and resizing the whole stack back cost ~40 ms a mask at 512^2)."""
        out = prepared.mapping.to_native(canvas_mask[:, None].astype(np.float32), box)[:, 0]
        if prepared.slabs is not None:
            out = interpolate_from_slabs(out, prepared.slabs, prepared.n_slices)
        if box is None:
            return out
        full = np.zeros((out.shape[0], *prepared.mapping.native_shape), dtype=np.float32)
        full[:, box[0], box[1]] = out
        return full

    @staticmethod
    def _dropped(native: np.ndarray, marked: np.ndarray, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``native`` and ``marked`` with the voxels ``drop`` set to 0 / False."""
        return np.where(drop, np.float32(0.0), native).astype(native.dtype, copy=False), marked & ~drop

    @staticmethod
    def _ml(prepared: PreparedVolume, voxels: np.ndarray) -> float:
        """The volume (ml, on the input's grid) of the True voxels of ``voxels``."""
        return int(np.count_nonzero(voxels)) * Segmenter._voxel_ml(prepared)

    @staticmethod
    def _voxel_ml(prepared: PreparedVolume) -> float:
        """One voxel of the input's grid in ml (every volume the segmenter reports or gates on is a count times this)."""
        return float(np.prod(prepared.layout.spacing_zyx)) / 1000.0

    @staticmethod
    def _load_voxels(prepared: PreparedVolume) -> int:
        """:data:`~deepwml.white_matter.MAX_DROPPED_ML` in voxels of the input: the line between a speck and a load
        (the white-matter restriction's size cap, the envelope floor's load gate)."""
        return int(MAX_DROPPED_ML / Segmenter._voxel_ml(prepared))

    def _white_matter_share(self, prepared: PreparedVolume) -> tuple[np.ndarray | None, float]:
        """``(within, share)``: the brain mask the white-matter mask is judged in (None without one) and the
        white-matter mask's share of it, the plausibility guard's quantity (:data:`MIN_WHITE_MATTER_SHARE`)."""
        within = prepared.brain.regions(0.0)[0] if prepared.brain is not None else None
        return within, self._mask_share(prepared, prepared.white_matter, within)

    @staticmethod
    def _mask_share(prepared: PreparedVolume, white: BrainCanvas, brain: np.ndarray | None) -> float:
        """A white-matter or mesial-temporal mask's share of the brain mask (both counted in canvas pixels), or,
        without a brain mask, of the head's canvas pixels, on the slices it ran on: the plausibility guards'
        quantity."""
        ran = prepared.white_matter_slices
        count = int(np.count_nonzero(white.mask[ran])) * white.block * white.block
        if brain is not None:
            total = int(np.count_nonzero(brain[ran])) * prepared.brain.block * prepared.brain.block
        else:
            total = int(np.count_nonzero(prepared.canvas[ran, 0] > 0))
        return count / total if total else 0.0

    @staticmethod
    def _removed_ml(prepared: PreparedVolume, native: np.ndarray, marked: np.ndarray, lost: np.ndarray,
                    threshold: float) -> float:
        """The lesion volume (ml, on the input's grid) the brain mask removed: ``native`` holds the
        kept probabilities per canvas slice, ``lost`` the zeroed ones of the ``marked`` slices."""
        lost_native = prepared.mapping.to_native(lost)[:, 0]
        if prepared.slabs is None:
            count = removed_voxels(native[marked], lost_native, threshold)
        else:  # slabs are interpolated back to every slice: do the same with what was lost
            everything = np.zeros_like(native)
            everything[marked] = lost_native
            count = removed_voxels(interpolate_from_slabs(native, prepared.slabs, prepared.n_slices),
                                   interpolate_from_slabs(everything, prepared.slabs, prepared.n_slices), threshold)
        return count * Segmenter._voxel_ml(prepared)

    def brain_image(self, prepared: PreparedVolume, raw: bool = False) -> sitk.Image | None:
        """The brain mask of a volume that went through :meth:`run_network`, on the input's
        voxel grid (uint8; largest component, holes filled, no margin; ``raw``: the network's
        mask as it came); None without a brain-mask model. For measuring the brain network:
        segmenting does not need it."""
        if prepared.brain is None:
            return None
        return image_from_slices(self._brain_slices(prepared, raw).astype(np.uint8), prepared.layout, prepared.image)

    @staticmethod
    def _brain_slices(prepared: PreparedVolume, raw: bool = False) -> np.ndarray:
        """:meth:`brain_image` as a boolean slice stack (the layout's order, as ``finish`` works)."""
        small = prepared.brain.mask if raw else prepared.brain.regions(0.0)[0]
        brain = prepared.brain.on_canvas(small, prepared.canvas.shape[-1])
        native = prepared.mapping.to_native(brain[:, None].astype(np.float32))[:, 0]
        if prepared.slabs is not None:
            native = interpolate_from_slabs(native, prepared.slabs, prepared.n_slices)
        return native >= 0.5

    def segment(self, image: sitk.Image, threshold: float | None = None,
                progress: ProgressCallback | None = None) -> SegmentationResult:
        """Segment a validated 3D FLAIR ``image`` (see :func:`deepwml.image_io.load_flair`)."""
        if threshold is not None:
            check_threshold(threshold)  # before any work
        prepared = self.prepare(image)
        return self.finish(prepared, self.run_network(prepared, progress), threshold)

