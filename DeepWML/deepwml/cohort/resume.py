"""Which cases of a cohort are already done: their summary is the proof.

Why the summary: a case's files are published with its summary written last (see
:mod:`.task`), so a summary that parses, names this input, this model's weights and these
settings, next to the files it lists, means the case finished. Anything else (a worker killed
mid-case, a corrupted or hand-edited summary, another model) is redone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..pipeline import OutputPaths


def _problem(summary: Any, outputs: OutputPaths, input_path: str, weights: tuple[str, ...],
             fingerprint: dict[str, Any]) -> str:
    if not isinstance(summary, dict):
        return "its summary is not a JSON object"
    if summary.get("input") != input_path:
        return f"its summary names another input ({summary.get('input')})"
    model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
    if model.get("weights_sha256") not in weights:
        return f"it was segmented with other model weights ({model.get('id')})"
    cohort = summary.get("cohort") if isinstance(summary.get("cohort"), dict) else {}
    if cohort.get("settings") != fingerprint:
        return "it was segmented with other settings"
    for path in (outputs.segmentation, outputs.labelmap, outputs.probabilities):
        if path is not None and (not path.is_file() or path.stat().st_size == 0):
            return f"{path.name} is missing or empty"
    return ""


def finished_summary(outputs: OutputPaths, input_path: str, weights: tuple[str, ...],
                     fingerprint: dict[str, Any]) -> tuple[Optional[dict[str, Any]], str]:
    """The case's summary if the case is verifiably done, else None and why it must be (re)run.
    ``weights``: the SHA-256 of the lesion model's weights and, with a thin-slice model, of its
    weights (a thin volume's summary names the thin model; the fingerprint names both)."""
    path: Path = outputs.summary
    if not path.exists():
        return None, ""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"its summary {path.name} cannot be read ({type(err).__name__})"
    problem = _problem(summary, outputs, input_path, weights, fingerprint)
    return (None, problem) if problem else (summary, "")
