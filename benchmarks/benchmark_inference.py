"""Inference speed and memory: the paper's network in float32 against the shipped default.

One run times, for each configuration, the full path (read file -> preprocess -> network ->
write .seg.nrrd) and the network alone, on a 24-slice 512x512 phantom, on the CPU and on CUDA
when present; peak memory is the peak resident set of a fresh process per configuration (the
only honest number for "how much RAM does segmenting need"). Rows, so that each step's gain is
visible: the paper-width network in PyTorch float32 on the whole canvas (the baseline); the
shipped width-16 model the same way (the width's gain); the same in PyTorch on the head window
only; the shipped model as shipped (backend and precision ``auto``, i.e. ONNX Runtime float32 on
a CPU, head window); and the latter on a 30-slice volume,
the largest routine acquisition, for its peak memory. Dice against the phantom truth is printed
for every configuration with trained weights, so speed is never bought with accuracy unseen.
The baseline has random weights unless --baseline-model names a trained one (its speed does
not depend on the weights).

Then (issue 14) the shipped path's overhead: the share of end to end that is not the network
(24x512x512 and a 1 mm 3D volume), the cold-start wall time of ``deepwml segment`` of one volume
in a fresh process (PyTorch not imported), and batch throughput in volumes/s over ``--batch-cases``
phantoms, one after another (``segment_file``) against pipelined (``deepwml.batch``).

    .venv/bin/python benchmarks/benchmark_inference.py [--repeats 3] [--threads N] [--json out.json]
        [--baseline-model RUN/model] [--slices 24] [--memory-slices 30] [--batch-cases 50]
        [--speed-only]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ACQUISITION = {"matrix": 512, "pixel_mm": 0.4688, "slices": 24, "slice_thickness_mm": 6.0,
               "slice_spacing_mm": 6.0}


def make_volume(folder: Path, slices: int) -> tuple[Path, Path]:
    """A CSVD phantom (center C6) of ``slices`` 512x512 slices and its truth, as NIfTI."""
    import SimpleITK as sitk

    from deepwml.phantom.generator import make_case

    case = make_case(5, 99, acquisition={**ACQUISITION, "slices": slices})
    flair, truth = folder / f"bench_flair_{slices}.nii.gz", folder / f"bench_truth_{slices}.nii.gz"
    sitk.WriteImage(case.flair, str(flair), True)
    sitk.WriteImage(case.truth, str(truth), True)
    return flair, truth


def peak_rss_mb() -> float:
    """This process's own peak resident memory.

    Not ``getrusage().ru_maxrss``: Linux carries the parent's peak across fork+exec into it, so
    every child would report at least the parent's size (the phantom generator's ~1.2 GB).
    ``VmHWM`` belongs to the process image itself.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_config(args: argparse.Namespace) -> dict:
    """Child process: time one configuration and report JSON on stdout."""
    import SimpleITK as sitk
    import torch

    from deepwml.evaluation.metrics import dice
    from deepwml.model_files import LoadedModel, load_model
    from deepwml.pipeline import segment_file
    from deepwml.segmenter import Segmenter
    from deepwml.unet import UNet2D, UNetConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "paper-random":
        torch.manual_seed(0)
        net = UNet2D(UNetConfig(base_channels=64))
        # a card as a saved model's: the summary records the file that ran (Segmenter.ran_file)
        model = LoadedModel(net.eval(), {"name": "paper-unet64-random", "version": "-", "weights_file": "(random, unsaved)",
                                         "weights_sha256": "-"}, Path("random"))
        trained = False
    else:
        model = load_model(None if args.model == "default" else args.model)
        trained = True
    seg = Segmenter(model, device=args.device, precision=args.precision, batch_size=args.batch,
                    head_crop=not args.whole_canvas, backend=args.backend)
    flair = Path(args.flair)
    out = Path(tempfile.mkdtemp())
    # warm-up (model to device, kernels, allocator)
    segment_file(flair, out, seg, overwrite=True)
    end_to_end, network = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        summary = segment_file(flair, out, seg, overwrite=True)
        end_to_end.append(time.perf_counter() - t0)
        network.append(summary["timings_s"]["network"])
    result = {"config": args.label, "device": str(seg.device), "precision": seg.precision_name,
              "backend": seg.backend, "head_crop": seg.head_crop,
              "end_to_end_s": float(np.median(end_to_end)), "network_s": float(np.median(network)),
              "slices": min(summary["size"]), "model": model.model_id}
    if trained:
        truth = sitk.GetArrayFromImage(sitk.ReadImage(args.truth)) > 0
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / (flair.name[:-7] + ".seg.nrrd")))) > 0
        result["dice"] = float(dice(truth, pred))
    if seg.device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        x = torch.randn(256, 1, 256, 256, device="cuda")
        with torch.inference_mode(), seg._autocast():
            for _ in range(3):
                seg.model.network(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                seg.model.network(x)
            torch.cuda.synchronize()
        result["gpu_slices_per_s"] = 5 * 256 / (time.perf_counter() - t0)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def overhead_share(flair: Path, repeats: int, precision: str = "auto") -> dict:
    """Median per-step times of the shipped path (``auto``) on ``flair`` and the share of end to
    end that is not the network."""
    from deepwml.pipeline import segment_file
    from deepwml.segmenter import Segmenter

    seg = Segmenter(device="auto", precision=precision)
    out = Path(tempfile.mkdtemp())
    segment_file(flair, out, seg, overwrite=True)  # warm-up
    runs = [segment_file(flair, out, seg, overwrite=True)["timings_s"] for _ in range(repeats)]
    median = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    median["overhead_share"] = 1.0 - median["network"] / median["end_to_end"]
    median["device"], median["backend"] = seg.device, seg.backend
    return median


def cold_start_s(flair: Path, repeats: int, *options: str) -> tuple[float, bool]:
    """Median wall time of ``deepwml segment FLAIR [OPTIONS]`` in a fresh process, and whether
    that process imported PyTorch."""
    walls, torch_seen = [], False
    # the console script's own exit path (deepwml.cli.console), saying first whether torch came in
    code = ("import sys\nfrom deepwml import cli\nrun = cli.main\n"
            "def main():\n    rc = run()\n    print('TORCH', 'torch' in sys.modules, flush=True)\n    return rc\n"
            "cli.main = main\ncli.console()")
    for _ in range(repeats):
        out = tempfile.mkdtemp()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, "segment", str(flair), "-o", out, "-q", *options],
                              capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
        torch_seen |= "TORCH True" in proc.stdout
    return float(np.median(walls)), torch_seen


def batch_throughput(cases: int) -> dict:
    """Volumes/s over ``cases`` phantoms (``deepwml phantom``), sequential vs pipelined."""
    from deepwml.batch import segment_files
    from deepwml.cli import main as cli_main
    from deepwml.pipeline import segment_file
    from deepwml.segmenter import Segmenter

    folder = Path(tempfile.mkdtemp())
    cli_main(["phantom", str(folder / "ph"), "--cases", str(cases), "--seed", "7", "-q"])
    with open(folder / "ph" / "manifest.csv", newline="", encoding="utf-8") as handle:
        inputs = [str(folder / "ph" / row["flair"]) for row in csv.DictReader(handle)][:cases]
    names = [f"v{i:03d}" for i in range(len(inputs))]
    seg = Segmenter(device="auto")
    t0 = time.perf_counter()
    for path, name in zip(inputs, names):
        segment_file(path, folder / "seq", seg, name=name)
    sequential = time.perf_counter() - t0
    failed: list[str] = []
    t0 = time.perf_counter()
    segment_files(inputs, folder / "pipe", seg, lambda _i, p, _s, e: failed.append(p) if e else None, names=names)
    pipelined = time.perf_counter() - t0
    same = all(np.array_equal(_mask(folder / "seq", n), _mask(folder / "pipe", n)) for n in names)
    return {"volumes": len(inputs), "sequential_per_s": len(inputs) / sequential,
            "pipelined_per_s": len(inputs) / pipelined, "failed": len(failed), "identical": same}


def _mask(folder: Path, name: str) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{name}.seg.nrrd")))


def make_3d_volume(flair: Path) -> Path:
    """A 1 mm-like isotropic 3D FLAIR volume (180x256x256): the thick-slice phantom resampled."""
    import SimpleITK as sitk

    folder = flair.parent
    case = sitk.ReadImage(str(flair))
    size = [256, 256, 180]
    spacing = [case.GetSize()[i] * case.GetSpacing()[i] / size[i] for i in range(3)]
    iso = sitk.Resample(case, size, sitk.Transform(), sitk.sitkLinear, case.GetOrigin(), spacing,
                        case.GetDirection(), 0.0, sitk.sitkInt16)
    path = folder / "bench_flair_3d.nii.gz"
    sitk.WriteImage(iso, str(path), True)
    return path


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def speed_report(folder: Path, args: argparse.Namespace) -> dict:
    """Issue 14's figures on this machine, printed and returned."""
    flair = folder / f"bench_flair_{args.slices}.nii.gz"
    report = {"cpu": cpu_model(), "cpus": os.cpu_count(),
              "overhead_2d": overhead_share(flair, args.repeats),
              "overhead_3d": overhead_share(make_3d_volume(flair), args.repeats)}
    report["cold_start_s"], report["cold_start_imported_torch"] = cold_start_s(flair, args.repeats)
    from deepwml.model_files import DEFAULT_MODEL_DIR

    int8 = "onnx_int8" in json.loads((DEFAULT_MODEL_DIR / "model.json").read_text(encoding="utf-8"))
    if int8:  # the opt-in quantised graph (README "Speed"): same figures
        report["overhead_2d_int8"] = overhead_share(flair, args.repeats, "int8")
        report["cold_start_int8_s"], _ = cold_start_s(flair, args.repeats, "--precision", "int8")
    if args.batch_cases:
        report["batch"] = batch_throughput(args.batch_cases)
    print(f"\nSpeed of the shipped path (issue 14), {time.strftime('%Y-%m-%d')}, {report['cpu']}, "
          f"{report['cpus']} CPUs, device {report['overhead_2d']['device']} "
          f"({'CUDA used' if report['overhead_2d']['device'].startswith('cuda') else 'no CUDA'}), "
          f"backend {report['overhead_2d']['backend']}, median of {args.repeats}")
    for key, label in (("overhead_2d", f"{args.slices}x512x512"), ("overhead_3d", "1 mm 3D 180x256x256")):
        r = report[key]
        steps = ", ".join(f"{k} {r[k]:.3f}" for k in ("read", "preprocess", "network", "postprocess", "write"))
        if "brain_network" in r:  # the brain-mask network, inside "network" (deepwml.brain_mask)
            steps += f"; of the network, brain mask {r['brain_network']:.3f}"
        print(f"  {label:22} end to end {r['end_to_end']:.3f} s ({steps}); not network "
              f"{100 * r['overhead_share']:.0f} %")
    print(f"  cold start, `deepwml segment` of one {args.slices}x512x512 volume: {report['cold_start_s']:.2f} s "
          f"wall (PyTorch imported: {report['cold_start_imported_torch']})")
    if int8:
        r = report["overhead_2d_int8"]
        print(f"  --precision int8: {args.slices}x512x512 end to end {r['end_to_end']:.3f} s (network "
              f"{r['network']:.3f}); not network {100 * r['overhead_share']:.0f} %; cold start "
              f"{report['cold_start_int8_s']:.2f} s wall")
    if "batch" in report:
        b = report["batch"]
        print(f"  batch of {b['volumes']} phantoms: sequential {b['sequential_per_s']:.2f} volumes/s, "
              f"pipelined {b['pipelined_per_s']:.2f} volumes/s (masks identical: {b['identical']}, "
              f"failed {b['failed']})")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--baseline-model", default="paper-random")
    parser.add_argument("--json", default=None)
    parser.add_argument("--slices", type=int, default=ACQUISITION["slices"], help="slices of the timed volume")
    parser.add_argument("--memory-slices", type=int, default=30,
                        help="slices of the extra memory-check volume (0: skip)")
    parser.add_argument("--batch-cases", type=int, default=50, help="phantoms of the batch figure (0: skip)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the issue-14 figures (overhead, cold start, batch), not the configurations")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("model", "device", "precision", "label", "flair", "truth", "backend"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--whole-canvas", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_config(args)))
        return 0

    folder = Path(tempfile.mkdtemp())
    volumes = {args.slices: make_volume(folder, args.slices)}
    if args.speed_only:
        report = speed_report(folder, args)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        return 0
    import torch

    if args.memory_slices:
        volumes.setdefault(args.memory_slices, make_volume(folder, args.memory_slices))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    configs = []
    for device in devices:
        # (label, model, device, precision, backend, whole canvas, slices)
        configs += [("paper U-Net, whole canvas (baseline)", args.baseline_model, device, "float32", "torch",
                     True, args.slices),
                    ("default model, whole canvas", "default", device, "float32", "torch", True, args.slices),
                    ("default model, PyTorch, head window", "default", device, "auto", "torch", False, args.slices),
                    ("default model as shipped", "default", device, "auto", "auto", False, args.slices)]
        if args.memory_slices:
            configs.append((f"as shipped, {args.memory_slices}-slice volume", "default", device, "auto", "auto",
                            False, args.memory_slices))
    results = []
    for label, model, device, precision, backend, whole_canvas, slices in configs:
        flair, truth = volumes[slices]
        cmd = [sys.executable, __file__, "--child", "--model", model, "--device", device,
               "--precision", precision, "--backend", backend, "--label", label, "--flair", str(flair),
               "--truth", str(truth), "--repeats", str(args.repeats), "--threads", str(args.threads)]
        cmd += ["--whole-canvas"] if whole_canvas else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nDeepWML inference benchmark, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}; volume {args.slices} slices of "
          f"{ACQUISITION['matrix']}x{ACQUISITION['matrix']} unless named, median of {args.repeats}")
    header = f"{'configuration':36} {'dev':5} {'prec':8} {'backend':7} {'ms/slice':>9} {'net s/vol':>9} {'e2e s/vol':>9} " \
             f"{'peak MB':>8} {'speed-up':>8} {'Dice':>6}"
    print(header)
    print("-" * len(header))
    for device in devices:
        base = next(r for r in results if r["device"].startswith(device) and "baseline" in r["config"])
        for r in (x for x in results if x["device"].startswith(device)):
            # per slice, so the 30-slice memory row compares fairly with the 24-slice baseline
            r["speedup_vs_baseline"] = (base["end_to_end_s"] / base["slices"]) / (r["end_to_end_s"] / r["slices"])
            print(f"{r['config']:36} {device:5} {r['precision']:8} {r['backend']:7} "
                  f"{1000 * r['network_s'] / r['slices']:9.1f} "
                  f"{r['network_s']:9.2f} {r['end_to_end_s']:9.2f} {r['peak_rss_mb']:8.0f} "
                  f"{r['speedup_vs_baseline']:7.1f}x {r.get('dice', float('nan')):6.3f}")
            if "gpu_slices_per_s" in r:
                print(f"{'':36} GPU batched throughput {r['gpu_slices_per_s']:.0f} slices/s, "
                      f"peak GPU memory {r['peak_gpu_mb']:.0f} MB")
    report = speed_report(folder, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"configurations": results, "speed": report}, indent=1) + "\n",
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
