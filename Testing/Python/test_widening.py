"""Function-preserving widening of a trained U-Net (Net2WiderNet): the same logits without noise, a
small change with it, the trainer-readable model folder with its provenance, and refusal to narrow."""

from __future__ import annotations

import numpy as np
import pytest

from deepwml.architecture import UNetConfig, parameter_shapes, reference_logits
from deepwml.model_files import load_model, read_card
from deepwml.training.widening import widen_model, widened_weights


def _random_weights(config: UNetConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled random weights, so the logits keep a trained network's magnitude at any depth."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])) if len(shape) > 1 else 0.1, shape).astype(np.float32)
            for k, shape in parameter_shapes(config).items()}


@pytest.mark.parametrize("depth", [2, 4])
def test_widening_keeps_the_logits_and_the_noise_only_moves_them_a_little(depth):
    config = UNetConfig(base_channels=4, depth=depth)
    weights = _random_weights(config)
    x = np.random.default_rng(1).random((2, 1, 32, 32)).astype(np.float32)
    before = reference_logits(weights, config, x)
    wide, wide_config = widened_weights(weights, config, 7, seed=3, noise=0.0)
    assert wide_config.base_channels == 7 and wide_config.depth == depth
    assert {k: v.shape for k, v in wide.items()} == parameter_shapes(wide_config)
    scale = np.abs(before).max()
    np.testing.assert_allclose(reference_logits(wide, wide_config, x), before, rtol=0, atol=1e-5 * scale)
    noisy, _ = widened_weights(weights, config, 7, seed=3, noise=0.01)
    moved = np.abs(reference_logits(noisy, wide_config, x) - before).max()
    assert 0 < moved < 0.05 * np.abs(before).max()
    # the old channels are kept as they were: the noise touches only the copies
    np.testing.assert_array_equal(noisy["down.0.0.weight"][:4], weights["down.0.0.weight"])


def test_narrowing_is_refused():
    config = UNetConfig(base_channels=8, depth=2)
    with pytest.raises(ValueError, match="cannot widen"):
        widened_weights(_random_weights(config), config, 4)


def test_the_widened_model_folder_loads_and_names_its_source(tiny_model_dir, tmp_path):
    """Same logits, the source named, and the source's threshold and contrast floor kept (they read the same logits)."""
    import shutil

    from deepwml.model_files import write_card

    source_dir = tmp_path / "source"
    shutil.copytree(tiny_model_dir, source_dir)
    card, card_path = read_card(source_dir)
    write_card({**card, "threshold": 0.7, "contrast_floor": {"factor": 1.15, "mode": "voxel"}}, card_path)
    widen_model(source_dir, tmp_path / "wide", 6, "0.0.9", seed=1, noise=0.0)
    source, wide = load_model(source_dir), load_model(tmp_path / "wide")
    assert wide.threshold == 0.7
    assert wide.card["contrast_floor"] == {"factor": 1.15, "mode": "voxel", "inherited_from": source.model_id}
    assert wide.config.base_channels == 6
    x = np.random.default_rng(2).random((1, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(reference_logits(wide.numpy_weights(), wide.config, x),
                               reference_logits(source.numpy_weights(), source.config, x), rtol=1e-4, atol=1e-4)
    card, _ = read_card(tmp_path / "wide")
    origin = card["training"]["widened_from"]
    assert origin["weights_sha256"] == source.card["weights_sha256"] and origin["base_channels"] == [4, 6]
