"""What a Dask worker runs for one case: segment into a private folder, then publish.

Why a private staging folder: a worker can die at any instruction (out of memory, a node
lost, a killed job). ``segment_file`` already publishes a case's files together, but its hidden
temporaries would stay beside the outputs; here it writes into
``ROOT/.deepwml-staging/<random>/``, which the client removes, and the case's files are then
moved to their final names with the summary written **last**. A summary therefore exists only
for a complete case, and the scheduler's retry (on another worker) redoes an interrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import DeepWMLError
from ..output_files import write_with
from ..pipeline import OutputPaths, segment_file
from .settings import CohortSettings

log = logging.getLogger(__name__)

#: Test hook: when this environment variable names a file, the first worker that removes the
#: file during a case's inference exits at once (``os._exit``), as a killed worker would.
CRASH_ONCE_ENV = "DEEPWML_COHORT_CRASH_ONCE"

#: One Segmenter per settings per worker process: the model is loaded once, not per case.
_segmenters: dict[tuple[Any, ...], Any] = {}
_segmenters_lock = threading.Lock()


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs for one case (picklable; paths valid on every worker)."""

    input: str
    outputs: OutputPaths
    staging: str
    settings: CohortSettings
    #: SHA-256 of the lesion model's weights, then of the thin-slice model's (when there is one)
    weights: tuple[str, ...]
    #: Recorded in the summary: ``cohort.settings`` for resume, BIDS sidecar keys for BIDS.
    summary_extra: dict[str, Any] = field(default_factory=dict)


def cached_segmenter(settings: CohortSettings, weights: tuple[str, ...]) -> Any:
    """This worker's Segmenter for ``settings`` (built on first use, then reused), refused in one
    line when its models' weights are not the client's ``weights`` (see :class:`CaseJob`)."""
    from ..contrast_floor import floor_setting
    from ..segmenter import Segmenter

    key = settings.segmenter_key()
    with _segmenters_lock:
        if key not in _segmenters:
            try:
                _segmenters[key] = Segmenter(settings.model, device=settings.device, precision=settings.precision,
                                             batch_size=settings.batch_size, flip_tta=settings.tta,
                                             head_crop=settings.head_crop, backend=settings.backend,
                                             thin_slab_mm=settings.thin_slab_mm,
                                             brain_model=settings.brain_model,
                                             brain_margin_mm=settings.brain_margin_mm,
                                             thin_model=settings.thin_model,
                                             thin_slab_sliding=settings.thin_slab_sliding,
                                             contrast_floor=floor_setting(settings.contrast_floor),
                                             white_matter_model=settings.white_matter_model,
                                             mesial_temporal_model=settings.mesial_temporal_model)
            except RuntimeError as err:  # e.g. CUDA requested on a worker without a GPU
                raise DeepWMLError(None, f"worker {socket.gethostname()}: {err}") from None
        segmenter = _segmenters[key]
    here = [segmenter.model] + ([segmenter.thin_model] if segmenter.thin_model is not None else [])
    if tuple(m.card.get("weights_sha256") for m in here) != tuple(weights):
        differ = next((m for m, w in zip(here, weights) if m.card.get("weights_sha256") != w), here[-1])
        raise DeepWMLError(differ.path, f"on worker {socket.gethostname()} this model's weights differ "
                                        "from the client's; give every worker the same --model and --thin-model")
    return segmenter


def _crash_hook() -> Optional[Any]:
    """The progress callback that simulates a worker killed mid-case (tests only)."""
    armed = os.environ.get(CRASH_ONCE_ENV)
    if not armed:
        return None

    def progress(done: int, total: int) -> None:
        try:
            os.unlink(armed)
        except FileNotFoundError:
            return
        Path(f"{armed}.crashed").write_text(f"{os.getpid()}\n", encoding="utf-8")
        log.warning("%s is set: this worker exits now, mid-case", CRASH_ONCE_ENV)
        os._exit(70)
    return progress


def _publish(staged: OutputPaths, final: OutputPaths, summary: dict[str, Any]) -> dict[str, Any]:
    """Move the staged files to their final names, then write the final summary last."""
    final.summary.unlink(missing_ok=True)  # a stale summary must not vouch for new files
    final.segmentation.parent.mkdir(parents=True, exist_ok=True)
    for key in ("segmentation", "labelmap", "probabilities"):
        source, target = getattr(staged, key), getattr(final, key)
        if target is not None:
            os.replace(source, target)
        summary[key] = str(target) if target is not None else None
    text = json.dumps(summary, indent=2) + "\n"
    write_with(final.summary, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return summary


def run_case(job: CaseJob) -> dict[str, Any]:
    """Segment one case and publish it; return ``{"summary": ...}`` or ``{"error": reason}``.

    A bad input (a :class:`DeepWMLError`) is an answer, not a failure of the task: it is
    returned so the cohort goes on and the table lists it. Anything else is raised, so the
    scheduler retries the case (see ``retries`` in :mod:`.runner`).
    """
    staging = Path(job.staging) / uuid.uuid4().hex
    try:
        segmenter = cached_segmenter(job.settings, job.weights)
        staging.mkdir(parents=True)
        want = job.settings
        summary = segment_file(job.input, staging, segmenter, want.threshold, job.outputs.labelmap is not None,
                               want.probabilities, name="case", series=want.series, progress=_crash_hook())
        staged = OutputPaths.for_case(staging, "case", job.outputs.labelmap is not None, want.probabilities)
        summary.update(job.summary_extra)
        summary["cohort"] = {**summary.get("cohort", {}), "worker": f"{socket.gethostname()}:{os.getpid()}"}
        return {"summary": _publish(staged, job.outputs, summary)}
    except DeepWMLError as err:
        reason = err.problem if err.path == job.input else str(err)
        return {"error": reason}
    except OSError as err:  # publishing: the output folder vanished, a full disk, permissions
        return {"error": f"{job.outputs.summary.parent}: outputs could not be published ({err.strerror or err})"}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
