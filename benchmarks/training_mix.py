"""Write the training manifest of the bundled model: synthetic heads + the phantoms' train/val.

    .venv/bin/python benchmarks/training_mix.py SYNTH_DIR PHANTOM_DIR OUT.csv

SYNTH_DIR is a ``deepwml synth`` folder (its manifest.csv; or, for a set whose generation was
stopped early, every complete case folder). PHANTOM_DIR is ``deepwml phantom --cases 180
--seed 1``: its cases are split exactly as the 0.2.0 model's run split them (patient level,
seed 0), and only the train and validation cases enter the mix, so that split's 36 test
phantoms stay unseen and remain comparable with model 0.2.0's figures. Paths are absolute.
No real scan is read: the real evaluation sets never enter training.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from deepwml.training.manifest import read_manifest
from deepwml.training.split import make_split

FIELDS = ["case", "patient", "center", "disease", "flair", "label"]


def synth_rows(folder: Path) -> list[dict]:
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return [{"case": c.case, "patient": c.patient, "center": c.center, "disease": c.disease,
                 "flair": str(c.flair.resolve()), "label": str(c.label.resolve())}
                for c in read_manifest(manifest)]
    rows = []
    for case in sorted(folder.glob("synth*/")):
        files = [case / f"{k}.nii.gz" for k in ("flair", "label", "brain")]
        if all(f.exists() for f in files):  # brain is written last: the case is complete
            rows.append({"case": case.name, "patient": case.name, "center": "synthetic",
                         "disease": "synthetic", "flair": str(files[0].resolve()),
                         "label": str(files[1].resolve())})
    return rows


def phantom_rows(folder: Path) -> list[dict]:
    cases = read_manifest(folder / "manifest.csv")
    split = make_split(cases, seed=0, level="patient")
    return [{"case": f"ph-{c.case}", "patient": f"ph-{c.patient}", "center": c.center,
             "disease": c.disease, "flair": str(c.flair.resolve()), "label": str(c.label.resolve())}
            for c in cases if split["assignment"][c.case] in ("train", "val")]


def main(argv: list[str]) -> int:
    synth, phantoms, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    rows = synth_rows(synth) + phantom_rows(phantoms)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{out}: {sum(r['center'] == 'synthetic' for r in rows)} synthetic + "
          f"{sum(r['center'] != 'synthetic' for r in rows)} phantom cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
