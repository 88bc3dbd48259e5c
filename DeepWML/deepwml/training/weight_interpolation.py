"""Averaging networks of one loss basin, weight by weight: a model and its own fine-tune (WiSE-FT,
Wortsman et al., CVPR 2022), or several fine-tunes of one model (a uniform "model soup", Wortsman
et al., ICML 2022).

Why: a fine-tune on new data can gain where the data is new (synthesis v4's faint lesions, on real
MS scans) and lose what the base did well (light loads). A base and its own fine-tune share one
basin of the loss, so their weighted average is itself a good network that often keeps most of
both -- one network of the same size, so inference costs nothing more. Only a fine-tune of this
very base qualifies (its card's ``initialised_from`` must name the base's weights): averaging
unrelated networks gives noise. Likewise a soup takes only fine-tunes initialised from the same
weights: siblings on different data (synthesis v6 and v7) each gain somewhere, and their average
often keeps both gains at no cost in size or speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model_files import LoadedModel, ModelCard, inherited_reading, load_model, save_model


def interpolated_state(base: dict[str, Any], tuned: dict[str, Any], alpha: float) -> dict[str, Any]:
    """``(1 - alpha) * base + alpha * tuned`` for every floating-point tensor (batch-norm
    statistics included); integer buffers (batch counters) are the fine-tune's."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], not {alpha}")
    return averaged_state([base, tuned], [1 - alpha, alpha])


def averaged_state(states: list[dict[str, Any]], weights: list[float]) -> dict[str, Any]:
    """``sum(w * state)`` for every floating-point tensor (weights summing to 1); integer buffers
    (batch counters) are the last state's."""
    if len(states) != len(weights) or len(states) < 2:
        raise ValueError("need two or more networks, one weight each")
    if any(state.keys() != states[0].keys() for state in states):
        raise ValueError("the networks have different tensors")
    out = {}
    for k, last in states[-1].items():
        out[k] = last if not last.is_floating_point() else sum(w * state[k] for w, state in zip(weights, states))
    return out


def _initialised_from(model: LoadedModel) -> dict[str, Any]:
    """The card's record of the model ``model`` was fine-tuned from ({} when none)."""
    return model.card.get("training", {}).get("initialised_from", {})


def _check_same_network(reference: LoadedModel, other: LoadedModel) -> None:
    """Refuse ``other`` when its architecture or preprocessing differs from ``reference``'s."""
    for key in ("architecture", "preprocessing"):
        if other.card[key] != reference.card[key]:
            raise ValueError(f"{other.path}: its {key} differs from {reference.path}'s")


def check_fine_tune_of(base: LoadedModel, tuned: LoadedModel) -> None:
    """Refuse a pair that is not a base and its own fine-tune (same architecture and
    preprocessing, fine-tune initialised from exactly these base weights)."""
    _check_same_network(base, tuned)
    init = _initialised_from(tuned)
    if init.get("weights_sha256") != base.card["weights_sha256"]:
        raise ValueError(f"{tuned.path}: not fine-tuned from {base.model_id}'s weights (its card's "
                         f"initialised_from names {init.get('model', 'no model')})")


def check_siblings(models: list[LoadedModel]) -> dict[str, Any]:
    """Refuse fine-tunes that do not share architecture, preprocessing and the weights they were
    initialised from; return that common ``initialised_from`` entry."""
    first = models[0]
    parent = _initialised_from(first)
    if not parent.get("weights_sha256"):
        raise ValueError(f"{first.path}: its card names no model it was fine-tuned from")
    for other in models[1:]:
        _check_same_network(first, other)
        if _initialised_from(other).get("weights_sha256") != parent["weights_sha256"]:
            raise ValueError(f"{other.path}: not fine-tuned from the weights {first.path} was fine-tuned from "
                             f"({parent.get('model', '?')})")
    return parent


def reading_of(model: LoadedModel) -> dict[str, Any]:
    """The threshold and contrast floor an average reads its output with until one is chosen: ``model``'s
    (:func:`deepwml.model_files.inherited_reading`), as ``ModelCard`` keywords."""
    threshold, floor = inherited_reading(model.card, model.model_id)
    return {"threshold": threshold, "contrast_floor": floor}


def soup_models(model_dirs: list[str | Path], out_dir: str | Path, version: str) -> Path:
    """Write the uniform average of two or more fine-tunes of one model into ``out_dir`` (card with
    every ingredient's ID, weight checksum and training; the first's threshold and contrast floor until
    one is chosen); return its card path."""
    models = [load_model(d) for d in model_dirs]
    if len(models) < 2:
        raise ValueError("a soup needs two or more models")
    parent = check_siblings(models)
    network = models[0].network
    network.load_state_dict(averaged_state([m.network.state_dict() for m in models], [1 / len(models)] * len(models)))
    training = {"model_soup": {
        "method": "uniform soup: the mean of every floating-point tensor of fine-tunes of one model",
        "initialised_from": parent,
        "ingredients": [{"model": m.model_id, "weights_sha256": m.card["weights_sha256"],
                         "training": m.card.get("training", {})} for m in models]}}
    notes = (f"Uniform weight average of {len(models)} fine-tunes of {parent.get('model', '?')}: "
             + "; ".join(f"{m.model_id}: {m.card.get('notes', '')}" for m in models))
    card = ModelCard(name=models[0].card["name"], version=version, config=network.config, training=training,
                     notes=notes, **reading_of(models[0]))
    return save_model(network, card, out_dir)


def interpolate_models(base_dir: str | Path, tuned_dir: str | Path, alpha: float, out_dir: str | Path,
                       version: str) -> Path:
    """Write the interpolated model (card with both models' IDs, weight checksums and ``alpha``;
    the fine-tune's threshold and contrast floor until one is chosen) into ``out_dir``; return its card path."""
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
                     notes=notes, **reading_of(tuned))
    return save_model(network, card, out_dir)
