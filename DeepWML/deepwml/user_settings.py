"""Per-user settings shared by the Slicer modules: which trained model DeepWML uses.

A JSON file (``~/.config/deepwml/settings.json``, or ``$DEEPWML_SETTINGS``) rather than Qt
settings, so the modules' logic stays Qt-free and testable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .model_files import load_model


def settings_path() -> Path:
    env = os.environ.get("DEEPWML_SETTINGS")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "deepwml" / "settings.json"


def _read() -> dict:
    path = settings_path()
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def preferred_model() -> str | None:
    """The model folder the user chose, or None for the bundled default."""
    value = _read().get("model_path")
    return value if value and Path(value).exists() else None


def set_preferred_model(model_path: str | None) -> None:
    """Use ``model_path`` from now on (verified by loading it first); None restores the default."""
    if model_path is not None:
        load_model(model_path)  # raises ModelFileError on a bad model; never store one
        model_path = str(Path(model_path).resolve())
    data = _read()
    data["model_path"] = model_path
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
