"""A wider U-Net that starts out computing what a trained narrower one computes (Net2WiderNet,
Chen, Goodfellow and Shlens, ICLR 2016).

Why: the bundled network is 16 channels wide and every CPU fine-tune of it since 1.6.0 has
stalled (docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0", 20-27); capacity is the lever left, but a wider network trained
from scratch would not catch up with the chain's hours of training. Widening keeps what was
learnt: every new channel copies an existing channel of the same feature map (same producing
weights and bias), and every layer that reads the map divides its weights for a copied channel
by the number of copies, so the sum it computes is unchanged. ReLU, max-pooling, concatenation
and transposed convolution act channel by channel, so the whole network's logits are unchanged
(tested against :func:`deepwml.architecture.reference_logits`). Copies would then receive the
same gradients for ever, so a little noise on the copies' producing weights breaks the tie.

Numpy only: the weights are the safetensors arrays of a model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..architecture import UNetConfig, parameter_shapes

#: Gaussian noise on the copied channels' producing weights, as a fraction of the layer's weight std
DEFAULT_NOISE = 0.01


def _copy_map(old: int, new: int, rng: np.random.Generator) -> np.ndarray:
    """Channel j of the widened map is channel ``map[j]`` of the old one: itself for j < old."""
    return np.concatenate([np.arange(old), rng.integers(0, old, new - old)])


def _produce(weights: dict[str, np.ndarray], layer: str, copy: np.ndarray, out_axis: int) -> None:
    weights[f"{layer}.weight"] = np.take(weights[f"{layer}.weight"], copy, axis=out_axis)
    weights[f"{layer}.bias"] = weights[f"{layer}.bias"][copy]


def _consume(weights: dict[str, np.ndarray], layer: str, copy: np.ndarray, in_axis: int) -> None:
    counts = np.bincount(copy)[copy].astype(np.float64)
    shape = [1] * weights[f"{layer}.weight"].ndim
    shape[in_axis] = len(copy)
    widened = np.take(weights[f"{layer}.weight"], copy, axis=in_axis)
    weights[f"{layer}.weight"] = (widened / counts.reshape(shape)).astype(widened.dtype)


def widened_weights(weights: Mapping[str, np.ndarray], config: UNetConfig, base_channels: int,
                    seed: int = 0, noise: float = DEFAULT_NOISE) -> tuple[dict[str, np.ndarray], UNetConfig]:
    """The weights of ``config``'s U-Net widened to ``base_channels`` (noise 0: the same logits)."""
    if base_channels < config.base_channels:
        raise ValueError(f"cannot widen {config.base_channels} channels to {base_channels}")
    new_config = UNetConfig(base_channels, config.depth, config.in_channels, config.input_pool)
    rng = np.random.default_rng(seed)
    old, new = config.widths, new_config.widths
    out = {k: np.asarray(v).copy() for k, v in weights.items()}
    copies: dict[str, tuple[int, int]] = {}  # producing layer -> (its output axis, its old width)

    def widen(producer: str, level: int, out_axis: int = 0) -> np.ndarray:
        copy = _copy_map(old[level], new[level], rng)
        _produce(out, producer, copy, out_axis)
        copies[producer] = (out_axis, old[level])
        return copy

    depth = config.depth
    skips = []
    previous = None  # copy map of the map the next block reads
    for level in range(depth):
        block = f"down.{level}"
        first = widen(f"{block}.0", level)
        if previous is not None:
            _consume(out, f"{block}.0", previous, 1)
        _consume(out, f"{block}.2", first, 1)
        previous = widen(f"{block}.2", level)
        skips.append(previous)
    first = widen("bottom.0", depth)
    _consume(out, "bottom.0", previous, 1)
    _consume(out, "bottom.2", first, 1)
    previous = widen("bottom.2", depth)
    for k in range(depth):
        level = depth - 1 - k
        up = widen(f"up.{k}", level, out_axis=1)  # ConvTranspose2d: (in, out, kh, kw)
        _consume(out, f"up.{k}", previous, 0)
        # the block reads [skip, up] concatenated: each half keeps its own copy map
        _consume(out, f"up_conv.{k}.0", np.concatenate([skips[level], old[level] + up]), 1)
        first = widen(f"up_conv.{k}.0", level)
        _consume(out, f"up_conv.{k}.2", first, 1)
        previous = widen(f"up_conv.{k}.2", level)
    _consume(out, "head", previous, 1)
    if noise > 0:
        for layer, (out_axis, old_width) in copies.items():
            weight = out[f"{layer}.weight"]
            index = [slice(None)] * weight.ndim
            index[out_axis] = slice(old_width, None)  # the new channels, copies
            jitter = rng.normal(0.0, noise * float(weight.std()), weight[tuple(index)].shape)
            weight[tuple(index)] += jitter.astype(weight.dtype)
    expected = parameter_shapes(new_config)
    misfit = {k: (out[k].shape, v) for k, v in expected.items() if out[k].shape != v}
    if misfit or out.keys() != expected.keys():
        raise AssertionError(f"widening produced wrong shapes: {misfit}")
    return out, new_config


def widen_model(model_dir: str | Path, out_dir: str | Path, base_channels: int, version: str, seed: int = 0,
                noise: float = DEFAULT_NOISE) -> Path:
    """Write ``model_dir``'s lesion model widened to ``base_channels`` into ``out_dir`` (card recording
    the source model, its weights' SHA-256, the seed and the noise; its threshold until one is chosen, and its
    contrast floor: the widened network computes the same logits);
    return the card path. Needs PyTorch (the model folder is written by the trainer's saver)."""
    import torch

    from ..model_files import ModelCard, inherited_reading, load_model, save_model
    from ..unet import UNet2D

    source = load_model(model_dir)
    weights, config = widened_weights(source.numpy_weights(), source.config, base_channels, seed, noise)
    network = UNet2D(config)
    network.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
    training: dict[str, Any] = {"widened_from": {
        "method": "Net2WiderNet (Chen et al. 2016): new channels copy random channels of the same feature map, "
                  "their readers' weights divided by the copy count; noise on the copies' producing weights",
        "model": source.model_id, "weights_sha256": source.card["weights_sha256"],
        "base_channels": [source.config.base_channels, base_channels], "seed": seed, "noise": noise,
        "training": source.card.get("training", {})}}
    name = source.card["name"].replace(f"unet{source.config.base_channels}", f"unet{base_channels}")
    notes = (f"{source.model_id} widened from {source.config.base_channels} to {base_channels} channels "
             f"(function-preserving up to the symmetry-breaking noise). The source: {source.card.get('notes', '')}")
    threshold, floor = inherited_reading(source.card, source.model_id)
    card = ModelCard(name=name, version=version, config=config, training=training, notes=notes,
                     threshold=threshold, contrast_floor=floor)
    return save_model(network, card, out_dir)
