"""A per-user record of ONNX graphs already checked against their weights (the cold start, issue 14).

Why: before an ONNX graph runs, :func:`deepwml.onnx_backend.check_reproduces_weights` sends a
fixed probe through it and through a numpy float64 pass of the model's safetensors weights, so
that a graph swapped together with its card is refused. That took ~0.05 s of CPU for the lesion
and brain-mask models together in a one-volume cold start on the 2-core CPU, on every run, for
the same files. The check is a pure function of the graph's and the weights' contents, the
probe, the tolerance and the ONNX Runtime that runs it, so its success is remembered under
exactly those: the graph's and the weights' SHA-256 (both compared with the card at every load,
before this record is consulted), the kind of check (its tolerance and probe) and the
onnxruntime version. An altered or swapped graph has another SHA-256 and is checked, and
refused, as before. The record lives in the user's cache folder (``$DEEPWML_CACHE_DIR``, else
``$XDG_CACHE_HOME/deepwml``, else ``~/.cache/deepwml``); when it cannot be read or written,
every load checks, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

RECORD_NAME = "verified-onnx-graphs.json"
#: Keys kept (oldest dropped): a few models and versions of onnxruntime, never a growing file.
MAX_KEYS = 64


def record_path() -> Path:
    env = os.environ.get("DEEPWML_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepwml"
    return base / RECORD_NAME


def _keys() -> list[str]:
    try:
        keys = json.loads(record_path().read_text(encoding="utf-8"))
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
    except (OSError, ValueError):
        return []


def check_key(*parts: str) -> str:
    """One key for everything a check's outcome depends on."""
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def check_once(key: str, check: Callable[[], object]) -> bool:
    """Run ``check`` (which raises when the graph must be refused) unless a check with this
    ``key`` passed before; remember it when it passes. Returns whether the check ran."""
    if key in _keys():
        return False
    check()
    keys = [k for k in _keys() if k != key][-(MAX_KEYS - 1):] + [key]
    path = record_path()
    try:
        from .output_files import write_with

        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda tmp: tmp.write_text(json.dumps(keys) + "\n", encoding="utf-8"))
    except OSError as err:  # a read-only home: every load checks, as before
        log.debug("could not record the verified graph in %s (%s)", path, err)
    return True
