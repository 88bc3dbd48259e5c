"""The cohort's results table: one row per input, as CSV and Parquet.

Why a fixed set of columns: a statistics script reading ``cohort.parquet`` must see the same
columns and types whether every case succeeded, some failed or all were done by an earlier run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from ..known_limits import caution_codes
from ..output_files import write_csv, write_with
from ..pipeline import OutputPaths, int8_fallback_share
from .inputs import CohortInput

log = logging.getLogger(__name__)

#: Row status: segmented by this run, verified as done by an earlier run, or failed.
OK, DONE_BEFORE, FAILED = "ok", "done-before", "failed"

#: Timings copied from a summary's ``timings_s`` (seconds).
TIMINGS = ("read", "preprocess", "network", "postprocess", "write", "end_to_end")

#: Column -> pandas dtype (nullable, so failed rows keep the numeric columns numeric).
COLUMNS: dict[str, str] = {
    "input": "string", "subject": "string", "session": "string", "status": "string", "error": "string",
    "total_volume_ml": "Float64", "lesion_count": "Int64",
    # the codes of the result's cautions (deepwml.known_limits), ";"-joined: the cases to look at first
    "cautions": "string",
    **{f"time_{k}_s": "Float64" for k in TIMINGS},
    "device": "string", "backend": "string", "precision": "string", "threshold": "Float64",
    # under --precision int8: the share of the head beyond the int8 graph's range where float32 ran (deepwml.onnx_int8)
    "int8_fallback": "Float64",
    "model_id": "string", "weights_sha256": "string", "segmentation": "string", "summary": "string",
    "worker": "string",
}


def _row(item: CohortInput, status: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(input=str(item.path), subject=item.subject, session=item.session, status=status)
    return row


def summary_row(item: CohortInput, outputs: OutputPaths, status: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The row of a finished case, read from its summary."""
    row = _row(item, status)
    row["summary"] = str(outputs.summary)
    timings = summary.get("timings_s", {})
    model = summary.get("model", {})
    row.update(total_volume_ml=summary.get("total_volume_ml"), lesion_count=summary.get("lesion_count"),
               cautions=caution_codes(summary),
               **{f"time_{k}_s": timings.get(k) for k in TIMINGS},
               device=summary.get("device"), backend=summary.get("backend"), precision=summary.get("precision"),
               threshold=summary.get("threshold"), model_id=model.get("id"),
               int8_fallback=int8_fallback_share(summary),
               weights_sha256=model.get("weights_sha256"), segmentation=summary.get("segmentation"),
               worker=summary.get("cohort", {}).get("worker"))
    return row


def failed_row(item: CohortInput, reason: str) -> dict[str, Any]:
    """The row of a case that could not be segmented, with its one-line reason."""
    row = _row(item, FAILED)
    row["error"] = reason
    return row


def write_table(folder: Path, rows: list[dict[str, Any]]) -> tuple[Path, Optional[Path]]:
    """Write ``cohort.csv`` and ``cohort.parquet`` (atomically); return their paths.

    Parquet needs pyarrow (pinned in requirements.txt); without it only the CSV is written,
    with a warning, since the CSV holds the same table.
    """
    csv_path, parquet_path = folder / "cohort.csv", folder / "cohort.parquet"
    write_csv(csv_path, rows, list(COLUMNS))
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        log.warning("pyarrow is not installed: %s not written (the CSV has the same table)", parquet_path)
        return csv_path, None
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)
    write_with(parquet_path, lambda tmp: frame.to_parquet(tmp, index=False))
    return csv_path, parquet_path
