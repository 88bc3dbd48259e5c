"""Where the shared real data live: ``$DEEPWML_SHARED_DATA``, else ``../shared/data`` beside the
repository (CI and the project machines have them there; a GPU server gets an unpacked copy,
``benchmarks/gpu_bundle.py``, and the variable). Never inside the repository."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the shared data folder.
DATA_ENV = "DEEPWML_SHARED_DATA"


def default_data_root() -> Path:
    """``$DEEPWML_SHARED_DATA``, else ``../shared/data`` relative to this repository."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
