"""Run a cohort on a Dask cluster: plan, skip what is done, submit, collect one table.

Why this shape: the client decides everything that needs no image (names, resume checks, the
model's identity) before a worker starts, so a bad model or output folder stops the run in one
line; workers only segment. At most a few tasks per worker thread are in flight, so the
client's and the scheduler's memory stay bounded whatever the cohort's size, and a worker
that dies takes no finished case with it (see :mod:`.task`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from asyncio import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..errors import DeepWMLError
from ..output_folder import owned_output_folder
from .inputs import CohortInput, CohortInputError, bids_inputs, flat_inputs
from .layout import bids_sidecar, case_outputs, cohort_root, write_dataset_description
from .resume import finished_summary
from .settings import CohortSettings, ModelIdentity, model_identity
from .table import DONE_BEFORE, FAILED, OK, failed_row, summary_row, write_table
from .task import CaseJob, run_case

log = logging.getLogger(__name__)

#: A folder holding this file was made by ``deepwml cohort`` and is resumed, not refused.
MARKER = ".deepwml-cohort"
#: Per-attempt private folders of the workers (removed at the start and end of every run).
STAGING = ".deepwml-staging"
#: Retries of a case whose task raised (not a bad input, which is an answer): a lost
#: connection, a transient file-system error. A worker's death is retried by the scheduler
#: itself, up to ``distributed.scheduler.allowed-failures`` (3) times.
RETRIES = 2
NOT_FINISHED = "not finished: the run was interrupted or its cluster failed; run the command again to resume"


@dataclass
class CohortResult:
    """The table's rows and where the table and outputs are."""

    rows: list[dict[str, Any]]
    root: Path
    csv: Path
    parquet: Optional[Path]

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def exit_code(self) -> int:
        """0 every case done, 1 some failed, 2 none could be segmented (as ``deepwml segment``)."""
        failed = self.count(FAILED)
        if failed == len(self.rows):
            return 2
        return 1 if failed else 0


def default_workers(threads: int, jobs: int) -> int:
    """One worker process per ``threads`` CPU cores, never more workers than cases."""
    return max(1, min(jobs, (os.cpu_count() or 1) // max(1, threads)))


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int, threads: int) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new local cluster of worker processes.

    Worker processes (not threads) keep a crash in a native library from taking the client
    down, and give each worker its own memory limit (Dask's nanny restarts a worker beyond it).
    """
    from distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # Dask's INFO lines (workers starting, ...) are noise here
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as err:
            raise DeepWMLError(scheduler, f"cannot reach the Dask scheduler ({err})") from None
        with client:
            yield client
        return
    # Dask starts workers with OMP_NUM_THREADS=1 (one core per task thread); cores the
    # workers x threads leave idle go to each case's network instead (1 worker on 2 cores: 2).
    # A thread count the user set in the environment is kept.
    per_task = str(max(1, (os.cpu_count() or 1) // (workers * threads)))
    with _environ({name: per_task for name in THREAD_VARIABLES if name not in os.environ}), \
            LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=":0",
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


#: Thread counts of the numeric libraries, set for the worker processes of a local cluster.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment for the block, then put back what was there.

    Why: Dask's nanny spawns workers with this process's environment, taking variables that
    are already set over its own defaults, and writes its defaults into ``os.environ`` for good.
    """
    saved = {name: os.environ.get(name) for name in (*values, *THREAD_VARIABLES, "MALLOC_TRIM_THRESHOLD_")}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _plan(items: list[CohortInput], root: Path, bids: bool, settings: CohortSettings, model: ModelIdentity,
          thin: ModelIdentity | None, overwrite: bool, staging: Path
          ) -> tuple[list[dict[str, Any]], dict[int, CaseJob]]:
    """Rows for every input (done-before, failed, or placeholders) and the jobs still to run."""
    fingerprint = settings.fingerprint(model.threshold, thin)
    weights = (model.weights_sha256,) + (() if thin is None else (thin.weights_sha256,))
    rows: list[dict[str, Any]] = []
    jobs: dict[int, CaseJob] = {}
    owners: dict[Path, Path] = {}
    for i, item in enumerate(items):
        outputs = case_outputs(root, item, bids, settings.labelmap, settings.probabilities)
        clash = owners.setdefault(outputs.summary, item.path)
        if item.problem or clash != item.path:
            rows.append(failed_row(item, item.problem or f"has the same output names as {clash}"))
            continue
        source = str(item.path.resolve())
        summary, why = (None, "") if overwrite else finished_summary(outputs, source, weights,
                                                                    fingerprint)
        if summary is not None:
            rows.append(summary_row(item, outputs, DONE_BEFORE, summary))
            continue
        if why:
            log.warning("%s: segmenting it again: %s", item.path, why)
        extra = {"cohort": {"settings": fingerprint}, **(bids_sidecar(item) if bids else {})}
        jobs[i] = CaseJob(source, outputs, str(staging), settings, weights, extra)
        rows.append(failed_row(item, NOT_FINISHED))
    return rows, jobs


def _outcome(future: Any) -> dict[str, Any]:
    """The task's answer, or a one-line reason when the task itself did not finish."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        return {"error": "every worker that segmented it died (out of memory or a crash); see the workers' logs"}
    except (Exception, CancelledError) as err:  # raised by the task after its retries, or by the cluster
        first = (str(err).strip().splitlines() or [""])[0]
        return {"error": f"{type(err).__name__}: {first}" if first else type(err).__name__}


def _run_jobs(client: Any, items: list[CohortInput], jobs: dict[int, CaseJob], rows: list[dict[str, Any]],
              progress: bool) -> None:
    """Submit ``jobs`` with a bounded number in flight and fill in their rows as they finish."""
    from distributed import as_completed
    from tqdm import tqdm

    in_flight = 2 * max(1, sum(client.nthreads().values())) + 2
    queue = iter(jobs.items())
    index: dict[Any, int] = {}
    finished = as_completed()

    def submit_next() -> None:
        for i, job in queue:
            key = f"deepwml-segment-{Path(job.input).name}-{uuid.uuid4().hex[:8]}"
            future = client.submit(run_case, job, key=key, retries=RETRIES, pure=False)
            index[future] = i
            finished.add(future)
            return

    for _ in range(in_flight):
        submit_next()
    with tqdm(total=len(jobs), desc="cohort", unit="volume", disable=not progress) as bar:
        for future in finished:
            i = index.pop(future)
            outcome = _outcome(future)
            future.release()
            outputs = jobs[i].outputs
            rows[i] = (summary_row(items[i], outputs, OK, outcome["summary"]) if "summary" in outcome
                       else failed_row(items[i], outcome["error"]))
            bar.update()
            submit_next()


def run_cohort(inputs: Sequence[str | Path], out: str | Path, settings: CohortSettings = CohortSettings(), *,
               bids: bool = False, workers: int | None = None, threads: int = 1, scheduler: str | None = None,
               overwrite: bool = False, progress: bool = True) -> CohortResult:
    """Segment every input of a cohort into ``out``; resume what an earlier run left undone.

    ``bids``: ``inputs`` is one BIDS dataset root and the outputs form a BIDS-derivatives
    dataset in ``out/derivatives/deepwml``. ``scheduler``: address of a running Dask scheduler
    (inputs, model and ``out`` must be at the same paths on every worker); otherwise a local
    cluster of ``workers`` processes with ``threads`` threads each. ``overwrite`` redoes every
    case. The results table (``cohort.csv``, ``cohort.parquet``) is written even when the run
    is interrupted, with the unfinished cases marked.
    """
    if bids and len(inputs) != 1:
        raise CohortInputError(None, "--bids takes exactly one input: the root folder of the BIDS dataset")
    root = cohort_root(Path(out).absolute(), bids)  # absolute: workers may run in other folders
    items = bids_inputs(inputs[0]) if bids else flat_inputs(inputs, root)
    model, thin = model_identity(settings.model, settings.thin_model)
    with owned_output_folder(root, "cohort", overwrite, resume_marker=MARKER):
        staging = root / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # left by workers of a run that was killed
        if bids:
            write_dataset_description(root, Path(inputs[0]), {**model.record(),
                                                              "thin": None if thin is None else thin.record()})
        rows, jobs = _plan(items, root, bids, settings, model, thin, overwrite, staging)
        log.info("cohort: %d input(s), %d to segment", len(items), len(jobs))
        try:
            if jobs:
                with dask_client(scheduler, workers or default_workers(threads, len(jobs)), threads) as client:
                    _run_jobs(client, items, jobs, rows, progress)
        finally:
            csv, parquet = write_table(root, rows)
            shutil.rmtree(staging, ignore_errors=True)
    return CohortResult(rows, root, csv, parquet)
