"""ONNX Runtime for CPU inference: the same network and weights, faster than PyTorch on a CPU.

Why: most reading-room workstations have no CUDA GPU, and the radiologist waits for the button.
On the project's 2-core CPU, 24 slices of 256x256 through the width-16 network took 1.73 s in
PyTorch float32 (NCHW), 1.22 s in PyTorch channels-last and 0.99 s in ONNX Runtime (max
|difference| 1.4e-4 in logits); end-to-end figures are in benchmarks/RESULTS.md. The model
folder carries ``model.onnx`` exported from its own safetensors weights; the card records the ONNX file's SHA-256 *and* the weights SHA-256 it was
exported from, so an ONNX file that does not belong to these weights is refused like a
tampered weights file. ONNX is a protobuf graph: loading it runs no Python code.

PyTorch is needed only to export (and for training, CUDA and any precision other than float32;
``backend="torch"`` forces it): running and checking a graph needs numpy and onnxruntime only.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .architecture import reference_logits
from .background import in_background
from .errors import ModelFileError
from .image_io import write_with
from .model_files import LoadedModel, file_in_model_folder, load_model, read_card, sha256_of, write_card

log = logging.getLogger(__name__)

ONNX_NAME = "model.onnx"
#: ONNX operator set of exported models (supported by onnxruntime >= 1.13).
OPSET = 17


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: LoadedModel) -> Path:
    """Export ``model`` to ``model.onnx`` beside its weights and record it in the card.

    Batch, height and width are dynamic (the segmenter feeds head-sized windows). The file is
    checked against PyTorch on a random batch before it is recorded.
    """
    import torch

    card, card_path = read_card(model.path)
    out = card_path.parent / ONNX_NAME
    network = model.network.to("cpu").eval().float()
    divisor = model.network.config.divisor
    side = divisor * max(1, 64 // divisor)
    example = torch.rand(2, 1, side, side) * 2.0

    with tempfile.TemporaryDirectory() as tmp_dir:
        candidate = Path(tmp_dir) / ONNX_NAME
        # The TorchScript exporter (dynamo=False) needs only the onnx package; torch 2.13 marks it
        # deprecated, which is not news to the user exporting a model.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(network, example, str(candidate), dynamo=False, opset_version=OPSET,
                              input_names=["canvas"], output_names=["logits"],
                              dynamic_axes={"canvas": {0: "slices", 2: "rows", 3: "cols"},
                                            "logits": {0: "slices", 2: "rows", 3: "cols"}})
        check = torch.rand(3, 1, divisor * -(-96 // divisor), divisor * -(-80 // divisor)) * 2.0
        with torch.inference_mode():
            expected = network(check).numpy()
        got = OnnxNetwork(candidate, model.network.divisor)(check.numpy())
        error = float(np.abs(got - expected).max())
        if error > 1e-3:
            raise ModelFileError(candidate, f"exported ONNX graph disagrees with PyTorch (max |diff| {error:.2e})")
        write_with(out, lambda tmp: tmp.write_bytes(candidate.read_bytes()))
    card["onnx"] = {"file": ONNX_NAME, "sha256": sha256_of(out), "opset": OPSET,
                    "exported_from_weights_sha256": card["weights_sha256"],
                    "torch_version": torch.__version__, "max_abs_logit_difference": error}
    write_card(card, card_path)
    log.info("exported %s (max |logit difference| vs PyTorch %.1e)", out, error)
    return out


def onnx_file_of(model: LoadedModel, key: str = "onnx") -> Path | None:
    """The verified ONNX graph the card names under ``key`` (``onnx``: float32 ``model.onnx``;
    ``onnx_int8``: the quantised graph), or None when the model has none.

    Raises :class:`ModelFileError` when the card names an ONNX file that is missing, altered,
    or exported from other weights.
    """
    entry: dict[str, Any] | None = model.card.get(key)
    if not entry:
        return None
    int8 = key == "onnx_int8"
    export = "'deepwml export-onnx MODEL --int8 --calibration FLAIRS'" if int8 else "'deepwml export-onnx MODEL'"
    path = file_in_model_folder(model.path, entry.get("file", ONNX_NAME), f"{key}.file")
    if not path.exists():
        raise ModelFileError(path, f"ONNX file named by the model card is missing (re-export it with {export}"
                                   f"{'' if int8 else ' or use --backend torch'})")
    if entry.get("exported_from_weights_sha256") != model.card.get("weights_sha256"):
        raise ModelFileError(path, "ONNX file was exported from other weights than this model's; "
                                   f"re-export it with {export}")
    if sha256_of(path) != entry.get("sha256"):
        raise ModelFileError(path, "SHA-256 does not match the model card: the file is truncated, "
                                   "corrupted or was altered; refusing to load it")
    return path


def cpu_threads() -> int:
    """CPU cores this process may use (its affinity where the OS tells, e.g. under taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


#: Most ONNX Runtime sessions one network runs a batch on at once (:class:`OnnxNetwork`).
MAX_LANES = 2


class OnnxNetwork:
    """ONNX Runtime sessions called like :class:`deepwml.torch_backend.TorchNetwork`: a
    float32 numpy batch ``[N, 1, H, W]`` in, float32 numpy logits out.

    A batch is split between ``lanes`` sessions that run at once on their share of the cores (two on a 2-core CPU,
    one thread each), rather than one session whose threads meet after every operator. Why: the width-16 network is
    many small operators, and with worker threads that sleep between them (below) each meeting costs a wake-up; the
    images of a batch are independent, so two single-threaded sessions on half a batch each give the very same logits
    (tested bit for bit against one session) in less time (README "Speed"). ``threads``: the cores to use (default:
    this process's, :func:`cpu_threads`); ``lanes``: how many sessions share them (default: up to :data:`MAX_LANES`)."""

    def __init__(self, path: Path, divisor: int, threads: int | None = None, lanes: int | None = None) -> None:
        threads = threads or cpu_threads()
        lanes = max(1, min(threads, MAX_LANES if lanes is None else lanes))
        self.sessions = [self._session(path, threads // lanes) for _ in range(lanes)]
        self.divisor = divisor
        self.input_name = self.sessions[0].get_inputs()[0].name

    @staticmethod
    def _session(path: Path, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Worker threads sleep instead of spinning between operators: with other work on the
        # cores (a pipelined batch's reading and writing threads, a training run beside it) the
        # spinning threads took their time; measured on the 2-core CPU under load, 6 volumes took
        # 80.7 s one after another and 63.4 s pipelined with spinning, 34.1 s and 30.9 s without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own unexported exception types
            raise ModelFileError(path, f"cannot be loaded by ONNX Runtime ({str(err).splitlines()[0]})") from None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if len(self.sessions) == 1 or array.shape[0] < 2:
            return self._run(0, array)
        parts = np.array_split(array, min(len(self.sessions), array.shape[0]))
        # the other lanes on threads of their own (ONNX Runtime releases the GIL); a lane's error is raised here
        others = [in_background(self._run, lane, part, name=f"onnx-lane-{lane}")
                  for lane, part in enumerate(parts) if lane]
        first = self._run(0, parts[0])
        return np.concatenate([first] + [other.result() for other in others])

    def _run(self, lane: int, array: np.ndarray) -> np.ndarray:
        return self.sessions[lane].run(None, {self.input_name: np.ascontiguousarray(array)})[0]


#: Tolerance of :func:`check_reproduces_weights` on logits (exports differ by ~2e-5).
REPRODUCE_TOLERANCE = 1e-3
#: The fixed probe both the graph and the weights run: one 32x32 slice (the network's four
#: poolings leave 2x2, where every tap of every kernel still touches the image).
PROBE_SEED, PROBE_SHAPE = 20240611, (1, 1, 32, 32)


def check_reproduces_weights(onnx: "OnnxNetwork", model: LoadedModel, path: Path,
                             tolerance: float = REPRODUCE_TOLERANCE, relative: bool = False,
                             probe: np.ndarray | None = None) -> float:
    """Refuse an ONNX graph that does not compute what the model's safetensors weights compute.

    Why: the card's SHA-256 of ``model.onnx`` only catches corruption; whoever can replace the
    file can update the card too (a swapped graph ran silently: 5,798 ml on a phantom, while the
    summary named the genuine weights). The verified safetensors weights are the reference: a
    numpy float64 forward pass of them (:func:`deepwml.architecture.reference_logits`, no
    PyTorch) and the graph run a fixed input before the graph is used. Returns the max
    |logit difference|. ``relative``: the tolerance is a fraction of the spread (max - min) of
    the reference logits on the probe, and so is the returned difference; an int8 graph
    computes the same network only approximately and is held to
    :data:`deepwml.onnx_int8.INT8_REPRODUCE_TOLERANCE` that way, on its own ``probe``.
    """
    if probe is None:
        probe = (np.random.default_rng(PROBE_SEED).random(PROBE_SHAPE) * 2.0).astype(np.float32)
    expected = reference_logits(model.numpy_weights(), model.config, probe)
    got = onnx(probe)
    if got.shape != expected.shape:
        raise ModelFileError(path, f"ONNX graph gives output of shape {tuple(got.shape)}, the weights "
                                   f"{tuple(expected.shape)}: it is not this model's graph; refusing it")
    error = float(np.abs(got - expected).max())
    if relative:
        error /= max(float(np.ptp(expected)), 1e-12)
    if not error <= tolerance:
        what = " of the logits' spread" if relative else ""
        raise ModelFileError(path, f"ONNX graph does not reproduce the model's safetensors weights (max "
                                   f"|logit difference| {error:.2g}{what} on a fixed input): it was altered or "
                                   "belongs to another model; refusing it")
    return error


def export_after_training(model_dir: Path) -> Path | None:
    """Export a freshly trained model for fast CPU inference; a failure only costs speed."""
    try:
        return export_onnx(load_model(model_dir))
    except (ImportError, ModelFileError, RuntimeError, ValueError) as err:
        log.warning("could not export %s to ONNX (%s); it will run with PyTorch", model_dir, err)
        return None
