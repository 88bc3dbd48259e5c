"""A training mix with its synthetic heads swapped for the same heads of another synthesis version
(stages 20 and 21; experiments 34 and 36), keeping every case name and so the mix's split.

    .venv/bin/python benchmarks/mix_with_regenerated_heads.py MIX.csv OUT.csv PATTERN=SYNTH_DIR [PATTERN=SYNTH_DIR ...]

A row whose FLAIR lies in a folder whose name matches PATTERN (a regular expression on the whole
name, e.g. ``synth-v4[ab]``) is pointed at the head of the same name in SYNTH_DIR (``deepwml synth``
names a head by its index, so the same seed and index give the same anatomy, lesion source and
acquisition draws) and takes that head's disease; every other row stays as it is. Why: comparing
two synthesis versions on one split and one list of heads changes nothing but the version. A head
missing from SYNTH_DIR stops the script with one line naming it. No real scan is read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from deepwml.training.manifest import rows_with_absolute_paths

from training_mix import synth_rows, write_rows  # benchmarks/, beside this script


def regenerated(rows: list[dict], sets: list[tuple[str, Path]]) -> tuple[list[dict], int]:
    """``rows`` with each head in a folder matching a pattern of ``sets`` replaced; and how many."""
    heads = {folder: {head["case"]: head for head in synth_rows(folder)} for _, folder in sets}
    out, swapped = [], 0
    for row in rows:
        head = Path(row["flair"]).parent
        folder = next((f for pattern, f in sets if re.fullmatch(pattern, head.parent.name)), None)
        if folder is None:
            out.append(row)
            continue
        new = heads[folder].get(head.name)
        if new is None:
            raise SystemExit(f"{folder}: no head {head.name} (regenerate it with the same seed and index)")
        out.append({**row, "flair": new["flair"], "label": new["label"], "disease": new["disease"]})
        swapped += 1
    return out, swapped


def main(mix: Path, out: Path, specs: list[str]) -> None:
    sets = []
    for spec in specs:
        pattern, sep, folder = spec.partition("=")
        if not sep:
            raise SystemExit(f"{spec}: expected PATTERN=SYNTH_DIR")
        sets.append((pattern, Path(folder)))
    rows, swapped = regenerated(rows_with_absolute_paths(mix)[1], sets)
    write_rows(out, rows)
    print(f"{out}: {swapped} of {len(rows)} rows point to regenerated heads")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
