"""Add new synthetic heads to a training mix, keeping the mix's split (stages 11, 13 and 19).

    .venv/bin/python benchmarks/mix_with_new_heads.py MIX.csv SPLIT.json SYNTH_DIR[,SYNTH_DIR...] \
        OUT.csv OUT_SPLIT.json [PREFIX]

MIX.csv and SPLIT.json are a finished run's training manifest and split (stage 10's: 1.5.0's),
SYNTH_DIR are ``deepwml synth`` folders (stage 11: ``--whole-head-3d``; stage 13: synthesis v6).
The new heads are cases ``PREFIX-<case>`` (default ``synth3d``, stage 11's); they are assigned
44/60 train, 8/60 validation and the rest test (a seeded permutation), every other case keeps
its assignment, so the validation cases of the run before stay validation cases (no leakage
from the model being fine-tuned into checkpoint selection). No real scan is read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from deepwml.training.manifest import rows_with_absolute_paths

from training_mix import synth_rows, write_rows  # benchmarks/, beside this script

SEED = 0


def main(mix: Path, split_in: Path, folders: list[Path], out: Path, split_out: Path,
         prefix: str = "synth3d") -> None:
    rows = rows_with_absolute_paths(mix)[1]  # OUT may sit elsewhere than MIX
    new = [{**row, "case": f"{prefix}-{row['case']}", "patient": f"{prefix}-{row['patient']}"}
           for folder in folders for row in synth_rows(folder)]
    write_rows(out, rows + new)
    split = json.loads(split_in.read_text())
    n_train, n_val = round(len(new) * 44 / 60), round(len(new) * 8 / 60)
    for rank, i in enumerate(np.random.default_rng(SEED).permutation(len(new))):
        split["assignment"][new[i]["case"]] = ("train" if rank < n_train else
                                              "val" if rank < n_train + n_val else "test")
    split_out.parent.mkdir(parents=True, exist_ok=True)
    split_out.write_text(json.dumps(split, indent=1))
    print(f"{out}: {len(rows)} + {len(new)} new {prefix} cases; split {split_out}")


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3].split(",")], Path(sys.argv[4]),
         Path(sys.argv[5]), *sys.argv[6:])
