"""Independent tasks over worker processes, for the data preparation of training runs.

Synthesis and preprocessing are NumPy/SciPy/SimpleITK code that the GIL and ITK's own threads
use one to two cores of; a 16-core GPU server would otherwise synthesise and load a training
set on one core while the GPU waits. Workers are *spawned* (not forked: the parent may hold
ITK or PyTorch thread pools, which do not survive a fork), each with its share of the cores for
ITK, OpenMP and PyTorch. Results come back in task order, so outputs do not depend on the number of workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """Cores this process may run on (the affinity mask: CI containers and `taskset` limit it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``workers`` as given, 0 meaning one per available core."""
    return workers if workers > 0 else available_cores()


def _init_worker(threads: int, log_level: int) -> None:
    # before the task's modules are imported: PyTorch and OpenMP read these once
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    logging.basicConfig(level=log_level)


def map_in_processes(fn: Callable[[T], R], tasks: Sequence[T], workers: int, desc: str, unit: str,
                     progress: bool = True, sizes: Sequence[int] | None = None,
                     min_tasks_per_worker: int = 1) -> list[R]:
    """``[fn(t) for t in tasks]``, in ``workers`` processes when > 1 (``fn`` must be importable:
    a module-level function). ``sizes``: units per task, for the progress bar (default 1 each).
    ``min_tasks_per_worker``: fewer workers when there is too little work to repay starting one
    (a spawned worker re-imports the engine, ~1-2 s)."""
    sizes = list(sizes) if sizes is not None else [1] * len(tasks)
    bar = tqdm(total=sum(sizes), desc=desc, unit=unit, disable=not progress)
    workers = min(resolve_workers(workers), len(tasks) // max(1, min_tasks_per_worker))
    try:
        if workers <= 1:
            results = []
            for task, size in zip(tasks, sizes):
                results.append(fn(task))
                bar.update(size)
            return results
        threads = max(1, available_cores() // workers)
        log.info("%s: %d tasks in %d processes (%d threads each)", desc, len(tasks), workers, threads)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads, logging.getLogger().level)) as pool:
            futures = [pool.submit(fn, task) for task in tasks]
            results: list[Any] = []
            for future, size in zip(futures, sizes):
                results.append(future.result())
                bar.update(size)
            return results
    finally:
        bar.close()


def map_in_chunks(fn: Callable[[tuple], list], items: Sequence, shared: tuple, workers: int, desc: str,
                  unit: str, progress: bool = True, min_items_per_worker: int = 1) -> list:
    """``fn((chunk, *shared))`` over chunks of ``items``, each call returning a list; the lists
    joined in item order. Serial (too few items, or ``workers`` 1): one item per chunk, so the
    progress bar moves per item; else about four contiguous chunks per worker, so neighbouring
    items (a synthetic subject's cases) share a worker's caches."""
    workers = max(1, min(resolve_workers(workers), len(items) // max(1, min_items_per_worker)))
    size = -(-len(items) // (4 * workers)) if workers > 1 else 1
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    parts = map_in_processes(fn, [(chunk, *shared) for chunk in chunks], workers, desc, unit, progress,
                             sizes=[len(chunk) for chunk in chunks])
    return [row for part in parts for row in part]
