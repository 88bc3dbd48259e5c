"""Runs one segmentation in a background process for the DeepWML panel.

``python -m DeepWMLLib.inference_worker INPUT.nrrd OUTDIR [--device ..] [--backend ..] [--model DIR]
[--sliding-slab-mm MM]``
(with the DeepWML module folder on PYTHONPATH). Prints ``PROGRESS done total`` lines while the
network runs, writes ``OUTDIR/probabilities.nrrd`` (float32, on INPUT's grid) and
``OUTDIR/result.json``, and exits 0; on a bad input or model it prints ``ERROR: message`` and
exits 2. The caller thresholds the probabilities, so changing the threshold never re-runs this.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

PROGRESS_PREFIX = "PROGRESS"
ERROR_PREFIX = "ERROR:"


def parse_progress(line: str):
    """``(done, total)`` from a ``PROGRESS`` line, else None."""
    parts = line.split()
    if len(parts) == 3 and parts[0] == PROGRESS_PREFIX and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input")
    parser.add_argument("outdir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--model", default="")
    parser.add_argument("--no-brain-mask", action="store_true")
    parser.add_argument("--no-white-matter", action="store_true")
    parser.add_argument("--sliding-slab-mm", type=float, default=0.0)
    args = parser.parse_args(argv)

    from pathlib import Path

    import SimpleITK as sitk

    from deepwml.errors import DeepWMLError
    from deepwml.image_io import validate_flair
    from deepwml.options import thin_slab_kwargs
    from deepwml.segmenter import Segmenter

    t0 = time.perf_counter()
    print(f"{PROGRESS_PREFIX} 0 1", flush=True)
    try:
        image = validate_flair(sitk.ReadImage(args.input), Path(args.input).name)
        segmenter = Segmenter(args.model or None, device=args.device, precision=args.precision,
                              backend=args.backend, brain_model=None if args.no_brain_mask else "bundled",
                              white_matter_model=None if args.no_white_matter else "bundled",
                              **thin_slab_kwargs(sliding_slab_mm=args.sliding_slab_mm))
        print(f"model {segmenter.model.model_id} on {segmenter.device} ({segmenter.backend})", flush=True)

        def progress(done: int, total: int) -> None:
            print(f"{PROGRESS_PREFIX} {done} {total}", flush=True)

        result = segmenter.segment(image, None, progress)
    except (DeepWMLError, RuntimeError, ValueError, OSError) as err:
        print(f"{ERROR_PREFIX} {err}", flush=True)
        return 2
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Cast(result.probabilities, sitk.sitkFloat32), str(out / "probabilities.nrrd"))
    # the threshold of the model that ran (the thin-slice model's on thin slices: deepwml.thin_model)
    info = {**result.panel_info(), "model_threshold": result.model.threshold, "seconds": time.perf_counter() - t0}
    (out / "result.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    print(f"done in {info['seconds']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
