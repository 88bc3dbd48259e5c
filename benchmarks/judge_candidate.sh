#!/usr/bin/env bash
# The README's rule for a candidate lesion model to replace the bundled one, criteria (1)-(4), in one
# command (README "Training"; the twenty-first to twenty-fifth experiments were judged with it):
#
#   bash benchmarks/judge_candidate.sh CANDIDATE_MODEL_DIR [WORK]      (~10 min on 2 CPU cores the first time)
#
# Makes, once, under WORK (default work-data/judge, git-ignored): the 92 phantoms of the bundled chain (seed 1) and
# their 36 held-out test cases, and the 60 fresh synthetic heads "wval" (30 of synthesis v3 seed 7, 30 of v4 seed 8;
# no model here was trained on them); evaluates the bundled model (cached per weights SHA-256) and the candidate on
# both with the defaults (TTA, brain mask, each card's threshold); prints the four criteria and exits 0 only if all
# pass. Synthetic data only: no real scan is read. Criterion (5), the real floors, is a veto run afterwards:
#   MODEL=CANDIDATE_MODEL_DIR bash benchmarks/real_scans.sh OUT   and   the floors of Testing/Python/real_data_floors.json
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] && [ -f "$1/model.json" ] || { echo "usage: bash benchmarks/judge_candidate.sh CANDIDATE_MODEL_DIR [WORK]" >&2; exit 2; }
CAND=$1
WORK=${2:-work-data/judge}
BIN=.venv/bin
SHIPPED=DeepWML/Resources/Models/default
mkdir -p "$WORK"
sha() { "$BIN/python" -c "import json, sys; print(json.load(open(sys.argv[1] + '/model.json'))['weights_sha256'][:12])" "$1"; }
[ -f "$WORK/phantoms/manifest.csv" ] || "$BIN/deepwml" phantom "$WORK/phantoms" --cases 92 --seed 1 -q
[ -f "$WORK/phantom-test.csv" ] || "$BIN/python" benchmarks/training_mix.py --phantom-test "$WORK/phantoms" "$WORK/phantom-test.csv"
[ -f "$WORK/wval-v3/manifest.csv" ] || "$BIN/deepwml" synth "$WORK/wval-v3" --cases 30 --seed 7 --synthesis-version 3 -q
[ -f "$WORK/wval-v4/manifest.csv" ] || "$BIN/deepwml" synth "$WORK/wval-v4" --cases 30 --seed 8 --synthesis-version 4 -q
if [ ! -f "$WORK/wval.csv" ]; then
  "$BIN/python" benchmarks/training_mix.py "$WORK/wval-v3,$WORK/wval-v4" "$WORK/phantoms" "$WORK/wval-all.csv"
  awk -F, 'NR == 1 || $3 == "synthetic"' "$WORK/wval-all.csv" > "$WORK/wval.csv"
fi
evaluate() {  # evaluate MODEL_DIR NAME: its wval and phantom-test reports, once per weights
  for set in wval phantom-test; do
    [ -f "$WORK/eval-$2/$set/per_volume.csv" ] || \
      "$BIN/deepwml" evaluate "$WORK/$set.csv" -o "$WORK/eval-$2/$set" --model "$1" --split all --overwrite -q
  done
}
S=shipped-$(sha "$SHIPPED"); C=candidate-$(sha "$CAND")
evaluate "$SHIPPED" "$S"
evaluate "$CAND" "$C"
"$BIN/python" benchmarks/fresh_heads_by_load.py "$WORK/eval-$S/wval" "$WORK/eval-$C/wval"
"$BIN/python" benchmarks/fresh_heads_by_load.py --judge "$WORK/eval-$S/wval" "$WORK/eval-$C/wval" \
  "$WORK/eval-$S/phantom-test" "$WORK/eval-$C/phantom-test"
