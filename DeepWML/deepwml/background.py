"""One piece of work on a thread of its own, started now: the segmenter overlaps work that does not depend on
what the main thread is doing (the contrast floor's scan of the input, its flat level, a second network lane).

Why a thread per task rather than a long-lived pool: the thread ends with its one task, so nothing lingers between
volumes or survives, broken, into a forked process that inherited the object that started it; and the task's error
reaches whoever reads the result (``Future.result`` raises it).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


def in_background(task: Callable[..., Any], *args: Any, name: str = "deepwml") -> Future:
    """``task(*args)`` on a new thread named ``name``; its :class:`~concurrent.futures.Future`."""
    pool = ThreadPoolExecutor(1, thread_name_prefix=name)
    future = pool.submit(task, *args)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future
