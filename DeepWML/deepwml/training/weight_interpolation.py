"""Interpolating a model and its own fine-tune, weight by weight (WiSE-FT, Wortsman et al., CVPR 2022).

Why: a fine-tune on new data can gain where the data is new (synthesis v4's faint lesions, on real
MS scans) and lose what the base did well (light loads). A base and its own fine-tune share one
basin of the loss, so their weighted average is itself a good network that often keeps most of
both -- one network of the same size, so inference costs nothing more. Only a fine-tune of this
very base qualifies (its card's ``initialised_from`` must name the base's weights): averaging
unrelated networks gives noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model_files import LoadedModel, ModelCard, load_model, save_model


def interpolated_state(base: dict[str, Any], tuned: dict[str, Any], alpha: float) -> dict[str, Any]:
    """``(1 - alpha) * base + alpha * tuned`` for every floating-point tensor (batch-norm
    statistics included); integer buffers (batch counters) are the fine-tune's."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], not {alpha}")
    if base.keys() != tuned.keys():
        raise ValueError("the two networks have different tensors")
    return {k: (tuned[k] if not v.is_floating_point() else (1 - alpha) * v + alpha * tuned[k])
            for k, v in base.items()}


def check_fine_tune_of(base: LoadedModel, tuned: LoadedModel) -> None:
    """Refuse a pair that is not a base and its own fine-tune (same architecture and
    preprocessing, fine-tune initialised from exactly these base weights)."""
    for key in ("architecture", "preprocessing"):
        if base.card[key] != tuned.card[key]:
            raise ValueError(f"{tuned.path}: its {key} differs from {base.path}'s")
    init = tuned.card.get("training", {}).get("initialised_from", {})
    if init.get("weights_sha256") != base.card["weights_sha256"]:
        raise ValueError(f"{tuned.path}: not fine-tuned from {base.model_id}'s weights (its card's "
                         f"initialised_from names {init.get('model', 'no model')})")


def interpolate_models(base_dir: str | Path, tuned_dir: str | Path, alpha: float, out_dir: str | Path,
                       version: str) -> Path:
    """Write the interpolated model (card with both models' IDs, weight checksums and ``alpha``;
    the fine-tune's threshold until one is chosen) into ``out_dir``; return its card path."""
    base, tuned = load_model(base_dir), load_model(tuned_dir)
    check_fine_tune_of(base, tuned)
    network = base.network
    network.load_state_dict(interpolated_state(base.network.state_dict(), tuned.network.state_dict(), alpha))
    training = {"weight_interpolation": {
        "method": "WiSE-FT: (1 - alpha) * base + alpha * fine-tune, every floating-point tensor",
        "alpha": alpha,
        "base": {"model": base.model_id, "weights_sha256": base.card["weights_sha256"]},
        "fine_tune": {"model": tuned.model_id, "weights_sha256": tuned.card["weights_sha256"],
                      "training": tuned.card.get("training", {})}}}
    notes = (f"Weights interpolated between {base.model_id} (weight {1 - alpha:g}) and its fine-tune "
             f"{tuned.model_id} (weight {alpha:g}). The fine-tune: {tuned.card.get('notes', '')}")
    card = ModelCard(name=tuned.card["name"], version=version, config=network.config, training=training,
                     notes=notes, threshold=float(tuned.card.get("threshold", 0.5)))
    return save_model(network, card, out_dir)
