"""Model files: safetensors weights plus a JSON model card, verified before use.

Weights are safetensors (no pickle, so a model file cannot run code). The card records the
architecture, preprocessing, training data, config, git commit and metrics, and the SHA-256
of the weights; a truncated or tampered file is refused before anything is built from it.
Loading needs no PyTorch with ``framework="numpy"`` (the ONNX Runtime path): the same checks,
the weights as numpy arrays, their names and shapes checked against the card's architecture.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy_file

from . import __version__
from .errors import ModelFileError, OptionError
from .image_io import write_with
from .options import check_threshold
from .preprocessing import CANVAS, CLIP_MAX, LOW_PERCENTILE, PREPROCESSING_VERSION, REFERENCE_PERCENTILE
from .architecture import UNetConfig, parameter_shapes

log = logging.getLogger(__name__)

CARD_FORMAT = "deepwml-model-card/1"
CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
#: The model shipped with the extension (trained on phantoms; see its card).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models" / "default"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(start: Path | None = None) -> str:
    """The repository commit (with '+dirty' for uncommitted changes), or 'unknown'."""
    cwd = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def preprocessing_card() -> dict[str, Any]:
    return {"version": PREPROCESSING_VERSION, "canvas": CANVAS,
            "normalization": "per volume: head 1st percentile -> 0, head median -> 1",
            "low_percentile": LOW_PERCENTILE, "reference_percentile": REFERENCE_PERCENTILE,
            "clip_max": CLIP_MAX, "resampling": "box-average down, bilinear up, aspect kept, zero pad"}


@dataclass
class LoadedModel:
    """A verified model and its card: a PyTorch network, or (``framework="numpy"``) only its
    weights as numpy arrays, for ONNX Runtime inference without PyTorch."""

    network: Any  #: a deepwml.unet.UNet2D, or None when loaded without PyTorch
    card: dict[str, Any]
    path: Path
    #: the verified weights as numpy arrays (None when loaded for PyTorch)
    weights: Optional[Dict[str, np.ndarray]] = None

    @property
    def config(self) -> UNetConfig:
        if self.network is not None:
            return self.network.config
        return UNetConfig.from_dict(self.card["architecture"])

    def numpy_weights(self) -> Dict[str, np.ndarray]:
        """The weights as float numpy arrays, from whichever form was loaded."""
        if self.weights is not None:
            return self.weights
        return {k: v.detach().float().cpu().numpy() for k, v in self.network.state_dict().items()}

    @property
    def model_id(self) -> str:
        return f"{self.card.get('name', 'unnamed')}@{self.card.get('version', '?')}"

    @property
    def threshold(self) -> float:
        return float(self.card.get("threshold", 0.5))

    @property
    def task(self) -> str:
        """What the network segments: ``"lesion"`` (cards without a task), ``"brain"``, ``"white-matter"`` or ``"mesial-temporal"``."""
        return str(self.card.get("task", "lesion"))

    def require_task(self, task: str, refusal: str) -> "LoadedModel":
        """This model, or a one-line :class:`ModelFileError` "MODEL: is a <its task> model<refusal>"
        when it segments something else than ``task`` (a brain-mask model run as the lesion
        model, or the reverse)."""
        if self.task != task:
            raise ModelFileError(self.path, f"is a {self.task} model{refusal}")
        return self


@dataclass
class ModelCard:
    """What :func:`save_model` writes beside the weights."""

    name: str
    version: str
    config: UNetConfig
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    threshold: float = 0.5
    #: the card's ``contrast_floor`` entry (None: no floor); a model made from another inherits its
    #: (:func:`inherited_reading`)
    contrast_floor: dict[str, Any] | None = None
    #: what the network segments: "lesion" (WMH), "brain" (a brain-mask model, deepwml.brain_mask),
    #: "white-matter" (deepwml.white_matter) or "mesial-temporal" (deepwml.mesial_temporal)
    task: str = "lesion"


def inherited_reading(card: Dict[str, Any], model_id: Optional[str]) -> tuple[float, Optional[Dict[str, Any]]]:
    """``(threshold, contrast_floor entry or None)`` that a model made from the model whose card is ``card`` reads its
    output with: a fine-tune (``train --init``), a widened network, a weight average. The floor entry says
    ``inherited_from`` ``model_id``. Why: a threshold and a floor are chosen with the weights they read, and a derived
    model stays close to its source; dropping them (as fine-tunes, widenings and averages did before 2026-12-03) left
    a model read at 0.5 with no floor, marking what its source was made not to. A card without a threshold reads 0.5."""
    floor = card.get("contrast_floor")
    return float(card.get("threshold", 0.5)), None if floor is None else {**floor, "inherited_from": model_id}


def save_model(network: Any, card: ModelCard, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``out_dir``; return the card path."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_NAME
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}
    write_with(weights, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    data = {
        "format": CARD_FORMAT,
        "name": card.name,
        "version": card.version,
        "task": card.task,
        "architecture": card.config.to_dict(),
        "preprocessing": preprocessing_card(),
        "threshold": card.threshold,
        "weights_file": WEIGHTS_NAME,
        "weights_sha256": sha256_of(weights),
        "parameters": sum(v.numel() for v in state.values()),
        "training": card.training,
        "metrics": card.metrics,
        "notes": card.notes,
        "provenance": {"engine_version": __version__, "git_commit": git_commit(),
                       "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
    }
    if card.contrast_floor is not None:
        data["contrast_floor"] = card.contrast_floor
    card_path = out_dir / CARD_NAME
    write_card(data, card_path)
    return card_path


def write_card(card: dict[str, Any], card_path: Path) -> None:
    """Write a model card atomically (the weights it describes are not touched)."""
    write_with(card_path, lambda tmp: tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8"))


def record_in_card(path: str | Path, key: str, value: Any) -> Path:
    """Add ``value`` under ``metrics[key]`` of a model card (weights untouched, so the checksum
    still holds); used to record held-out evaluation results where the model travels."""
    card, card_path = read_card(path)
    card.setdefault("metrics", {})[key] = value
    write_card(card, card_path)
    return card_path


def _card_path(path: Path) -> Path:
    if path.is_dir():
        return path / CARD_NAME
    if path.suffix == ".safetensors":
        return path.with_name(CARD_NAME)
    return path


def read_card(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read and check a model card; ``path`` is the card, its folder or its weights file."""
    card_path = _card_path(Path(path))
    if not card_path.exists():
        raise ModelFileError(card_path, "model card not found (a model is a folder with "
                                        f"{CARD_NAME} and {WEIGHTS_NAME})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(card_path, f"model card is not valid JSON ({err})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelFileError(card_path, f"not a DeepWML model card (format must be {CARD_FORMAT})")
    for key in ("architecture", "weights_file", "weights_sha256"):
        if key not in card:
            raise ModelFileError(card_path, f"model card lacks '{key}'")
    try:
        check_threshold(card.get("threshold", 0.5), "its threshold")
    except OptionError as err:
        raise ModelFileError(card_path, f"model card is invalid: {err.problem}") from None
    return card, card_path


def file_in_model_folder(card_path: Path, name: Any, key: str) -> Path:
    """The file a card names, which must lie inside the card's folder.

    Why: a card is only JSON; ``"weights_file": "../../../../etc/passwd"`` made the loader hash
    a file outside the model (and a card could point at any file the user can read).
    """
    folder = card_path.parent.resolve()
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise ModelFileError(card_path, f"model card's {key} must be a file name inside the model folder, "
                                        f"not {name!r}")
    path = (folder / name).resolve()
    if path.parent != folder and folder not in path.parents:
        raise ModelFileError(card_path, f"model card's {key} {name!r} lies outside the model folder; "
                                        "refusing it")
    return card_path.parent / name


def load_model(path: str | Path | None = None, device: Any = "cpu", framework: str = "torch") -> LoadedModel:
    """Verify the checksum, build the network the card describes and load its weights.

    ``framework="numpy"``: the same verification, but the weights stay numpy arrays and no
    PyTorch is imported (what ONNX Runtime inference needs). ``None`` or ``"bundled"``: the
    shipped model, so every command's ``--model`` takes the word as ``train --init`` does."""
    card, card_path = read_card(DEFAULT_MODEL_DIR if path in (None, "bundled") else path)
    version = card.get("preprocessing", {}).get("version")
    if version != PREPROCESSING_VERSION:
        raise ModelFileError(card_path, f"model was trained with preprocessing version {version}; this "
                                        f"engine implements version {PREPROCESSING_VERSION} (its inputs would "
                                        "differ from what the model learned); retrain or use a matching engine")
    weights = file_in_model_folder(card_path, card["weights_file"], "weights_file")
    if not weights.exists():
        raise ModelFileError(weights, "weights file named by the model card is missing")
    actual = sha256_of(weights)
    if actual != card["weights_sha256"]:
        raise ModelFileError(weights, "SHA-256 does not match the model card: the file is "
                                      "truncated, corrupted or was altered; refusing to load it")
    try:
        config = UNetConfig.from_dict(card["architecture"])
        state = load_numpy_file(str(weights))
    except (SafetensorError, ValueError, KeyError, OSError) as err:
        raise ModelFileError(weights, f"cannot be read as model weights ({err})") from None
    misfit = _shape_misfit(state, parameter_shapes(config))
    if misfit:
        raise ModelFileError(weights, f"weights do not fit the architecture in the card ({misfit})")
    log.debug("loaded %s from %s", card.get("name"), card_path)
    if framework == "numpy":
        return LoadedModel(None, card, card_path, state)
    import torch

    from .unet import UNet2D

    network = UNet2D(config)
    network.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    network.eval().to(device)
    return LoadedModel(network, card, card_path)


def _shape_misfit(state: Dict[str, np.ndarray], expected: Dict[str, tuple]) -> str:
    """A one-line description of missing, unexpected or misshapen tensors ('' when they fit)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            return f"size mismatch for {name}: {tuple(state[name].shape)} in the file, {tuple(shape)} in the card"
    return ""
