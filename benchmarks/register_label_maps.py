"""Register the MNI white-matter map to every shared label map and store the transforms.

Writes ``DeepWML/deepwml/synthesis/registrations.json``, which synthesis reads instead of
registering (see ``deepwml.synthesis.lesions.mni_to_subject``): the same seed then gives the
same synthetic cases on any machine, whatever its core count, and a GPU server needs neither
the MNI template nor the minutes of registration. Run it only when the label maps change;
ITK's registration is run with 2 threads, as on the project machine where every synthetic set
so far was made (the stored transforms reproduce those sets bit for bit).

    .venv/bin/python benchmarks/register_label_maps.py [--check]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from deepwml.synthesis.anatomy import LABEL_MAP_DIR, label_map_paths, load_subject
from deepwml.synthesis.lesions import REGISTRATIONS_FILE, _register, registration_record, stored_registration

THREADS = 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="register again and compare with the stored file instead of writing it")
    args = ap.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)
    subjects = {}
    worst = 0.0
    for path in tqdm(label_map_paths(), desc="registration", unit="subject"):
        subject = load_subject(path)
        transform = _register(subject)
        subjects[subject.name] = registration_record(subject, transform)
        if args.check:
            stored = stored_registration(subject)
            if stored is None:
                print(f"{subject.name}: not stored (or another label map)")
                return 1
            new = np.asarray(subjects[subject.name]["affine_parameters"])
            old = np.asarray(registration_record(subject, stored)["affine_parameters"])
            worst = max(worst, float(np.abs(new - old).max()))
    if args.check:
        print(f"{len(subjects)} subjects; largest parameter difference {worst:.3g}")
        return 0
    REGISTRATIONS_FILE.write_text(json.dumps({
        "about": "MNI ICBM152 2009a white matter -> SynthSeg label map (subject's cerebral white matter), "
                 "affine, mean squares; deepwml.synthesis.lesions._register; written by "
                 "benchmarks/register_label_maps.py",
        "label_maps": str(LABEL_MAP_DIR.name), "simpleitk": sitk.Version_VersionString(),
        "threads": THREADS, "written": datetime.date.today().isoformat(), "subjects": subjects,
    }, indent=1) + "\n", encoding="utf-8")
    print(f"{len(subjects)} registrations -> {REGISTRATIONS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
