"""Cohort throughput: volumes per second of ``deepwml cohort`` on a local Dask cluster.

Segments the same N phantoms (default 50, mixed centers: 17-30 slices of 256-512 pixels, as
``deepwml phantom`` draws them) once per cluster shape (workers x threads), each time into a
fresh folder, with the bundled model on the CPU, and prints wall time and volumes/s per shape,
a resumed re-run (every case verified as done, no cluster started), and, with ``--baseline``,
the same volumes one after another in this process (one Segmenter, ``segment_file`` in a loop).
Wall times include starting the cluster and loading the model in every worker: what a user
waits for. Phantoms are written once to ``work-data/cohort-benchmark/phantoms`` and reused.

    .venv/bin/python benchmarks/benchmark_cohort.py [--cases 50] [--shapes 1x2,2x1] [--baseline]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "work-data" / "cohort-benchmark"


def machine() -> str:
    """CPU model, cores, memory and load: what the figures depend on."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kb / 2**20:.0f} GiB RAM"
    load = ", load average %.1f/%.1f/%.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} logical CPUs{memory}{load}, Python {platform.python_version()}"


def phantoms(cases: int, seed: int) -> list[Path]:
    """``cases`` phantom FLAIRs (written on first use, then reused)."""
    import SimpleITK as sitk

    from deepwml.phantom.generator import make_case

    folder = ROOT / "phantoms"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"seed{seed}_case{i:04d}.nii.gz" for i in range(cases)]
    for i, path in enumerate(paths):
        if not path.exists():
            sitk.WriteImage(make_case(i, seed).flair, str(path), True)
    return paths


def run_shape(paths: list[Path], workers: int, threads: int) -> dict:
    """One cohort run into a fresh folder; its wall time and per-volume medians."""
    from deepwml.cohort import CohortSettings, run_cohort

    out = ROOT / f"out-{workers}x{threads}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_cohort(paths, out, CohortSettings(device="cpu"), workers=workers, threads=threads, progress=False)
    wall = time.perf_counter() - start
    assert result.count("ok") == len(paths), [r["error"] for r in result.rows if r["error"]]
    resumed_start = time.perf_counter()
    again = run_cohort(paths, out, CohortSettings(device="cpu"), workers=workers, threads=threads, progress=False)
    resumed = time.perf_counter() - resumed_start
    assert again.count("done-before") == len(paths)
    e2e = statistics.median(r["time_end_to_end_s"] for r in result.rows)
    return {"shape": f"{workers} x {threads}", "wall": wall, "rate": len(paths) / wall, "e2e": e2e,
            "resumed": resumed, "backend": result.rows[0]["backend"], "load": _load()}


def run_baseline(paths: list[Path]) -> dict:
    """The same volumes one after another in this process: model loaded once, no cluster."""
    from deepwml.pipeline import segment_file
    from deepwml.segmenter import Segmenter

    out = ROOT / "out-sequential"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    segmenter = Segmenter(device="cpu")
    e2e = [segment_file(p, out, segmenter)["timings_s"]["end_to_end"] for p in paths]
    wall = time.perf_counter() - start
    return {"shape": "sequential, in-process", "wall": wall, "rate": len(paths) / wall,
            "e2e": statistics.median(e2e), "resumed": float("nan"), "backend": segmenter.backend, "load": _load()}


def _load() -> float:
    """1-minute load average at the end of a run: other work sharing the CPU slows every figure."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--shapes", default="1x2,2x1", help="local clusters, workers x threads, comma-separated")
    parser.add_argument("--baseline", action="store_true", help="also time the sequential in-process loop")
    args = parser.parse_args()
    paths = phantoms(args.cases, args.seed)
    print(f"machine: {machine()}")
    rows = [run_baseline(paths)] if args.baseline else []
    if rows:
        print(f"  {rows[-1]}", flush=True)
    for shape in args.shapes.split(","):
        workers, threads = (int(x) for x in shape.lower().split("x"))
        rows.append(run_shape(paths, workers, threads))
        print(f"  {rows[-1]}", flush=True)
    print(f"\nDeepWML cohort benchmark, {time.strftime('%Y-%m-%d')}, {args.cases} phantoms (seed {args.seed}), "
          f"bundled model, CPU\nmachine after the runs: {machine()}\n")
    print("| local cluster (workers x threads) | backend | wall s | volumes/s | median end-to-end s per volume "
          "| resumed re-run s | load average (1 min) at the end |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['backend']} | {r['wall']:.1f} | {r['rate']:.2f} | {r['e2e']:.2f} "
              f"| {r['resumed']:.1f} | {r['load']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
