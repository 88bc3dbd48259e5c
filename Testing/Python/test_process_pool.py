"""Work shared out over processes: results in task order, refusals as the same one-line
error, no worker started for too little work; training data loaded in parallel are the
tensors loaded serially."""

from __future__ import annotations

import functools
import math
import pickle

import pytest
import torch

from deepwml.errors import DeepWMLError, ManifestError, OptionError
from deepwml.options import check_positive_int
from deepwml.process_pool import map_in_chunks, map_in_processes


def test_results_come_back_in_task_order_whatever_the_workers():
    tasks = [float(v) for v in range(12, 0, -1)]
    expected = [math.sqrt(v) for v in tasks]
    assert map_in_processes(math.sqrt, tasks, 2, "t", "x", progress=False) == expected
    assert map_in_processes(math.sqrt, tasks, 1, "t", "x", progress=False) == expected


def test_a_refusal_in_a_worker_reaches_the_caller_as_the_same_error():
    check = functools.partial(check_positive_int, name="--cases")
    with pytest.raises(OptionError) as caught:
        map_in_processes(check, [3, 2, -1, 4], 2, "t", "x", progress=False)
    with pytest.raises(OptionError) as serial:
        check(-1)
    assert str(caught.value) == str(serial.value)
    error = pickle.loads(pickle.dumps(ManifestError("m.csv", "case x has no label")))
    assert isinstance(error, ManifestError) and isinstance(error, DeepWMLError)
    assert (error.path, error.problem, str(error)) == ("m.csv", "case x has no label", "m.csv: case x has no label")


def test_too_little_work_runs_in_this_process(monkeypatch):
    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker process was started")

    monkeypatch.setattr("deepwml.process_pool.ProcessPoolExecutor", no_pool)
    assert concurrent.futures.ProcessPoolExecutor is not no_pool
    assert map_in_processes(abs, [-1, -2, -3], 4, "t", "x", progress=False, min_tasks_per_worker=2) == [1, 2, 3]
    # "one per core" (0) with fewer items than a worker is worth: still this process
    assert map_in_chunks(_chunk_sums, [1, 2], (10,), 0, "t", "x", progress=False, min_items_per_worker=3) == [11, 12]


def _chunk_sums(task: tuple[list[int], int]) -> list[int]:
    chunk, offset = task
    return [v + offset for v in chunk]


def test_chunks_come_back_joined_in_item_order():
    items = list(range(23))
    assert map_in_chunks(_chunk_sums, items, (100,), 2, "t", "x", progress=False) == [v + 100 for v in items]


def test_training_cases_load_the_same_in_parallel(phantom_set, monkeypatch):
    from deepwml.training import dataset
    from deepwml.training.manifest import read_manifest

    cases = read_manifest(phantom_set)[:4]
    serial = dataset.load_canvas_cases(cases, workers=1, progress=False)
    monkeypatch.setattr(dataset, "CASES_PER_WORKER", 1)
    parallel = dataset.load_canvas_cases(cases, workers=2, progress=False)
    assert [c.case.case for c in parallel] == [c.case for c in cases]
    for a, b in zip(serial, parallel):
        assert a.images.dtype == torch.float16 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    one = dataset.load_canvas_case(cases[0])
    assert torch.equal(one.images, serial[0].images)


def test_phantoms_in_worker_processes_are_the_serial_phantoms(tmp_path, monkeypatch):
    from deepwml.phantom import generator

    serial = generator.generate_dataset(tmp_path / "serial", 2, seed=3, progress=False, workers=1)
    monkeypatch.setattr(generator, "CASES_PER_WORKER", 1)
    parallel = generator.generate_dataset(tmp_path / "parallel", 2, seed=3, progress=False, workers=2)
    assert serial.read_text() == parallel.read_text()
    files = sorted(p.relative_to(serial.parent) for p in serial.parent.rglob("*.nii.gz"))
    assert len(files) == 8
    for name in files:
        assert (serial.parent / name).read_bytes() == (parallel.parent / name).read_bytes(), name
