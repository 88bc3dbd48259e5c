"""Record the real-scan figures of ``benchmarks/real_scans.sh`` in a model card (metrics.real_data).

    .venv/bin/python benchmarks/record_real_data.py MODEL_DIR REAL_OUT

REAL_OUT is the folder real_scans.sh wrote for that model. Evaluation only: these figures are
read after training and never feed back into training, tuning or checkpoint selection; the card
carries them so the model's real-data behaviour travels with it.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from deepwml.model_files import record_in_card

REPORTS = {"report-native": "lesjak2017-native", "report-native-slab3": "lesjak2017-native-slab3",
           "report-native-sliding3": "lesjak2017-native-sliding3",
           "report-3mm": "lesjak2017-3mm", "report-5mm": "lesjak2017-5mm", "report-8mm": "lesjak2017-8mm"}
#: reports that older real_scans.sh runs did not write (8 mm since 2026-12-03): recorded when present
OPTIONAL_REPORTS = ("report-8mm",)
CASE_FIELDS = ("truth_ml", "pred_ml", "dice", "hd95_mm", "avd_percent", "lesion_recall", "lesion_f1")


def _number(text: str) -> float | None:
    return float(text) if text not in ("", "nan") else None


def real_data_figures(real_out: Path) -> dict:
    lesjak = {}
    for report, name in REPORTS.items():
        if report in OPTIONAL_REPORTS and not (real_out / report / "per_volume.csv").exists():
            continue
        with open(real_out / report / "per_volume.csv", newline="") as f:
            lesjak[name] = {row["case"]: {k: _number(row[k]) for k in CASE_FIELDS} for row in csv.DictReader(f)}
    with open(real_out / "sanity" / "sanity.csv", newline="") as f:
        heads = {}
        for row in csv.DictReader(f):
            # two scans are called FLAIR: name the near-healthy 3D one by its dataset
            name = row["scan"] if row["scan"] != "FLAIR" else "FLAIR(rorden)"
            heads[name] = {"pred_ml": float(row["pred_ml"]), "lesions": int(row["lesions"]),
                           "outside_ml": float(row["outside_ml"]),
                           # the marks' brightness over white matter (older sanity tables lack it)
                           "marked_over_wm": _number(row.get("marked_over_wm", ""))}
    # evaluate's summary says whether the flipped pass ran (reports from before it said so: no TTA)
    tta = json.loads((real_out / next(iter(REPORTS)) / "summary.json").read_text()).get("flip_tta", False)
    return {"note": "evaluation only: never used for training, tuning or checkpoint selection; see README "
                    "'Accuracy on real scans'; CPU, ONNX Runtime float32, the card's threshold, "
                    + ("left-right flip TTA" if tta else "no TTA"),
            "flip_tta": tta, "lesjak2017": lesjak, "whole_head_sanity": heads}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    card = record_in_card(argv[0], "real_data", real_data_figures(Path(argv[1])))
    print(f"real-data figures recorded in {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
