"""Many volumes on one machine: reading, the network and writing overlap, in bounded memory.

Why: segmenting one volume after another leaves the network idle while a file is read,
normalised and resampled, and again while the results are resampled back and written (on the
project's 2-core CPU about a third of a 24x512x512 volume's time). Here one thread reads and
prepares the next volumes, the calling thread keeps the network busy, and one thread maps the
results back and writes them. Queues between the stages hold at most ``depth`` volumes each,
so memory does not grow with the number of inputs. Each stage handles volumes in input order,
so results and their report lines come in input order, and every volume goes through the very
functions :func:`deepwml.pipeline.segment_file` uses: results are identical to the
sequential path (tested).

A bad input (any :class:`~deepwml.errors.DeepWMLError`) is reported for that input and the
batch goes on; anything else (a bug, Ctrl-C, SIGTERM) stops all stages and is raised in the
calling thread after the writer has finished (and published or discarded) the case it holds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Optional, Sequence

from .errors import DeepWMLError
from .image_io import load_flair
from .pipeline import plan_outputs, write_outputs
from .segmenter import Segmenter

log = logging.getLogger(__name__)

#: Volumes each queue between two stages may hold.
QUEUE_DEPTH = 2

#: Called once per input, in input order: (index, input, summary or None, error or None).
DoneCallback = Callable[[int, str, Optional[dict], Optional[DeepWMLError]], None]


@dataclass
class _Case:
    """One input on its way through the stages."""

    index: int
    input: str
    name: Optional[str]
    error: Optional[DeepWMLError] = None
    paths: Any = None
    image: Any = None
    prepared: Any = None
    probabilities: Any = None
    read_s: float = 0.0
    t0: float = 0.0


class _Stop(Exception):
    """Another stage failed or the caller was interrupted."""


def _put(q: "queue.Queue[Any]", item: Any, stop: threading.Event) -> None:
    """Put unless the batch is stopping (never blocks forever on a full queue)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stop()


def _get(q: "queue.Queue[Any]", stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    raise _Stop()


def segment_files(inputs: Sequence[str | Path], out_dir: str | Path, segmenter: Segmenter,
                  on_done: DoneCallback, names: Optional[Sequence[Optional[str]]] = None,
                  threshold: float | None = None, labelmap: bool = False, probabilities: bool = False,
                  overwrite: bool = False, series: Collection[str] = (), depth: int = QUEUE_DEPTH) -> None:
    """Segment ``inputs`` into ``out_dir`` with reading, network and writing overlapped.

    Arguments are those of :func:`deepwml.pipeline.segment_file`; ``names`` (one per input,
    None for the file's own) are the outputs' stems. ``on_done`` gets every input's summary or
    error, in input order, from the writing thread.
    """
    out = Path(out_dir)
    if threshold is not None:
        from .options import check_threshold

        check_threshold(threshold)
    names = list(names) if names is not None else [None] * len(inputs)
    prepared_q: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    result_q: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failures: list[BaseException] = []
    done = object()

    def read_stage() -> None:
        try:
            for index, (path, name) in enumerate(zip(inputs, names)):
                case = _Case(index, str(path), name)
                try:
                    case.paths = plan_outputs(Path(path), out, name, labelmap, probabilities, overwrite)
                    case.t0 = time.perf_counter()
                    case.image = load_flair(Path(path), series)
                    case.read_s = time.perf_counter() - case.t0
                    case.prepared = segmenter.prepare(case.image)
                except DeepWMLError as err:
                    case.error, case.image = err, None
                _put(prepared_q, case, stop)
            _put(prepared_q, done, stop)
        except _Stop:
            pass
        except BaseException as err:  # a bug: stop the batch, raise it in the caller
            failures.append(err)
            stop.set()

    def write_stage() -> None:
        try:
            while True:
                case = _get(result_q, stop)
                if case is done:
                    return
                summary = None
                if case.error is None:
                    try:
                        result = segmenter.finish(case.prepared, case.probabilities, threshold)
                        case.prepared = case.probabilities = None  # free the canvas early
                        summary = write_outputs(Path(case.input), case.paths, case.image, result,
                                                segmenter, case.read_s, case.t0)
                    except DeepWMLError as err:
                        case.error = err
                on_done(case.index, case.input, summary, case.error)
        except _Stop:
            pass
        except BaseException as err:
            failures.append(err)
            stop.set()

    reader = threading.Thread(target=read_stage, name="deepwml-read", daemon=True)
    writer = threading.Thread(target=write_stage, name="deepwml-write", daemon=True)
    reader.start()
    writer.start()
    try:
        while True:
            case = _get(prepared_q, stop)
            if case is not done and case.error is None:
                try:
                    case.probabilities = segmenter.run_network(case.prepared)
                except DeepWMLError as err:
                    case.error = err
            _put(result_q, case, stop)
            if case is done:
                break
        writer.join()
    except _Stop:
        pass
    finally:
        if writer.is_alive() or reader.is_alive():
            stop.set()  # interrupted: let the writer finish or discard the case it holds
        writer.join()
        reader.join()
    if failures:
        raise failures[0]
