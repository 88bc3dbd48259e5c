"""Merge two training mixes and their splits into one (stage 16: synthesis v6 and v7 heads together).

    .venv/bin/python benchmarks/merge_mixes.py MIX_A.csv SPLIT_A.json MIX_B.csv SPLIT_B.json OUT.csv OUT_SPLIT.json

Rows are united by case (a case in both mixes must be the same row); assignments are united and
must agree wherever both splits name a case. Why refuse disagreement: the same case (or, for
synthesis v6/v7, the same anatomy and lesion draws under two appearances, kept in the same part
by ``mix_with_new_heads.py``'s seeded permutation) in training and validation would let the
checkpoint choice see its own training data. SPLIT_B's other fields (seed, level) are kept.
No real scan is read.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from deepwml.training.manifest import rows_with_absolute_paths


def merge(mix_a: Path, split_a: Path, mix_b: Path, split_b: Path, out: Path, split_out: Path) -> int:
    rows: dict[str, dict] = {}
    fields: list[str] = []
    for mix in (mix_a, mix_b):
        columns, mix_rows = rows_with_absolute_paths(mix)  # OUT may sit elsewhere than either mix
        fields = fields or columns
        for row in mix_rows:
            if rows.setdefault(row["case"], row) != row:
                raise ValueError(f"{mix}: case {row['case']} differs from the other mix's row")
    first = json.loads(split_a.read_text())["assignment"]
    split = json.loads(split_b.read_text())
    for case, part in first.items():
        if split["assignment"].setdefault(case, part) != part:
            raise ValueError(f"{split_a}: {case} is '{part}' there, '{split['assignment'][case]}' in {split_b}")
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows.values())
    split_out.parent.mkdir(parents=True, exist_ok=True)
    split_out.write_text(json.dumps(split, indent=1))
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    try:
        n = merge(*(Path(a) for a in sys.argv[1:]))
    except ValueError as err:
        sys.exit(f"merge_mixes: {err}")
    print(f"{sys.argv[5]}: {n} cases; split {sys.argv[6]}")
