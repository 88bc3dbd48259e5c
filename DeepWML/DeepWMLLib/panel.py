"""What the two panels show and which buttons are live, computed without Qt.

The widgets only copy these values onto widgets, so the panel's behaviour is tested here
without the application (the tests cannot start Slicer's Qt).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models" / "default"


def read_card(model_dir: Optional[str]) -> dict:
    """The model card (``model.json``) without loading weights (works before torch is installed)."""
    path = Path(model_dir) if model_dir else BUNDLED_MODEL_DIR
    try:
        return json.loads((path / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def model_line(model_dir: Optional[str]) -> str:
    """One line: which model, and what it was trained on (from its card's notes)."""
    card = read_card(model_dir)
    if not card:
        return f"Model: cannot read {Path(model_dir or BUNDLED_MODEL_DIR) / 'model.json'}"
    origin = "bundled" if not model_dir else "your model"
    notes = (card.get("notes") or "").strip()
    trained_on = notes.split(":")[0].split(". ")[0].strip() if notes else "training data not recorded in its card"
    line = f"Model: {card.get('name', '?')} {card.get('version', '')} ({origin}). {trained_on}."
    parent = card.get("metrics", {}).get("threshold_selection", {}).get("inherited_from")
    floor_parent = (card.get("contrast_floor") or {}).get("inherited_from")
    if parent:  # a fine-tune reads its output as the model it started from (deepwml.model_files.inherited_reading)
        line += f" Threshold and contrast floor as {parent}."
    elif floor_parent:  # ... until its own threshold is chosen on its validation cases (deepwml choose-threshold)
        line += f" Threshold chosen on its validation cases; contrast floor as {floor_parent}."
    text = notes.lower()
    if "synthetic" in text or "phantom" in text:
        line += " Not validated on patients: check every result."
    return line


def result_line(summary: dict) -> str:
    """Where the result went and why, what it holds, and how it was computed; then, one per
    line, the model's measured limits that apply to this result (deepwml.known_limits)."""
    lesions = summary.get("lesion_count", 0)
    parts = [f"{summary.get('total_volume_ml', 0.0):.2f} ml in {lesions} lesion{'s' if lesions != 1 else ''}",
             f"→ {summary.get('node', '?')} ({summary.get('reason', '')})",
             f"threshold {summary.get('threshold', 0.5):g}"]
    brain = summary.get("brain_mask")
    if brain:
        parts.append(f"{brain['removed_ml']:.2f} ml outside the brain removed" if brain.get("applied")
                     else "brain mask not applied (see the log)")
    white = summary.get("white_matter")
    if white:  # deepwml.white_matter: marks away from the white matter are not white-matter hyperintensities
        parts.append(f"{white['removed_ml']:.2f} ml away from the white matter removed" if white.get("applied")
                     else "white-matter restriction not applied (see the log)")
        mesial = white.get("mesial_temporal")  # deepwml.mesial_temporal: the hippocampus and amygdala hold no WMH
        if mesial:
            parts.append(f"{mesial['removed_ml']:.2f} ml on the hippocampus/amygdala removed" if mesial.get("applied")
                         else "hippocampus/amygdala exclusion not applied (see the log)")
    floor = summary.get("contrast_floor")
    if floor:  # deepwml.contrast_floor: marks no brighter than the scan's white matter are not hyperintensities
        parts.append(f"marks below {floor['factor']:g}x white matter removed" if floor.get("white_matter_level")
                     else f"contrast floor not applied ({floor.get('not_applied') or 'see the log'})")
    fallback = summary.get("int8_fallback")
    if fallback:  # deepwml.onnx_int8.INT8_INPUT_OVERFLOW_SHARE: int8 loses marks on heads this bright
        parts.append(f"int8 asked, float32 ran: {100 * fallback['head_share_above_input_range']:.1f} % of the head "
                     "beyond the int8 graph's range")
    if "seconds" in summary:
        how = summary.get("backend", "?") + (", int8" if summary.get("precision") == "int8" else "")
        parts.append(f"{summary['seconds']:.1f} s on {summary.get('device', '?')} ({how})")
    return "\n".join(["; ".join(parts)] + [f"Caution: {c['text']}" for c in summary.get("cautions") or []])


def outcome_line(status: str, detail: str = "") -> str:
    """The result line for a run that did not produce a result."""
    if status == "cancelled":
        return "Cancelled: nothing was written."
    return f"Failed: {detail}" if detail else "Failed: see the log below."


def button_states(has_input: bool, running: bool, has_result: bool, has_probabilities: bool) -> Dict[str, bool]:
    return {"segment": has_input and not running, "cancel": running,
            "show3D": has_result and not running, "segmentEditor": has_result and not running,
            "threshold": not running, "rethreshold": has_probabilities and not running}


def lesion_rows(table: List[dict]) -> List[List[str]]:
    """Rows of the per-lesion table: number, volume (ml), slice range."""
    rows = []
    for row in table:
        first, last = row["first_slice"], row["last_slice"]
        rows.append([str(row["lesion"]), f"{row['volume_ml']:.3f}",
                     f"{first}" if first == last else f"{first}–{last}"])
    return rows


# --- DeepWMLTraining ---------------------------------------------------------------------------
#: Measured on this project's 2-core CPU: 6.7 s per batch of 8 at width 64 (README, width study).
CPU_SECONDS_PER_STEP_WIDTH64 = 6.7


def work_paths(work_dir: str) -> Dict[str, Path]:
    work = Path(work_dir)
    return {"consensus": work / "consensus", "consensus_manifest": work / "consensus" / "consensus_manifest.csv",
            "relabel": work / "consensus" / "relabel.csv", "run": work / "run", "model": work / "run" / "model",
            "evaluation": work / "evaluation", "report": work / "evaluation" / "report.html"}


def check_work_dir(work_dir: str) -> Optional[str]:
    """Why ``work_dir`` cannot be used (None when it can). An empty path would mean Slicer's
    current directory, so it is refused rather than guessed."""
    if not work_dir or not work_dir.strip():
        return "choose a work folder"
    if not os.path.isabs(work_dir):
        return "the work folder must be an absolute path"
    if os.path.exists(work_dir) and not os.path.isdir(work_dir):
        return f"{work_dir} is a file, not a folder"
    return None


def training_steps(manifest: str, work_dir: str, running: bool, custom_model: Optional[str]) -> Dict[str, tuple]:
    """``step -> (enabled, why not / what it will use)`` for the four steps and the extras."""
    problem = check_work_dir(work_dir)
    if not manifest or not os.path.exists(manifest):
        problem = problem or "choose a manifest (manifest.csv) or a MICCAI WMH folder"
    busy = "a job is running; cancel it or wait" if running else None
    paths = work_paths(work_dir) if not check_work_dir(work_dir) else {}
    trained = bool(paths) and (paths["model"] / "model.json").exists()
    consensus_done = bool(paths) and paths["consensus_manifest"].exists()
    blocked = busy or problem
    return {
        "consensus": (blocked is None, blocked or "inter-rater Dice per case; below 0.85 goes back for re-labelling"),
        "train": (blocked is None, blocked or ("trains on the consensus labels" if consensus_done
                                               else "trains on the manifest's labels (no consensus run yet)")),
        "evaluate": (blocked is None, blocked or ("evaluates your trained model" if trained
                                                  else "evaluates the bundled model (nothing trained yet)")),
        "use": (trained and busy is None, busy or ("makes DeepWML use the trained model" if trained
                                                   else "train a model first")),
        "revert": (custom_model is not None and busy is None,
                   "DeepWML already uses the bundled model" if custom_model is None else (busy or "use the bundled model again")),
        "cancel": (running, "no job is running" if not running else "stops the job and every process it started"),
    }


def training_precision_args(requested: bool, device: str, cpu_has_fast_bf16: Callable[[], bool]) -> Tuple[List[str], str]:
    """The ``deepwml train`` precision options for the "faster bf16 training" box, and a line for
    the log. Why opt-in and checked here: bf16 steps are 2.7x faster on CPUs with native bf16
    (AVX512-BF16/AMX) but ~100x slower on the others, and a default must not depend on the host;
    on a GPU training uses bf16 anyway. ``cpu_has_fast_bf16`` is only called when it matters
    (it imports PyTorch)."""
    if not requested:
        return [], ""
    if device == "cuda":
        return [], "bf16: training on the GPU uses bf16 already"
    if not cpu_has_fast_bf16():
        return [], "bf16 not used: this CPU has no native bf16 (it would be ~100x slower); training in float32"
    return ["--precision", "bf16"], "bf16 autocast on this CPU (native AVX512-BF16/AMX): ~2.7x faster steps"


def training_estimate(epochs: int, steps_per_epoch: int, width: int, device: str) -> str:
    """A rough time for training, labelled with where the figure comes from."""
    steps = epochs * max(steps_per_epoch, 1)
    if device == "cuda":
        return f"{steps} batches on the GPU: no GPU timing has been measured for this project yet"
    seconds = steps * CPU_SECONDS_PER_STEP_WIDTH64 * (width / 64.0) ** 2
    hours = seconds / 3600.0
    when = f"about {hours:.1f} h" if hours >= 1 else f"about {seconds / 60.0:.0f} min"
    return (f"{steps} batches on the CPU: {when} (measured 6.7 s per batch of 8 at width 64 on a 2-core CPU, "
            "scaled by width²)")
