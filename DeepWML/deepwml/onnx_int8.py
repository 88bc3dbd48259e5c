"""An int8 ONNX graph of a model, for the fastest CPU inference (``--precision int8``).

Why: on the project's 2-core CPU the float32 network is ~77 % of a 24x512x512 volume's time and
the cold start of ``deepwml segment`` stays above 1 s however small the overhead gets. The same
network with int8 weights and activations (ONNX Runtime's QDQ format, per-channel weights)
runs 2.3-2.5x faster there. Why it is opt-in: its masks are not the float32 masks (on the
benchmark phantom they agree with Dice ~0.97, but on 120 synthetic heads 1.8.0's graph kept
under half of float32's volume on 13 of 109, a 63 ml load marked 0 ml: experiment 57), so the
default stays float32 and every figure of the README names the precision it was measured with.
A volume beyond the graph's input range runs float32 (:data:`INT8_INPUT_OVERFLOW_SHARE`).

Choices, and why:
- **Calibration on FLAIRs the user names** (a training manifest, a folder, files), never on
  evaluation data: activation ranges come from their canvases, through the same
  preprocessing as inference (:func:`deepwml.preprocessing.image_to_canvas`).
- **Percentile calibration** (99.999th first): min/max ranges are set by rare outliers and cost
  resolution everywhere else; on the bundled model 1.2.0 min/max agreed with float32 masks at
  Dice 0.962, percentile at 0.972. A network with wider activations (1.7.0, trained from random
  weights) is off by 0.19 of its logit spread at 99.999 and 0.12 at 99.99, within the check at
  99.9 (0.036): the percentiles of :data:`CALIBRATION_PERCENTILES` are tried in turn and the first
  graph that passes the probe is kept, its percentile recorded in the card.
- **The last convolution stays float32**: it makes the logits, whose resolution near the
  threshold decides boundary voxels; it is 16 -> 1 channels, so it costs nothing.
- **Reduced-range (7-bit) weights**: on x86 CPUs without VNNI, ONNX Runtime's u8 x s8
  kernels can saturate 16-bit intermediate sums; with 7-bit weights they cannot, so the same
  graph gives the same integers on every x86 CPU (tests and defaults must not depend on the
  CPU). U8 x U8 avoids it too but ran 2.4x slower than float32 here.

Quantising needs the ``onnx`` package, and so does the first check of a graph on a machine
(:func:`check_int8_weights` reads its stored weights); running the graph needs only onnxruntime,
like the float32 graph.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DeepWMLError, ModelFileError
from .image_io import load_flair, write_with
from .model_files import LoadedModel, read_card, sha256_of, write_card
from .onnx_backend import PROBE_SEED, PROBE_SHAPE, OnnxNetwork, check_reproduces_weights, export_onnx, onnx_file_of
from .preprocessing import image_to_canvas, slices_with_head

log = logging.getLogger(__name__)

INT8_ONNX_NAME = "model.int8.onnx"
#: Max |logit difference| an int8 graph may show against the safetensors weights on
#: :func:`head_probe`, as a fraction of the spread (max - min) of the reference logits there.
#: Measured on model 1.2.0 (spread 20.7): its int8 graph 0.041; the float32 graphs of its
#: fine-tunes 1.3.0-v4, 1.3.0-v4h and 1.3.0 (the nearest other networks we have) 0.16, 0.19 and
#: 0.24; 1.4.0's int8 graph 0.044; the shipped 1.5.0's int8 graph 0.043, while against 1.5.0's
#: weights its parent 1.3.0-v4's float32 graph is 0.15 off and 1.4.0's graphs 0.24-0.26. So 0.10
#: accepts quantisation error and refuses another model. A head-like input keeps activations
#: inside the calibrated ranges (on the float32 check's noise probe a random width-4 network's
#: int8 graph was 0.14-0.17 off, here 0.01-0.03).
INT8_REPRODUCE_TOLERANCE = 0.10
#: How far (in quantisation steps of their own channel) an int8 graph's dequantised weights may
#: lie from the safetensors weights: correct rounding gives at most half a step; the rest is
#: float rounding. Why a second check beside the probe: a close fine-tune's graph computes
#: nearly the same logits. Against 1.6.0's weights, 1.5.0's int8 graph (its parent) is 0.088 of
#: the spread off on the probe, inside the 0.10 above (1.6.0's own int8 graph: 0.049).
WEIGHT_STEP_TOLERANCE = 0.5 + 1e-3
#: Percentiles of |activation| kept by the calibration (ONNX Runtime's Percentile method), tried
#: in this order until a graph passes :data:`INT8_REPRODUCE_TOLERANCE` (see the module's docstring).
CALIBRATION_PERCENTILES = (99.999, 99.99, 99.9)
#: Under ``--precision int8`` a volume with more than this share of its head's canvas pixels (canvas > 0) above the
#: int8 graph's input range (:func:`int8_input_max`) runs the float32 graph instead. Why: the calibration quantises the
#: input canvas to a range (1.8.0's graph: [0, 2.75]) while canvases run to ``CLIP_MAX`` (4.0), and every tensor after
#: it to a percentile of its range; heads that are bright against their median lie partly beyond, and there the int8
#: network lost marks, up to all of them (experiment 58, README "int8 on the CPU": on 60 fresh synthetic heads, 5 of 54
#: kept under 0.8 of float32's network volume; they had 2.2-24 % of their head above 2.75, the 49 others at most 2.6 %).
#: No recalibration fixed it (input range [0, 4], percentiles 99.9-99.999, the first block kept float32: 2-4 left).
INT8_INPUT_OVERFLOW_SHARE = 0.01
#: Every n-th canvas slice of a calibration volume (neighbouring slices add little range).
CALIBRATION_STRIDE = 3
#: Calibration batch size: ONNX Runtime's percentile collector needs equal batches.
CALIBRATION_BATCH = 4
FLAIR_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def head_probe(size: int = PROBE_SHAPE[-1], seed: int = PROBE_SEED) -> np.ndarray:
    """A fixed, head-like canvas slice ``[1, 1, size, size]``: an ellipse at white-matter level
    with smooth texture, four bright blobs and mild noise, air at 0 (what normalised canvases
    look like), for checking an int8 graph against the weights. 32x32 like the float32 probe:
    the numpy float64 reference pass takes ~0.02 s there (a cold start is timed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    head = (x ** 2 / 0.8 + y ** 2 / 0.95) < 1
    image = np.where(head, 0.8 + 0.15 * np.cos(6 * x) * np.sin(5 * y), 0.0)
    for cx, cy, radius in rng.uniform([-0.5, -0.5, 0.04], [0.5, 0.5, 0.12], (4, 3)):
        image[(x - cx) ** 2 + (y - cy) ** 2 < radius ** 2] = 1.5
    image = np.where(head, image + rng.normal(0, 0.05, image.shape), 0.0)
    return image[None, None].astype(np.float32)


def check_int8_graph(network: OnnxNetwork, model: LoadedModel, path: Path) -> float:
    """Refuse an int8 graph that is not ``model``'s quantised network: its stored weights must be
    these weights rounded (:func:`check_int8_weights`) and its logits on :func:`head_probe` close
    to theirs (:data:`INT8_REPRODUCE_TOLERANCE`); returns the probe difference as a fraction of
    the spread."""
    check_int8_weights(path, model)
    return check_reproduces_weights(network, model, path, INT8_REPRODUCE_TOLERANCE, relative=True,
                                    probe=head_probe())


def check_int8_weights(path: Path, model: LoadedModel) -> float:
    """Refuse an int8 graph whose stored weights are not ``model``'s safetensors weights rounded
    to its quantisation steps (int8 convolution weights and int32 biases, dequantised per
    channel; float32 tensors such as the last convolution's must be equal), or that lacks one
    of them. Exact where the probe is only close: another model's weights differ by more than
    half a step somewhere. Returns the largest distance in steps (at most
    :data:`WEIGHT_STEP_TOLERANCE`)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    weights = model.numpy_weights()
    worst, found = 0.0, set()
    for node in graph.node:
        name = node.input[0].removesuffix("_quantized") if node.op_type == "DequantizeLinear" else ""
        if name not in weights or node.input[0] not in stored:
            continue
        if stored[node.input[0]].shape != weights[name].shape:
            raise ModelFileError(path, f"int8 graph's {name} has shape {stored[node.input[0]].shape}, the weights "
                                       f"{weights[name].shape}: it is not this model's graph; refusing it")
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        worst = max(worst, _steps_off(weights[name], stored[node.input[0]], stored[node.input[1]],
                                      stored[node.input[2]] if len(node.input) > 2 else 0, axis))
        found.add(name)
    if not worst <= WEIGHT_STEP_TOLERANCE:
        raise ModelFileError(path, f"int8 graph's weights are not this model's safetensors weights rounded (up to "
                                   f"{worst:.3g} quantisation steps off, at most 0.5): it belongs to another model or "
                                   "was altered; refusing it")
    for name in sorted(set(weights) - found):  # kept float32 (the last convolution): equal, or refused
        if name not in stored or not np.array_equal(stored[name], weights[name]):
            what = "lacks the weights" if name not in stored else "holds other float32 weights for"
            raise ModelFileError(path, f"int8 graph {what} {name}: it is not this model's graph; refusing it")
    return worst


def _steps_off(weight: np.ndarray, quantized: np.ndarray, scale: np.ndarray, zero: np.ndarray | int,
               axis: int) -> float:
    """Largest |dequantised - weight| in quantisation steps (``scale`` per tensor, or per channel
    along ``axis``; a 1-D tensor such as a bias is its own channel axis)."""
    shape = [1] * weight.ndim
    if np.size(scale) > 1:
        shape[axis if weight.ndim > 1 else 0] = -1
    step = np.reshape(np.asarray(scale, np.float64), shape)
    dequantized = (quantized.astype(np.float64) - np.reshape(np.asarray(zero, np.float64), shape)) * step
    error = np.abs(dequantized - weight.astype(np.float64))
    step = np.broadcast_to(step, weight.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.where(step > 0, error / step, np.where(error == 0, 0.0, np.inf))
    return float(steps.max(initial=0.0))


def graph_input_max(path: Path) -> float:
    """The largest input value the int8 graph at ``path`` represents: its input's QuantizeLinear range
    (``scale x (255 - zero point)``); inf when the input is not quantised (a graph that keeps its first layer
    float32)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    stored = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == graph.input[0].name:
            scale = float(numpy_helper.to_array(stored[node.input[1]]))
            zero = int(numpy_helper.to_array(stored[node.input[2]])) if len(node.input) > 2 else 0
            return scale * (255 - zero)
    return float("inf")


def int8_input_max(model: LoadedModel) -> float:
    """The largest canvas value ``model``'s int8 graph represents: recorded in its card (``onnx_int8.input_max``,
    written by :func:`quantize_int8`), else read from the graph (cards made before experiment 58)."""
    entry = model.card.get("onnx_int8") or {}
    if "input_max" in entry:
        return float(entry["input_max"])
    return graph_input_max(int8_file_of(model))


def input_overflow_share(canvas: np.ndarray, input_max: float) -> float:
    """The share of the head's canvas pixels (> 0; air and the darkest percent are 0) above ``input_max``: what an
    int8 graph whose input range ends there would clip (see :data:`INT8_INPUT_OVERFLOW_SHARE`)."""
    head = canvas[canvas > 0]
    return float(np.count_nonzero(head > input_max)) / head.size if head.size else 0.0


def calibration_files(sources: Iterable[str | Path]) -> list[Path]:
    """The FLAIR files named by ``sources``: files, training manifests (a ``.csv``, or a folder
    with ``manifest.csv`` such as ``deepwml synth`` or ``deepwml phantom`` output; read by
    :func:`deepwml.training.manifest.read_manifest`, labels not needed) and other folders (every
    image in them, sorted)."""
    from .training.manifest import read_manifest

    files: list[Path] = []
    for source in map(Path, sources):
        if source.suffix == ".csv" or (source / "manifest.csv").exists():
            files += [case.flair for case in read_manifest(source, need_labels=False)]
        elif source.is_dir():
            files += sorted(p for p in source.rglob("*") if p.name.lower().endswith(FLAIR_SUFFIXES))
        else:
            files.append(source)
    missing = [f for f in files if not f.exists()]
    if missing:
        raise DeepWMLError(missing[0], "calibration FLAIR not found")
    return files


def calibration_canvases(files: Sequence[Path], max_slices: int = 96) -> np.ndarray:
    """Canvas slices ``[N, 1, C, C]`` of ``files`` for calibration: every
    :data:`CALIBRATION_STRIDE`-th slice with head, spread evenly over the files, at most
    ``max_slices``, N a multiple of :data:`CALIBRATION_BATCH`. Of a long list (a training
    manifest) only evenly spaced files are read, :data:`CALIBRATION_BATCH` slices each."""
    if not files:
        raise ValueError("int8 calibration needs at least one FLAIR")
    most = max(1, max_slices // CALIBRATION_BATCH)
    if len(files) > most:
        files = [files[i] for i in np.linspace(0, len(files) - 1, most).round().astype(int)]
    per_file = max(CALIBRATION_BATCH, -(-max_slices // len(files)))
    picked = []
    for path in files:
        canvas, _, _ = image_to_canvas(load_flair(path))
        with_head = canvas[slices_with_head(canvas)]
        picked.append(with_head[::CALIBRATION_STRIDE][:per_file])
    slices = np.concatenate(picked)[:max_slices]
    usable = len(slices) // CALIBRATION_BATCH * CALIBRATION_BATCH
    if usable == 0:
        raise DeepWMLError(files[0], f"calibration needs at least {CALIBRATION_BATCH} slices with head")
    return np.ascontiguousarray(slices[:usable], dtype=np.float32)


def _logits_node(model_path: Path) -> str:
    """The name of the node that writes the graph's output (the 1x1 head convolution)."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    output = graph.output[0].name
    return next(node.name for node in graph.node if output in node.output)


def quantize_int8(model: LoadedModel, calibration: np.ndarray, description: str) -> Path:
    """Write ``model.int8.onnx`` beside ``model``'s weights, calibrated on ``calibration``
    canvas slices, and record it in the card under ``onnx_int8``.

    The float32 ``model.onnx`` is exported first when the model has none. The graph is
    checked against the weights (:data:`INT8_REPRODUCE_TOLERANCE`) before it is recorded;
    the card also records how its masks agree with float32 ones on the calibration slices.
    """
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .evaluation.metrics import dice  # imported here: scipy is not needed to run a graph

    source = onnx_file_of(model)
    if source is None:
        export_onnx(model)
        model = _reloaded(model)
        source = onnx_file_of(model)
    card, card_path = read_card(model.path)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= len(calibration):
                return None
            batch = calibration[self.start:self.start + CALIBRATION_BATCH]
            self.start += CALIBRATION_BATCH
            return {"canvas": batch}

    out = card_path.parent / INT8_ONNX_NAME
    with tempfile.TemporaryDirectory() as tmp_dir:
        prepared, candidate = Path(tmp_dir) / "prepared.onnx", Path(tmp_dir) / INT8_ONNX_NAME
        # the height and width are dynamic, so symbolic shape inference cannot finish; the
        # graph optimisation and ONNX shape inference of the pre-processing still run
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        logits_node = _logits_node(prepared)
        for percentile in CALIBRATION_PERCENTILES:
            chatter = io.StringIO()  # the calibrator prints its progress; it goes to the debug log
            with contextlib.redirect_stdout(chatter):
                quantize_static(str(prepared), str(candidate), Batches(), quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                                nodes_to_exclude=[logits_node], extra_options={"CalibPercentile": percentile})
            log.debug("ONNX Runtime quantisation: %s", chatter.getvalue().strip())
            check_int8_weights(candidate, model)  # what every first run will check: a failure here is a bug
            network = OnnxNetwork(candidate, model.config.divisor)
            probe_error = check_reproduces_weights(network, model, candidate, float("inf"), relative=True,
                                                   probe=head_probe())
            if probe_error <= INT8_REPRODUCE_TOLERANCE:
                break
            log.info("int8 graph calibrated at the %gth percentile is %.3f of the logit spread off; trying the next",
                     percentile, probe_error)
        if probe_error > INT8_REPRODUCE_TOLERANCE:
            raise ModelFileError(model.path, f"int8 quantisation changes this network's logits too much "
                                             f"({probe_error:.2f} of their spread on the probe, limit "
                                             f"{INT8_REPRODUCE_TOLERANCE}); keep float32 (a random or barely "
                                             "trained network has no usable int8 form)")
        float_net = OnnxNetwork(source, model.config.divisor)
        logit_threshold = float(np.log(model.threshold / (1.0 - model.threshold)))
        agreement = dice(float_net(calibration) >= logit_threshold, network(calibration) >= logit_threshold)
        write_with(out, lambda tmp: tmp.write_bytes(candidate.read_bytes()))
    card["onnx_int8"] = {
        "file": INT8_ONNX_NAME, "sha256": sha256_of(out), "exported_from_weights_sha256": card["weights_sha256"],
        "quantization": {"format": "QDQ", "weights": "int8 per channel, reduced range (7 bit)",
                         "activations": "uint8", "calibration_method": f"percentile {percentile:g}",
                         "float32_nodes": [logits_node]},
        "calibration": {"data": description, "slices": int(len(calibration))},
        "probe_max_logit_difference_of_spread": round(probe_error, 4),
        "input_max": round(graph_input_max(out), 6),  # volumes beyond it run float32 (INT8_INPUT_OVERFLOW_SHARE)
        # undefined (None) when neither graph marks anything on the calibration slices
        "mask_dice_vs_float32_on_calibration": None if np.isnan(agreement) else round(agreement, 4),
        "onnxruntime_version": onnxruntime.__version__,
    }
    write_card(card, card_path)
    log.info("wrote %s (probe |logit difference| %.3f of the spread, mask Dice vs float32 %.3f on %d "
             "calibration slices)", out, probe_error, agreement, len(calibration))
    return out


def _reloaded(model: LoadedModel) -> LoadedModel:
    """``model`` with its card re-read (an export just added the float32 graph to it)."""
    card, _ = read_card(model.path)
    return LoadedModel(model.network, card, model.path, model.weights)


def int8_file_of(model: LoadedModel) -> Path:
    """The verified int8 graph of ``model``; an error naming the fix when it has none."""
    path = onnx_file_of(model, "onnx_int8")
    if path is None:
        raise ModelFileError(model.path, f"model {model.model_id} has no int8 graph (run 'deepwml export-onnx "
                                         "MODEL --int8 --calibration FLAIRS' or use --precision float32)")
    return path
