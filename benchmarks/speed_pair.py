"""Two models' speed on the same volume, run alternately in one process: a candidate against the default.

Why: on the shared 2-core CPU the same code's end-to-end time on the benchmark phantom moved from 1.85 to 2.24 s
within a day and by about 0.3 s within an hour (README "Speed"), so two official benchmark runs taken minutes apart
judge the hour as much as the candidate. Alternating the two segmenters round by round, on one volume already read,
exposes both to the same moments; the paired difference (candidate minus reference, per round) is the figure to read.
This complements ``benchmark_inference.py`` (the absolute figure the issue's < 2 s is stated in), it does not replace
it. Experiment 54's speed comparisons were made this way (work-data/b42, work-data/b43).

    .venv/bin/python benchmarks/speed_pair.py CANDIDATE_DIR [--reference MODEL_DIR] [--rounds 8]
        [--flair FLAIR | --slices 24] [--json out.json]

Prints, per model, the medians of the segmenter's timings (preprocess, network, postprocess, total; reading and
writing are the same for both and left out), then the paired differences' median and range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

PARTS = ("preprocess", "network", "postprocess", "total")


def pair(reference: str | None, candidate: str, flair: Path, rounds: int) -> dict:
    """Alternate ``reference`` (None: the bundled model) and ``candidate`` for ``rounds`` rounds on ``flair`` (after
    one warm-up each); the report: per-model medians, per-round paired differences and their median."""
    from deepwml.image_io import load_flair
    from deepwml.segmenter import Segmenter

    image = load_flair(flair)
    segmenters = {"reference": Segmenter(reference, device="cpu") if reference else Segmenter(device="cpu"),
                  "candidate": Segmenter(candidate, device="cpu")}
    for segmenter in segmenters.values():
        segmenter.segment(image)  # warm-up: graph checks, first-call allocations
    timings: dict[str, list[dict]] = {name: [] for name in segmenters}
    for _ in range(rounds):
        for name, segmenter in segmenters.items():
            timings[name].append(segmenter.segment(image).timings_s)
    difference = {part: [c[part] - r[part] for c, r in zip(timings["candidate"], timings["reference"])]
                  for part in PARTS}
    return {"flair": str(flair), "rounds": rounds,
            "models": {name: segmenters[name].model.model_id for name in segmenters},
            "median_s": {name: {part: statistics.median(t[part] for t in runs) for part in PARTS}
                         for name, runs in timings.items()},
            "paired_difference_s": {part: {"median": statistics.median(values), "min": min(values),
                                           "max": max(values)} for part, values in difference.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate", help="the candidate's model folder")
    parser.add_argument("--reference", default=None, help="the reference model folder (default: the bundled model)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--flair", default=None, help="the volume (default: the benchmark's 24x512x512 phantom)")
    parser.add_argument("--slices", type=int, default=24, help="slices of the benchmark phantom")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.flair:
        flair = Path(args.flair)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from benchmark_inference import make_volume

        flair, _ = make_volume(Path(tempfile.mkdtemp()), args.slices)
    report = pair(args.reference, args.candidate, flair, args.rounds)
    for name, medians in report["median_s"].items():
        print(f"{name:9} {report['models'][name]:34} " + "  ".join(f"{p} {medians[p]:.3f}" for p in PARTS))
    print(f"candidate - reference, paired over {args.rounds} rounds (median [min, max] s): " +
          "  ".join(f"{p} {d['median']:+.3f} [{d['min']:+.3f}, {d['max']:+.3f}]"
                    for p, d in report["paired_difference_s"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
