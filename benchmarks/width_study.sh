#!/bin/bash
# Width study (issue 6): is the narrow default network as accurate as the paper's width-64 U-Net?
# Both widths are trained from scratch with one recipe (same phantom set, split, seed, crops,
# learning rate and number of steps; only --base-channels differs), then evaluated on the same
# held-out test split. The default recipe is what fits a 2-core CPU in about an hour for width
# 64; on a GPU raise STEPS/EPOCHS towards the paper's schedule.
#
#   bash benchmarks/width_study.sh [MANIFEST] [OUT]     (defaults below; about 75 min on 2 CPU cores)
#   then: .venv/bin/python benchmarks/benchmark_inference.py --baseline-model OUT/w64/model
set -euo pipefail
cd "$(dirname "$0")/.."
MANIFEST=${1:-work-data/phantoms-scalp.csv}
OUT=${2:-work-data/widthstudy}
EPOCHS=${EPOCHS:-6}
STEPS=${STEPS:-100}
CROP=${CROP:-128}
LR=${LR:-1e-3}
BIN=.venv/bin
if [ ! -f "$MANIFEST" ]; then
  echo "width_study: $MANIFEST not found; make the phantom set with: $BIN/deepwml phantom work-data/phantoms180 --cases 180 --seed 1, then pass work-data/phantoms180/manifest.csv" >&2
  exit 2
fi
mkdir -p "$OUT"
for W in 16 64; do
  $BIN/deepwml train "$MANIFEST" -o "$OUT/w$W" --base-channels $W --epochs "$EPOCHS" \
    --steps-per-epoch "$STEPS" --crop "$CROP" --batch-size 8 --lr "$LR" --seed 0 --augment-intensity \
    --val-slices 48 --name "deepwml-widthstudy-unet$W" --model-version 0.0.1 \
    --notes "Width study: trained from scratch on $MANIFEST, ${EPOCHS}x${STEPS} steps of batch 8, ${CROP}-pixel crops, lr $LR; identical recipe for widths 16 and 64. Phantom data only."
  # both on the split of the first run, so the test volumes are the same
  $BIN/deepwml evaluate "$MANIFEST" -o "$OUT/eval-w$W" --model "$OUT/w$W/model" --split "$OUT/w16/split.json" --overwrite
done
$BIN/python - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
print(f"{'width':>5} {'slice Dice':>10} {'sens':>6} {'prec':>6} {'volume Dice':>11} {'lesion F1':>9}")
for w in (16, 64):
    s = json.load(open(f"{out}/eval-w{w}/summary.json"))
    o, v = s["overall"], {m["metric"]: m["median"] for m in s["per_volume"]}
    print(f"{w:5d} {o['median_dice']:10.3f} {o['median_sensitivity']:6.3f} {o['median_precision']:6.3f} "
          f"{v['dice']:11.3f} {v['lesion_f1']:9.3f}")
EOF
