"""Which model DeepWML uses, kept in 3D Slicer's application settings.

Inside Slicer the store is ``qt.QSettings()`` (key ``DeepWML/ModelPath``), so the choice follows
the user's Slicer profile like every other module setting. Without the application (tests,
batch) any object with QSettings' ``value``/``setValue``/``remove`` works, and
:func:`default_store` falls back to the engine's JSON settings file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

MODEL_KEY = "DeepWML/ModelPath"


class JsonStore:
    """QSettings-like store over the engine's per-user settings file (no Qt)."""

    @staticmethod
    def _read() -> dict:
        import json

        from deepwml.user_settings import settings_path

        try:
            return json.loads(settings_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def value(self, key: str, default=None):
        return self._read().get(key, default)

    def setValue(self, key: str, value) -> None:
        self._write(key, value)

    def remove(self, key: str) -> None:
        self._write(key, None)

    def _write(self, key: str, value) -> None:
        import json

        from deepwml.user_settings import settings_path

        data = self._read()
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        path = settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


class MemoryStore(dict):
    """QSettings' ``value``/``setValue``/``remove`` over a dict (self-tests leave the user's settings alone)."""

    def value(self, key: str, default=None):
        return self.get(key, default)

    def setValue(self, key: str, value) -> None:
        self[key] = value

    def remove(self, key: str) -> None:
        self.pop(key, None)


def default_store():
    """Slicer's settings inside the application, the JSON file elsewhere."""
    try:
        import slicer

        if hasattr(slicer, "app"):
            import qt

            return qt.QSettings()
    except ImportError:
        pass
    return JsonStore()


class ModelChoice:
    """The model folder the user chose (None: the bundled model)."""

    def __init__(self, store=None) -> None:
        self.store = store if store is not None else default_store()

    def current(self) -> Optional[str]:
        value = self.store.value(MODEL_KEY, "")
        value = str(value) if value else ""
        return value if value and Path(value, "model.json").exists() else None

    def use(self, model_dir: str) -> str:
        """Verify ``model_dir`` (loads it: weights hash, architecture) and remember it."""
        from deepwml.model_files import load_model

        if not model_dir:
            raise ValueError("no model folder given")
        load_model(model_dir)  # raises ModelFileError; a bad model is never stored
        resolved = str(Path(model_dir).resolve())
        self.store.setValue(MODEL_KEY, resolved)
        return resolved

    def revert(self) -> None:
        """Back to the bundled model."""
        self.store.remove(MODEL_KEY)
