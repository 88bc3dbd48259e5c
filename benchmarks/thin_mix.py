"""The training mix of a thin-slice model (deepwml.thin_model): the thin cases of other runs' mixes.

    .venv/bin/python benchmarks/thin_mix.py MIX SPLIT [MIX SPLIT ...] OUT_MIX OUT_SPLIT

Takes every row of each MIX whose FLAIR has slices thinner than deepwml.reslice.THIN_SLICE_MM (the
volumes the segmenter routes to a thin-slice model), with the train/val/test assignment its run's
SPLIT gave it (file paths made absolute), so that no case moves between training and validation; a case in several mixes is
taken once, from the first. Writes OUT_MIX and OUT_SPLIT (the first split's settings, these
assignments). Used for the thin-slice model (README "The thin-slice model"; stage 17 of
train_bundled_model.sh). Reads only image headers.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import SimpleITK as sitk

from deepwml.reslice import THIN_SLICE_MM
from deepwml.training.manifest import rows_with_absolute_paths


def slice_spacing_mm(path: str) -> float:
    """The FLAIR's spacing along its third axis (the synthetic sets' slice axis), from its header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return float(reader.GetSpacing()[2])


def thin_mix(pairs: list[tuple[Path, Path]]) -> tuple[list[dict[str, str]], dict]:
    """The thin rows of every (mix, split) pair and the split that assigns them."""
    rows: list[dict[str, str]] = []
    assignment: dict[str, str] = {}
    split: dict = {}
    for mix, split_path in pairs:
        this = json.loads(split_path.read_text(encoding="utf-8"))
        split = split or this
        for row in rows_with_absolute_paths(mix)[1]:  # paths relative to the mix would break in OUT_MIX
            if row["patient"] in assignment or slice_spacing_mm(row["flair"]) >= THIN_SLICE_MM:
                continue
            assignment[row["patient"]] = this["assignment"][row["patient"]]
            rows.append(row)
    return rows, {**split, "assignment": assignment}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="MIX SPLIT pairs, then OUT_MIX OUT_SPLIT")
    args = parser.parse_args()
    if len(args.paths) < 4 or len(args.paths) % 2:
        parser.error("give MIX SPLIT pairs, then OUT_MIX OUT_SPLIT")
    paths = [Path(p) for p in args.paths]
    rows, split = thin_mix(list(zip(paths[:-2:2], paths[1:-2:2])))
    if not rows:
        parser.error("no thin case in these mixes")
    out_mix, out_split = paths[-2], paths[-1]
    out_split.parent.mkdir(parents=True, exist_ok=True)
    with open(out_mix, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out_split.write_text(json.dumps(split, indent=1), encoding="utf-8")
    counts = {part: sum(v == part for v in split["assignment"].values()) for part in ("train", "val", "test")}
    print(f"{len(rows)} thin cases -> {out_mix} ({counts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
