#!/usr/bin/env bash
# One GPU training run in one device call (issue 13), made to fit a lease: 15 minutes of device time per
# task, at most 10 per command, 64 MiB carried. Everything it needs travels: the repository and the
# bundle of benchmarks/gpu_bundle.py (SimpleITK, nibabel, the label maps, lesion masks and MNI maps).
#
#   here, once per change of the data or the pins:   .venv/bin/python benchmarks/gpu_bundle.py pack
#   device:  run(command="bash benchmarks/gpu_train.sh", carry=[".gpu"], timeout_s=600)
#   CPU dry run of the very same steps, small:       PY=.venv/bin/python DEVICE=cpu HEADS=6 PHANTOMS=9 \
#              MINUTES=0.2 EPOCHS=2 STEPS=5 OUT=/tmp/gpu-dry WORK=/tmp/gpu-dry-work bash benchmarks/gpu_train.sh
#
# Steps (each timed into $OUT/timings.tsv): unpack and check the bundle; synthesise HEADS heads of
# synthesis v6 and the same heads as v7 (seed SEED; stored registrations, so the same cases as on the
# project's CPU) and the 92 phantoms of the bundled models' mixes, on every core; the mix (a head's two
# forms in one split part, the phantoms' train/validation cases listed three times, as 1.4.0-1.6.0);
# fine-tune the bundled model (INIT=none: train from random weights, see below) on the GPU (bf16) for at most MINUTES, the checkpoint chosen by synthetic +
# phantom validation Dice; the threshold chosen on the run's validation cases by the fixed rule (if TIME
# is left); the run packed into $OUT/run.tar (model weights and card, log, curves, split, mix, timings).
# No real scan is read; judge the model here afterwards (phantom test, fresh synthetic heads, the rule
# written before the run, then benchmarks/real_scans.sh for the record).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-work-data/gpu}
WORK=${WORK:-/tmp/deepwml-gpu}
HEADS=${HEADS:-360}
SEED=${SEED:-71}
PHANTOMS=${PHANTOMS:-92}  # as the bundled chain: its 78 train/validation phantoms (0.2.0 split)
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-3.5}
EPOCHS=${EPOCHS:-200}
STEPS=${STEPS:-300}
LR=${LR:-1e-4}
VERSION=${VERSION:-1.7.0-gpu}
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-560} ))  # the threshold step runs only if it can end before this
mkdir -p "$OUT" "$WORK"
: > "$OUT/timings.tsv"
step() {  # step NAME COMMAND...: run and time it
  local t0=$SECONDS
  echo "== $1" >&2
  "${@:2}"
  printf '%s\t%s\n' "$1" $((SECONDS - t0)) >> "$OUT/timings.tsv"
}

[ -f .gpu/bundle.json ] || { echo ".gpu/bundle.json: no bundle (run benchmarks/gpu_bundle.py pack here, carry .gpu)" >&2; exit 2; }
step unpack "$PY" benchmarks/gpu_bundle.py unpack .gpu --site "$WORK/site" --data "$WORK/data"
export PYTHONPATH="$PWD/DeepWML:$WORK/site" DEEPWML_SHARED_DATA="$WORK/data" DEEPWML_MNI_DIR="$WORK/data/mni"
export PYTHONUNBUFFERED=1
DW=("$PY" -m deepwml.cli)
"$PY" -c "import torch, SimpleITK; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'SimpleITK', SimpleITK.__version__, \
'cores', len(__import__('os').sched_getaffinity(0)))" | tee "$OUT/machine.txt"

for v in 6 7; do
  [ -f "$WORK/synth-v$v/manifest.csv" ] || step "synth-v$v" "${DW[@]}" synth "$WORK/synth-v$v" --cases "$HEADS" \
    --seed "$SEED" --synthesis-version "$v" -q
done
[ -f "$WORK/phantoms/manifest.csv" ] || step phantoms "${DW[@]}" phantom "$WORK/phantoms" --cases "$PHANTOMS" --seed 1 -q
[ -f "$WORK/mix.csv" ] || step mix "$PY" benchmarks/training_mix.py "$WORK/synth-v6,$WORK/synth-v7" "$WORK/phantoms" \
  "$WORK/mix.csv" --same-heads --phantom-copies 3

# INIT=bundled (default): fine-tune the bundled model; INIT=DIR: fine-tune that model; INIT=none: train from random
# weights at WIDTH channels (experiment 30: from scratch, the realistic mix beat every fine-tune of the chain on the
# synthetic criteria by far; give it LR=5e-4 and as many minutes as the lease allows)
INIT=${INIT:-bundled}
if [ "$INIT" = none ]; then
  START=(--base-channels "${WIDTH:-16}")
  ORIGIN="Trained from random weights (width ${WIDTH:-16})"
else
  START=(--init "$INIT")
  CARD=DeepWML/Resources/Models/default/model.json; [ "$INIT" = bundled ] || CARD=$INIT/model.json
  ORIGIN="Fine-tuned from $("$PY" -c "import json, sys; c=json.load(open(sys.argv[1])); print(c['name']+'@'+c['version'])" "$CARD")"
fi
NOTES="$ORIGIN on device $DEVICE (benchmarks/gpu_train.sh, at most $MINUTES min of training) on $HEADS synthetic whole \
heads of synthesis v6 (seed $SEED: one to three real patients' MS masks united per case) and the same heads drawn as \
synthesis v7 (lesions faint at their rim), plus the 0.2.0 phantoms' train/validation cases listed three times: synthetic \
whole-head FLAIR made from SynthSeg's 20 whole-head label maps (Billot et al. 2023, Apache-2.0) and 27 real MS patients' \
consensus masks in MNI space (Lesjak et al. 2018, CC-BY; patients 07, 19, 26 excluded). No real FLAIR image was used for \
training, tuning or checkpoint selection."
step train "${DW[@]}" train "$WORK/mix.csv" -o "$WORK/run" "${START[@]}" --epochs "$EPOCHS" --lr "$LR" \
  --batch-size 8 --crop 160 --augment-intensity --steps-per-epoch "$STEPS" --val-slices 480 --seed 0 \
  --device "$DEVICE" --precision "${PRECISION:-auto}" --max-minutes "$MINUTES" --name deepwml-synth-unet16 --model-version "$VERSION" --notes "$NOTES" -q

if [ $(( DEADLINE - $(date +%s) )) -gt ${THRESHOLD_S:-100} ]; then
  step threshold timeout $(( DEADLINE - $(date +%s) )) "$PY" benchmarks/threshold_on_validation.py "$WORK/run/model" \
    "$WORK/mix.csv" "$WORK/run/split.json" val --record || echo "threshold step stopped: choose it on the CPU" >&2
else
  echo "no time left for the threshold step: choose it on the CPU" >&2
fi
cp "$WORK/mix.csv" "$WORK/run/mix.csv"
cp "$OUT/timings.tsv" "$OUT/machine.txt" "$WORK/run/"
tar -cf "$OUT/run.tar" -C "$WORK" --exclude='checkpoint*.pt' --exclude='model.onnx' --exclude='model.int8.onnx' run
ls -la "$OUT"
cat "$OUT/timings.tsv"
