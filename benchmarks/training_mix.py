"""Write the training manifest of the bundled model: synthetic heads + the phantoms' train/val.

    .venv/bin/python benchmarks/training_mix.py SYNTH_DIR PHANTOM_DIR OUT.csv [--same-heads] [--phantom-copies N]
    .venv/bin/python benchmarks/training_mix.py --phantom-test PHANTOM_DIR TEST.csv
    .venv/bin/python benchmarks/training_mix.py --brain-labels MIX.csv [MORE.csv ...] OUT.csv
    (also --white-matter-labels, --mesial-temporal-labels)

SYNTH_DIR is a ``deepwml synth`` folder (or several, comma-separated) (its manifest.csv; or, for a set whose generation was
stopped early, every complete case folder). PHANTOM_DIR is ``deepwml phantom --cases 180
--seed 1``: its cases are split exactly as the 0.2.0 model's run split them (patient level,
seed 0), and only the train and validation cases enter the mix, so that split's 36 test
phantoms stay unseen and remain comparable with model 0.2.0's figures. Paths are absolute.
No real scan is read: the real evaluation sets never enter training.

``--same-heads``: the comma-separated synthetic sets are the same heads drawn by several synthesis
versions (one seed), kept together by the split (see ``unique_ids``). ``--phantom-copies N``: the
phantoms listed N times (1.4.0's phantom weighting, as ``phantom_copies``).

``--brain-labels``: the brain-mask model's manifest (deepwml.brain_mask): the synthetic heads of
the given mixes, each once, with its ``brain.nii.gz`` (the label maps' brain) as the label;
phantoms are left out (one template brain, and no brain mask). ``--white-matter-labels``: the same with
``white_matter.nii.gz`` (the white matter and the lesions; deepwml.white_matter), for the white-matter model;
``--mesial-temporal-labels``: with ``mesial_temporal.nii.gz`` (the hippocampus and amygdala; deepwml.mesial_temporal).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from deepwml.phantom.generator import draw_center_and_disease
from deepwml.training.manifest import Case, read_manifest
from deepwml.training.split import make_split

FIELDS = ["case", "patient", "center", "disease", "flair", "label"]


def write_rows(out: Path, rows: list[dict]) -> None:
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


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


def unique_ids(sets: list[list[dict]], same_heads: bool = False) -> list[dict]:
    """Rows of several synthetic sets; a set whose case IDs clash with an earlier set's (two
    sets generated from index 0 with different seeds) gets its folder name as a prefix. Sets
    that do not clash keep their IDs, so earlier mixes (and their patient-level split) stay
    as they were. ``same_heads``: the sets are the same heads drawn by different synthesis
    versions (one seed; e.g. v6 and v7), so a clashing case keeps its patient: the patient-level
    split then keeps a head's forms in one part, and validation never sees a training head."""
    seen: set[str] = set()
    rows: list[dict] = []
    for set_rows in sets:
        if any(row["case"] in seen for row in set_rows):
            prefix = Path(set_rows[0]["flair"]).parent.parent.name
            set_rows = [{**row, "case": f"{prefix}-{row['case']}",
                         "patient": row["patient"] if same_heads else f"{prefix}-{row['patient']}"}
                        for row in set_rows]
        seen.update(row["case"] for row in set_rows)
        rows += set_rows
    return rows


def phantom_cases(folder: Path, count: int = 180, seed: int = 1) -> list[Case]:
    """The ``count`` cases of ``deepwml phantom --cases count --seed seed`` as the manifest would
    list them; center and disease are the generator's first draws, so no case is generated."""
    cases = []
    for i in range(count):
        center, disease = draw_center_and_disease(i, np.random.default_rng([seed, i]))
        name = f"case{i:04d}"
        cases.append(Case(name, name, center.name, disease, folder / name / "flair.nii.gz",
                          folder / name / "label.nii.gz"))
    return cases


def phantom_rows(folder: Path) -> list[dict]:
    """Train and validation phantoms of model 0.2.0's split that exist in ``folder``."""
    cases = phantom_cases(folder)
    split = make_split(cases, seed=0, level="patient")
    return [{"case": f"ph-{c.case}", "patient": f"ph-{c.patient}", "center": c.center,
             "disease": c.disease, "flair": str(c.flair.resolve()), "label": str(c.label.resolve())}
            for c in cases if split["assignment"][c.case] in ("train", "val") and c.label.exists()]


def phantom_copies(rows: list[dict], copies: int) -> list[dict]:
    """The phantom rows listed ``copies`` times (phantom-weighted, as 1.4.0's mix): copies are
    cases ``<case>-x1``, ``-x2``... of the same patient, so the split keeps them together."""
    return rows + [{**row, "case": f"{row['case']}-x{k}"} for k in range(1, copies) for row in rows]


def phantom_test_manifest(folder: Path, out: Path) -> None:
    """The held-out test phantoms of that split, as a manifest for ``deepwml evaluate``; test
    cases missing from ``folder`` are generated (the generator is deterministic per case)."""
    import SimpleITK as sitk

    from deepwml.phantom.generator import make_case

    cases = phantom_cases(folder)
    split = make_split(cases, seed=0, level="patient")
    for i, c in enumerate(cases):
        if split["assignment"][c.case] == "test" and not c.label.exists():
            case = make_case(i, 1)
            c.flair.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(case.flair, str(c.flair), True)
            sitk.WriteImage(case.truth, str(c.label), True)
    write_rows(out, [{"case": c.case, "patient": c.patient, "center": c.center, "disease": c.disease,
                      "flair": str(c.flair.resolve()), "label": str(c.label.resolve())}
                     for c in cases if split["assignment"][c.case] == "test"])


#: option -> the mask file (beside each synthetic head's label) that labels a mask model's training heads
MASK_OPTIONS = {"--brain-labels": "brain", "--white-matter-labels": "white_matter",
                "--mesial-temporal-labels": "mesial_temporal"}


def mask_label_rows(mixes: list[Path], mask: str = "brain") -> list[dict]:
    """The synthetic rows of ``mixes`` in order, each head once, labelled with its ``mask`` (``brain``,
    ``white_matter`` for the white-matter model, ``mesial_temporal`` for the mesial-temporal model)."""
    rows, seen = [], set()
    for mix in mixes:
        with open(mix, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                found = Path(row["label"]).with_name(f"{mask}.nii.gz")
                if row["center"] != "synthetic" or str(found) in seen:
                    continue
                if not found.exists():
                    raise FileNotFoundError(f"{found}: no {mask} mask beside this synthetic head's label")
                seen.add(str(found))
                rows.append({**{k: row[k] for k in FIELDS}, "label": str(found)})
    return rows


def main(argv: list[str]) -> int:
    if argv[0] in MASK_OPTIONS:
        mixes, out = [Path(a) for a in argv[1:-1]], Path(argv[-1])
        if not mixes or out.exists():
            raise SystemExit(f"usage: {argv[0]} MIX.csv [MORE.csv ...] OUT.csv (OUT must not exist: {out})")
        mask = MASK_OPTIONS[argv[0]]
        rows = mask_label_rows(mixes, mask)
        write_rows(out, rows)
        print(f"{argv[-1]}: {len(rows)} synthetic heads labelled with their {mask} masks")
        return 0
    if argv[0] == "--phantom-test":
        phantom_test_manifest(Path(argv[1]), Path(argv[2]))
        return 0
    same_heads = "--same-heads" in argv
    copies = int(argv[argv.index("--phantom-copies") + 1]) if "--phantom-copies" in argv else 1
    positional = [a for i, a in enumerate(argv) if not a.startswith("--") and
                  (i == 0 or argv[i - 1] != "--phantom-copies")]
    synth, phantoms, out = Path(positional[0]), Path(positional[1]), Path(positional[2])
    rows = unique_ids([synth_rows(Path(folder)) for folder in str(synth).split(",")], same_heads)
    rows += phantom_copies(phantom_rows(phantoms), copies)
    write_rows(out, rows)
    print(f"{out}: {sum(r['center'] == 'synthetic' for r in rows)} synthetic + "
          f"{sum(r['center'] != 'synthetic' for r in rows)} phantom cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
