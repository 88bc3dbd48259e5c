#!/usr/bin/env bash
# The README's rule for a candidate lesion model to replace the bundled one, criteria (1)-(4), in one
# command (README "Training"; experiments 21-26 were judged with it):
#
#   bash benchmarks/judge_candidate.sh CANDIDATE_MODEL_DIR [WORK]      (~15 min on 2 CPU cores the first time)
#
# Makes, once, under WORK (default work-data/judge, git-ignored): the 92 phantoms of the bundled chain (seed 1) and
# their 36 held-out test cases, and the fresh synthetic heads "wval" (60 of synthesis v3 seed 91, 60 of v4 seed 92;
# no model here was trained on them); evaluates the bundled model (cached per weights SHA-256 and threshold) and the candidate on
# both with the defaults (TTA, brain mask, each card's threshold); prints the criteria (paired, head by head) and
# exits 0 only if all pass. Synthetic data only: no real scan is read. Other sets: WVAL_SEEDS="S3 S4" WVAL_CASES=N
# with a new WORK. Once a model has been shipped by a set, judge its successors on new seeds: the set that
# chose a model is no longer a fair test of it.
# PROXY=1 also prints the near-healthy proxy (information, not a criterion; fresh_heads_by_load.py --proxy): 24
# whole-head 1 mm 3D heads of synthesis v7 (seed PROXY_SEED, default 95) read as 3 mm slabs, false-positive ml per
# model (~10 min more the first time).
# Criterion (5), the real floors, is a veto run afterwards:
#   MODEL=CANDIDATE_MODEL_DIR bash benchmarks/real_scans.sh OUT   and   the floors of Testing/Python/real_data_floors.json
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] && [ -f "$1/model.json" ] || { echo "usage: bash benchmarks/judge_candidate.sh CANDIDATE_MODEL_DIR [WORK]" >&2; exit 2; }
CAND=$1
WORK=${2:-work-data/judge}
BIN=.venv/bin
SHIPPED=DeepWML/Resources/Models/default
mkdir -p "$WORK"
# a model's reports are cached under its weights, threshold and contrast floor (factor, form and how it reads the
# white-matter level): the same weights at another threshold or floor are another model (no floor: the key of every
# report cached before floors existed; the first level, above-median, adds nothing to keep the keys cached before levels)
key() { "$BIN/python" -c "import json, sys; c = json.load(open(sys.argv[1] + '/model.json')); f = c.get('contrast_floor') or {}
level = f.get('level', 'above-median')
print(c['weights_sha256'][:12] + '-t' + str(c['threshold']) + (f'-{f.get(\"mode\", \"voxel\")}{f[\"factor\"]}' if f else '')
      + ('' if level == 'above-median' else '-' + level) + (f'-load{f[\"min_load_ml\"]}' if f.get('min_load_ml') else ''))" "$1"; }
[ -f "$WORK/phantoms/manifest.csv" ] || "$BIN/deepwml" phantom "$WORK/phantoms" --cases 92 --seed 1 -q
[ -f "$WORK/phantom-test.csv" ] || "$BIN/python" benchmarks/training_mix.py --phantom-test "$WORK/phantoms" "$WORK/phantom-test.csv"
read -r SEED3 SEED4 <<< "${WVAL_SEEDS:-91 92}"
CASES=${WVAL_CASES:-60}
[ -f "$WORK/wval-v3/manifest.csv" ] || "$BIN/deepwml" synth "$WORK/wval-v3" --cases "$CASES" --seed "$SEED3" --synthesis-version 3 -q
[ -f "$WORK/wval-v4/manifest.csv" ] || "$BIN/deepwml" synth "$WORK/wval-v4" --cases "$CASES" --seed "$SEED4" --synthesis-version 4 -q
if [ ! -f "$WORK/wval.csv" ]; then
  "$BIN/python" benchmarks/training_mix.py "$WORK/wval-v3,$WORK/wval-v4" "$WORK/phantoms" "$WORK/wval-all.csv"
  awk -F, 'NR == 1 || $3 == "synthetic"' "$WORK/wval-all.csv" > "$WORK/wval.csv"
fi
evaluate() {  # evaluate MODEL_DIR NAME: its wval and phantom-test reports, once per weights and threshold
  for set in wval phantom-test; do
    [ -f "$WORK/eval-$2/$set/per_volume.csv" ] || \
      "$BIN/deepwml" evaluate "$WORK/$set.csv" -o "$WORK/eval-$2/$set" --model "$1" --split all --overwrite -q
  done
}
evaluate_proxy() {  # evaluate_proxy MODEL_DIR NAME: its report on the near-healthy proxy's heads (3 mm slabs), once
  [ -f "$WORK/eval-$2/wh3d/per_volume.csv" ] || "$BIN/deepwml" evaluate "$WORK/wh3d/manifest.csv" -o "$WORK/eval-$2/wh3d" \
    --model "$1" --thin-slab-mm 3 --split all --overwrite -q
}
S=shipped-$(key "$SHIPPED"); C=candidate-$(key "$CAND")
evaluate "$SHIPPED" "$S"
evaluate "$CAND" "$C"
"$BIN/python" benchmarks/fresh_heads_by_load.py "$WORK/eval-$S/wval" "$WORK/eval-$C/wval"
if [ "${PROXY:-0}" = 1 ]; then
  [ -f "$WORK/wh3d/manifest.csv" ] || "$BIN/deepwml" synth "$WORK/wh3d" --cases 24 --seed "${PROXY_SEED:-95}" \
    --synthesis-version 7 --whole-head-3d -q
  evaluate_proxy "$SHIPPED" "$S"
  evaluate_proxy "$CAND" "$C"
  "$BIN/python" benchmarks/fresh_heads_by_load.py --proxy "$WORK/eval-$S/wh3d" "$WORK/eval-$C/wh3d"
fi
"$BIN/python" benchmarks/fresh_heads_by_load.py --judge "$WORK/eval-$S/wval" "$WORK/eval-$C/wval" \
  "$WORK/eval-$S/phantom-test" "$WORK/eval-$C/phantom-test"
