#!/bin/bash
# How the bundled models 1.0.0 to 1.2.0 were made, and the experiments after them (issue 13): CPU recipe, 2 cores.
#
#   bash benchmarks/train_bundled_model.sh [OUT]          (default work-data/bundled)
#
# Chain: 0.2.0 (phantoms, git c43b84c) --stage 1--> 1.0.0 (git a401d69) --stage 2--> 1.1.0
# (git f5f2904) --stage 3--> 1.2.0 (git 2986285) --stage 9--> 1.4.0 (git 4d0a35f); 1.2.0 --stage 4-->
# 1.3.0-v4 --stage 10--> 1.5.0 --stages 13, 14 (their data) and 16--> 1.6.0 (shipped). Experiments, not
# shipped (docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0"): 1.3.0-v4 --stage 5--> 1.3.0; 1.5.0 --stage 11--> 1.6.0-3d;
# 1.2.0 --stage 6--> 1.3.0-mix; 1.2.0 + 1.3.0-v4 --stage 7--> 1.3.0-wise0.5; 1.3.0-v4 --stage 8--> 1.3.0-v4h.
# Stage 12 trains the bundled brain-mask model deepwml-synth-brain8@1.0.0 (deepwml.brain_mask) from scratch on
# the brain masks of the synthetic heads of stage 11's mix (run stages 10 and 11's synthesis first).
# Each stage fine-tunes the previous model (taken from git, so the chain does not depend on what
# is shipped now), picks the checkpoint by validation Dice on synthetic + phantom validation
# cases, then runs at a lower learning rate.
#  1. 1.0.0: 300 synthetic heads of synthesis v1 (seed 2) + the 0.2.0 phantoms' train/validation
#     cases; 14 epochs lr 5e-4 + 10 at 1.5e-4; ~50 s per epoch of 100 batches (2-core CPU).
#  2. 1.1.0: the same + 240 heads of synthesis v2 (seed 3: lesions as faint as clinical FLAIR
#     shows them, confluent WMH); 14 epochs lr 3e-4 + 10 at 1e-4; ~65 s per epoch.
#  3. 1.2.0: 360 heads of synthesis v3 (seed 4: + skull-stripped cases, plausible confluent
#     loads, the label maps' own lesion labels as white matter) + the phantoms' train/validation
#     cases, from 1.1.0; 14 epochs lr 2e-4 + 24 at 7e-5, 300 batches per epoch in bf16 autocast
#     (2.7x faster per step on this CPU, which has AVX512-BF16; elsewhere set PRECISION=auto).
#  4. 1.3.0-v4: 360 heads of synthesis v4 (seed 5: v3 with lesion contrast spread down to faint
#     and as bright as cortex or less) + the phantoms, from 1.2.0; 8 epochs lr 1.5e-4 + 14 at 5e-5.
#  5. 1.3.0: 360 heads of synthesis v5 (seed 6: v4 with grey matter kept below the lesions) + the
#     phantoms, from 1.3.0-v4; 6 epochs lr 1e-4 + 10 at 4e-5.
#  6. 1.3.0-mix: stage 3's 360 v3 heads and stage 4's 360 v4 heads + the phantoms, from 1.2.0; 8
#     epochs lr 1e-4 + 10 at 4e-5 (an experiment, not shipped). Stages 3-6: 300 batches per epoch, bf16.
#  7. 1.3.0-wise*: no training; 1.2.0 and 1.3.0-v4 interpolated weight by weight (WiSE-FT) at alpha
#     0.25/0.5/0.75, alpha and threshold chosen on 60 fresh synthetic heads (not shipped).
#  8. 1.3.0-v4h: 1.3.0-v4 fine-tuned 8 epochs at 5e-5 with the lesion-free heads of the v3 and v5 sets
#     added (26 % lesion-free heads instead of 12 %; not shipped).
#  9. 1.4.0 (shipped, trained as run 1.3.0-pw): 1.2.0 fine-tuned on stage 8's mix (v4's 360 heads, the
#     lesion-free heads of the v3 and v5 sets, phantoms) with the phantoms listed three times (~1/3
#     of the slices instead of ~1/7); 8 epochs lr 1.5e-4 + to 18 at 5e-5, 300 batches per epoch, bf16.
# 10. 1.5.0 (shipped, trained as run 1.5.0-v4pw): stage 4's 1.3.0-v4 fine-tuned on stage 9's mix
#     (phantom-weighted); 6 epochs lr 1e-4 + to 14 at 5e-5, 300 batches per epoch, bf16.
# 11. 1.6.0-3d (not shipped: two real-data regression floors fail): 1.5.0 fine-tuned on its own mix plus 60 whole-head 1 mm
#     3D heads of synthesis v4 (seed 41, deepwml synth --whole-head-3d), 1.5.0's split kept
#     (benchmarks/mix_with_new_heads.py); 4 epochs lr 1e-4 + to 10 at 5e-5, 300 batches per epoch, bf16.
# 13. 1.6.0-v6: 1.5.0 fine-tuned on its own mix plus 180 heads of synthesis v6 (seed 51: v4 with the
#     real MS masks of one to three patients united per case, heavier loads of real shape), 1.5.0's split
#     kept (mix_with_new_heads.py ... v6); 4 epochs lr 1e-4 + to 10 at 5e-5, 300 batches per epoch, bf16.
#     Not shipped: its rule's heavy-load criterion failed (docs/EXPERIMENTS.md "Lesion-model experiments after 1.2.0").
# 14. 1.6.0-v7: stage 13 on the same 180 heads drawn with synthesis v7 (lesions faint at their rim, full in
#     their core); same recipe. Not shipped: the same criterion failed. (Resumed for 12 more epochs at 5e-5,
#     "1.6.0-v7b", by hand: deepwml train ... --epochs 22 --lr 5e-5 in a copy of its run folder; failed too.)
# 15. 1.6.0-soup (not shipped): the uniform weight average of stages 13 and 14's models (no training;
#     benchmarks/interpolate_weights.py --soup), threshold by the fixed rule on stage 14's validation split.
# 16. 1.6.0 (shipped, trained as run 1.6.0-v67): 1.5.0 fine-tuned on stages 13 and 14's data together
#     (benchmarks/merge_mixes.py: v6-k and v7-k keep their common assignment); 4 epochs lr 1e-4 + to 16 at 5e-5,
#     300 batches per epoch, bf16; then the threshold and the int8 graph.
# 17. 1.6.0-thin (not shipped: its rules failed, README "The thin-slice model"): 1.6.0 fine-tuned on the thin (< 2 mm)
#     cases of stages 16 and 11's mixes (benchmarks/thin_mix.py: 158 thin stacks + 60 whole-head 1 mm heads, their splits
#     kept); 4 epochs lr 1e-4 + to 10 at 5e-5, 300 batches per epoch, bf16; for --thin-model, not as the lesion model.
# 18. 1.7.0-scratch (not shipped: two real floors): the realistic mix from random weights (experiment 30).
# 19. 1.7.0-v8 (experiment 32): stage 18's model fine-tuned on its mix plus 240 heads of synthesis v8 (seed 72: faint,
#     diffuse, unlabelled white-matter brightening) added with benchmarks/mix_with_new_heads.py (stage 18's split
#     kept); 40 epochs at 1.5e-4, 300 batches per epoch, bf16; then the threshold.
# 20. 1.7.0-v9 (experiment 34): stage 18's model fine-tuned on stage 18's mix with its synthetic heads regenerated as
#     synthesis v9 (only visibly brighter lesion voxels labelled) under the same case names, so stage 18's split holds;
#     30 epochs at 1.5e-4, 300 batches per epoch, bf16; then the threshold.
# 21. 1.7.0-v10 (experiment 36): stage 18's recipe from random weights on stage 18's mix with its heads with lesions
#     regenerated as synthesis v10 (every real mask moved by a random rigid motion in MNI space) under the same case
#     names and split (benchmarks/mix_with_regenerated_heads.py, as stage 20); 55 epochs at 5e-4, then to 80 at
#     1.5e-4, 300 batches per epoch, bf16; then the threshold.
# 22. 1.7.0-v11 (experiment 37): stage 20's recipe with the heads regenerated as synthesis v11 (the corticospinal
#     tracts and peritrigonal white matter faintly brighter on both sides, unlabelled); stages 20 and 22 share
#     fine_tune_regenerated (30 epochs at 1.5e-4, 300 batches per epoch, bf16; then the threshold).
# 23. 1.7.0-curriculum (experiment 38): stage 18's recipe and mix started from 0.2.0 (phantoms only) instead of random
#     weights; 50 epochs at 5e-4, then to 75 at 1.5e-4, 300 batches per epoch, bf16; then the threshold.
# 24. 1.7.0, the shipped model (experiment 40): stage 18's model with the white-matter contrast floor experiment 40's
#     rule chose on synthetic heads (voxels below 1.15x the white-matter level removed; benchmarks/contrast_floor_study.py
#     reproduces the choice) written into its card, then its int8 graph. The shipped weights are experiment 30's run;
#     stage 18 is another draw of its split, so its figures will differ a little.
# 25. 1.7.0-v12 (experiment 41): stage 20's recipe with the heads regenerated as synthesis v12 (the hippocampus and
#     amygdala brighter than the cortex in 70 % of the cases, unlabelled), then 1.7.0's contrast floor (voxel, 1.15)
#     written into its card unchanged.
# 26. brain8-1.1.0 (experiment 47, not shipped): a brain-mask network the size of the bundled one (stage 12's options),
#     from scratch on 420 new heads (synthesis v7 seed 140 x360, v7 whole-head 1 mm seed 141 x60), 40 epochs at 5e-4
#     then to 60 at 1.5e-4 (stage 12: 16 and 24). Needs nothing but the phantoms (for the mix script; none enter it).
# Synthetic heads: SynthSeg's 20 whole-head label maps + 27 real MS lesion masks, both free for
# training (README "Synthesis"). No real scan is read: the real evaluation sets
# (lesjak2017-ms-mni and the unlabelled heads) never enter training, tuning or selection.
# STAGES="1 2 3" (the chain to 1.2.0), e.g. "3" (start from the 1.1.0 of git); "3 4 5 10" or, with
# the synthetic sets of stages 3-5 made and stage 4's model trained, "10": the shipped 1.5.0; "9": 1.4.0; "4 5", "6", "7", "8", "11": the experiments
# after 1.2.0 (synthesis v4/v5, v3+v4 mixed, weight interpolation, more
# lesion-free heads), whose
# models failed the phantom test guard and were not shipped.
# Stage 9 needs stage 8's mix (mix-1.3-v4h.csv) but not its model: with stages 3-5 done,
# STAGES="8 9" trains both, or make the mix by hand with stage 8's two mix lines. "13", "14" (after 10): the experiments of
# synthesis v6 and v7; "15", "16" (after 13 and 14): their soup and their data together; "17" (after 11 and 16): the thin-slice model; "18" (after 3-5): experiment 30, the realistic mix from scratch; "19" (after 18): experiment 32, v8 heads added; "20" (after 18): experiment 34, the heads as v9; "21" (after 18): experiment 36, the heads as v10 from random weights; "22" (after 18): experiment 37, the heads as v11; "23" (after 18): experiment 38, stage 18 started from 0.2.0; "24" (after 18): the shipped 1.7.0; "25" (after 18): experiment 41, the heads as v12 with 1.7.0's floor; "26": experiment 47's brain-mask network; "27": experiment 48's white-matter network; "28": experiment 49's mesial-temporal network; "29": experiment 50's thin-slice model for 1.7.0; "30" (after 24): 1.8.0 (experiment 54), 1.7.0 with the gated envelope floor; "31" (after 30): the shipped 1.8.1 (experiment 60), the gate made a ramp. "11 12" (after 10): the shipped
# brain-mask model (stage 12 needs stage 11's mix, not its model). On a GPU, raise EPOCHS and STEPS; training runs on CUDA with --device auto.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-work-data/bundled}
STAGES=${STAGES:-1 2 3}
STEPS=${STEPS:-100}
CROP=${CROP:-160}
BIN=${DEEPWML_BIN:-.venv/bin}  # where deepwml and python are (a test points it at stubs for a dry run)
mkdir -p "$OUT"

model_from_git() {  # model_from_git COMMIT DIR: a shipped model as it was at COMMIT
  [ -f "$2/model.json" ] && return
  mkdir -p "$2"
  git archive "$1" DeepWML/Resources/Models/default | tar -x -C "$2" --strip-components=4
}

synth() {  # synth DIR CASES START SEED VERSION
  [ -f "$1/manifest.csv" ] || $BIN/deepwml synth "$1" --cases "$2" --start "$3" --seed "$4" --synthesis-version "$5"
}

# the first 92 of the 180 phantoms of model 0.2.0 (cases 0-91; generation was cut short for time
# when 1.0.0 was made): their train/validation cases of 0.2.0's split enter the mix
[ -d "$OUT/phantoms" ] || $BIN/deepwml phantom "$OUT/phantoms" --cases 92 --seed 1
$BIN/python benchmarks/training_mix.py --phantom-test "$OUT/phantoms" "$OUT/phantom-test.csv"
if [[ " $STAGES " == *" 1 "* || " $STAGES " == *" 2 "* ]]; then  # stage 3 does not use v1
  synth "$OUT/synth-v1a" 150 0 2 1
  synth "$OUT/synth-v1b" 150 150 2 1
fi
COMMON=(--crop "$CROP" --batch-size 8 --steps-per-epoch "$STEPS" --val-slices 240 --augment-intensity
        --seed 0 --device auto --name deepwml-synth-unet16)
DATA="synthetic whole-head FLAIR made from real anatomy: SynthSeg's 20 whole-head label maps (Billot et \
al. 2023, Apache-2.0) with randomised FLAIR-like appearance, normal bright spots and clinical acquisitions \
(1-8 mm slices), lesions from 27 real MS patients' consensus masks in MNI space (Lesjak et al. 2018, CC-BY; \
patients 07, 19, 26 excluded) registered into each anatomy and MS/NMOSD/CSVD patterns, plus the 0.2.0 \
phantoms' train/validation cases. No real FLAIR image was used for training, tuning or checkpoint selection."

fine_tune() {  # fine_tune VERSION INIT MIX RUN LR1 LR2 NOTES [OPTIONS]: E1 epochs at LR1, then to E2 at LR2
  $BIN/deepwml train "$3" -o "$4" --epochs "$E1" --lr "$5" --init "$2" --model-version "$1" "${COMMON[@]}" --notes "$7" "${@:8}"
  $BIN/deepwml train "$3" -o "$4" --epochs "$E2" --lr "$6" --init "$2" --model-version "$1" "${COMMON[@]}" --notes "$7" "${@:8}"
  echo "model $1: $4/model"
}

E1=14 E2=24
if [[ " $STAGES " == *" 1 "* ]]; then
  model_from_git c43b84c "$OUT/model-0.2.0"
  $BIN/python benchmarks/training_mix.py "$OUT/synth-v1a,$OUT/synth-v1b" "$OUT/phantoms" "$OUT/mix-1.0.csv"
  fine_tune 1.0.0 "$OUT/model-0.2.0" "$OUT/mix-1.0.csv" "$OUT/run-1.0" 5e-4 1.5e-4 \
    "Fine-tuned from deepwml-phantom-unet16@0.2.0 on 300 cases of synthesis v1 (seed 2): $DATA"
fi
if [[ " $STAGES " == *" 2 "* ]]; then
  model_from_git a401d69 "$OUT/model-1.0.0"
  synth "$OUT/synth-v2a" 120 0 3 2
  synth "$OUT/synth-v2b" 120 120 3 2
  $BIN/python benchmarks/training_mix.py "$OUT/synth-v1a,$OUT/synth-v1b,$OUT/synth-v2a,$OUT/synth-v2b" \
    "$OUT/phantoms" "$OUT/mix-1.1.csv"
  fine_tune 1.1.0 "$OUT/model-1.0.0" "$OUT/mix-1.1.csv" "$OUT/run-1.1" 3e-4 1e-4 \
    "Fine-tuned from deepwml-synth-unet16@1.0.0 on 300 cases of synthesis v1 (seed 2) and 240 of \
synthesis v2 (seed 3: fainter lesions, confluent WMH): $DATA"
  # the threshold: chosen on this run's validation cases, written into the card
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.1/model" "$OUT/mix-1.1.csv" \
    "$OUT/run-1.1/split.json" val --record
fi
heads_options() {  # heads_options STEPS: the training options of stages 3-8
  COMMON=(--crop "$CROP" --batch-size 8 --steps-per-epoch "$1" --val-slices 480
    --augment-intensity --seed 0 --device auto --name deepwml-synth-unet16)
}
heads_stage() {  # heads_stage VERSION RUN INIT_DIR SETS LR1 LR2 E1 E2 STEPS NOTES: 360 heads of each
  # synthesis set in SETS ("VERSION:SEED", space-separated) + the phantoms, fine-tuned from INIT_DIR
  # in bf16 into $OUT/RUN (mix $OUT/mix-*.csv named after it), then the threshold chosen on the
  # run's validation cases
  local mix="$OUT/${2/run/mix}.csv" init_id heads folders=() what=() set
  init_id=$($BIN/python -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['name']+'@'+c['version'])" "$3/model.json")
  for set in $4; do
    synth "$OUT/synth-v${set%:*}a" 180 0 "${set#*:}" "${set%:*}"
    synth "$OUT/synth-v${set%:*}b" 180 180 "${set#*:}" "${set%:*}"
    folders+=("$OUT/synth-v${set%:*}a" "$OUT/synth-v${set%:*}b")
    what+=("synthesis v${set%:*} (seed ${set#*:})")
  done
  $BIN/python benchmarks/training_mix.py "$(IFS=,; echo "${folders[*]}")" "$OUT/phantoms" "$mix"
  E1=$7 E2=$8
  heads_options "$9"
  if [ ${#what[@]} -eq 1 ]; then  # the single-set wording of the shipped 1.2.0's card
    heads="360 synthetic whole heads of ${what[0]%)}; ${10})"
  else
    heads="$((360 * ${#what[@]})) synthetic whole heads, 360 of each of $(IFS=,; echo "${what[*]}" | sed 's/,/ and /g') (${10})"
  fi
  fine_tune "$1" "$3" "$mix" "$OUT/$2" "$5" "$6" \
    "Fine-tuned from $init_id on $heads and phantoms: $DATA" --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/$2/model" "$mix" "$OUT/$2/split.json" val --record
}

if [[ " $STAGES " == *" 3 "* ]]; then
  model_from_git f5f2904 "$OUT/model-1.1.0"
  heads_stage 1.2.0 run-1.2 "$OUT/model-1.1.0" 3:4 2e-4 7e-5 "${E1_3:-14}" "${E2_3:-38}" "${STEPS3:-300}" \
    "skull-stripped cases, confluent growth of loads up to 40 ml only, the label maps' own lesion labels \
painted as white matter"
fi
if [[ " $STAGES " == *" 4 "* ]]; then  # an intermediate model, not shipped: stage 5 starts from it
  model_from_git 2986285 "$OUT/model-1.2.0"
  heads_stage 1.3.0-v4 run-1.3-v4 "$OUT/model-1.2.0" 4:5 1.5e-4 5e-5 "${E1_4:-8}" "${E2_4:-22}" "${STEPS4:-300}" \
    "v3 with lesion contrast spread down to faint, 1.1-1.9x white matter and from 0.85x cortex up"
fi
if [[ " $STAGES " == *" 5 "* ]]; then
  heads_stage 1.3.0 run-1.3 "$OUT/run-1.3-v4/model" 5:6 1e-4 4e-5 "${E1_5:-6}" "${E2_5:-16}" "${STEPS5:-300}" \
    "v4 with grey matter kept below the lesions in cases with lesions"
fi
if [[ " $STAGES " == *" 6 "* ]]; then  # the v3 heads of 1.2.0 and the v4 heads of 1.3.0-v4, mixed
  model_from_git 2986285 "$OUT/model-1.2.0"
  heads_stage 1.3.0-mix run-1.3-mix "$OUT/model-1.2.0" "3:4 4:5" 1e-4 4e-5 "${E1_6:-8}" "${E2_6:-18}" "${STEPS6:-300}" \
    "v3's lesions mostly brighter than cortex, v4's spread down to faint"
fi
if [[ " $STAGES " == *" 7 "* ]]; then  # WiSE-FT: 1.2.0 and stage 4's 1.3.0-v4 interpolated (run stage 4 first)
  synth "$OUT/wval-v3" 30 0 7 3  # fresh validation heads: seeds no model here was trained on
  synth "$OUT/wval-v4" 30 0 8 4
  $BIN/python benchmarks/training_mix.py "$OUT/wval-v3,$OUT/wval-v4" "$OUT/phantoms" "$OUT/wval-all.csv"
  awk -F, 'NR == 1 || $3 == "synthetic"' "$OUT/wval-all.csv" > "$OUT/wval.csv"
  # the rule, fixed before any was evaluated: the alpha with the highest median per-volume Dice on
  # wval.csv at its best threshold (0.5 on 2026-11-30: 0.534 at threshold 0.6)
  for alpha in 0.25 0.5 0.75; do
    $BIN/python benchmarks/interpolate_weights.py "$OUT/model-1.2.0" "$OUT/run-1.3-v4/model" "$alpha" \
      "$OUT/wise-$alpha" --model-version "1.3.0-wise$alpha"
    $BIN/python benchmarks/threshold_on_validation.py "$OUT/wise-$alpha" "$OUT/wval.csv" - --record
  done
fi
v4h_mix() {  # the mix of stages 8 and 9: v4's 360 heads, the lesion-free heads of the v3 and v5 sets
  # (v4's appearance when lesion-free) and the phantoms (the sets of stages 3-5 must exist)
  $BIN/python benchmarks/training_mix.py "$OUT/synth-v4a,$OUT/synth-v4b,$OUT/synth-v3a,$OUT/synth-v3b,$OUT/synth-v5a,$OUT/synth-v5b" \
    "$OUT/phantoms" "$OUT/mix-1.3-v4h-all.csv"
  awk -F, 'NR == 1 || $3 != "synthetic" || $5 ~ /\/synth-v4[ab]\// || $4 == "none"' "$OUT/mix-1.3-v4h-all.csv" > "$OUT/mix-1.3-v4h.csv"
}
if [[ " $STAGES " == *" 8 "* ]]; then  # more lesion-free heads: 1.3.0-v4 fine-tuned (run stages 3-5 first)
  v4h_mix
  heads_options "${STEPS8:-300}"
  $BIN/deepwml train "$OUT/mix-1.3-v4h.csv" -o "$OUT/run-1.3-v4h" --epochs "${E_8:-8}" --lr 5e-5 \
    --init "$OUT/run-1.3-v4/model" --model-version 1.3.0-v4h "${COMMON[@]}" --precision "${PRECISION:-bf16}" \
    --notes "Fine-tuned from 1.3.0-v4 on its 360 synthesis-v4 heads plus the 72 lesion-free heads of the v3 and v5 sets (26 % lesion-free instead of 12 %) and phantoms: $DATA"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.3-v4h/model" "$OUT/mix-1.3-v4h.csv" \
    "$OUT/run-1.3-v4h/split.json" val --record
fi
phantom_weighted_mix() {  # the mix of stages 9 and 10: stage 8's rows, then its phantom rows twice
  # more as cases <case>-x1, -x2 of the same patient (so the patient-level split keeps them together)
  v4h_mix
  awk -F, 'NR == 1 {print; next} {print} $3 != "synthetic" {p[++n] = $0}
    END {for (k = 1; k <= 2; k++) for (i = 1; i <= n; i++) {split(p[i], f, ","); line = f[1] "-x" k
         for (j = 2; j <= 6; j++) line = line "," f[j]; print line}}' "$OUT/mix-1.3-v4h.csv" > "$OUT/mix-1.4.csv"
}
if [[ " $STAGES " == *" 9 "* ]]; then  # 1.4.0, shipped before 1.5.0: phantom-weighted (run stages 3-5 first)
  model_from_git 2986285 "$OUT/model-1.2.0"
  phantom_weighted_mix
  heads_options "${STEPS9:-300}"
  E1=${E1_9:-8} E2=${E2_9:-18}
  fine_tune 1.4.0 "$OUT/model-1.2.0" "$OUT/mix-1.4.csv" "$OUT/run-1.4" 1.5e-4 5e-5 \
    "Fine-tuned from deepwml-synth-unet16@1.2.0 on 360 synthesis-v4 heads (seed 5) plus the 72 lesion-free heads of \
the synthesis v3 (seed 4) and v5 (seed 6) sets, and the 0.2.0 phantoms' train/validation cases listed three times \
(phantom-weighted): $DATA" --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.4/model" "$OUT/mix-1.4.csv" "$OUT/run-1.4/split.json" val --record
  # the int8 graph of --precision int8, calibrated on the same training manifest
  $BIN/deepwml export-onnx "$OUT/run-1.4/model" --int8 --calibration "$OUT/mix-1.4.csv" -q \
    --calibration-note "96 canvas slices of 24 evenly spaced cases of this model's training manifest; no real scan"
fi
if [[ " $STAGES " == *" 10 "* ]]; then  # 1.5.0, shipped: 1.3.0-v4 on stage 9's phantom-weighted mix
  # (run stages 3-5 first; stage 4 trains 1.3.0-v4)
  phantom_weighted_mix
  heads_options "${STEPS10:-300}"
  E1=${E1_10:-6} E2=${E2_10:-14}
  fine_tune 1.5.0 "$OUT/run-1.3-v4/model" "$OUT/mix-1.4.csv" "$OUT/run-1.5" 1e-4 5e-5 \
    "Fine-tuned from deepwml-synth-unet16@1.3.0-v4 on 1.4.0's training mix: 360 synthesis-v4 heads (seed 5) plus the \
72 lesion-free heads of the synthesis v3 (seed 4) and v5 (seed 6) sets, and the 0.2.0 phantoms' train/validation cases \
listed three times (phantom-weighted): $DATA" --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.5/model" "$OUT/mix-1.4.csv" "$OUT/run-1.5/split.json" val --record
  $BIN/deepwml export-onnx "$OUT/run-1.5/model" --int8 --calibration "$OUT/mix-1.4.csv" -q \
    --calibration-note "96 canvas slices of 24 evenly spaced cases of this model's training manifest; no real scan"
fi
if [[ " $STAGES " == *" 11 "* ]]; then  # 1.6.0-3d, not shipped: 1.5.0 + whole-head 1 mm 3D heads (run stage 10 first)
  [ -f "$OUT/synth3d-a/manifest.csv" ] || $BIN/deepwml synth "$OUT/synth3d-a" --cases 30 --start 0 --seed 41 --synthesis-version 4 --whole-head-3d
  [ -f "$OUT/synth3d-b/manifest.csv" ] || $BIN/deepwml synth "$OUT/synth3d-b" --cases 30 --start 30 --seed 41 --synthesis-version 4 --whole-head-3d
  mkdir -p "$OUT/run-1.6"
  $BIN/python benchmarks/mix_with_new_heads.py "$OUT/mix-1.4.csv" "$OUT/run-1.5/split.json" \
    "$OUT/synth3d-a,$OUT/synth3d-b" "$OUT/mix-1.6.csv" "$OUT/run-1.6/split.json"
  heads_options "${STEPS11:-300}"
  E1=${E1_11:-4} E2=${E2_11:-10}
  fine_tune 1.6.0-3d "$OUT/run-1.5/model" "$OUT/mix-1.6.csv" "$OUT/run-1.6" 1e-4 5e-5 \
    "Fine-tuned from deepwml-synth-unet16@1.5.0 on its own training mix plus 60 whole-head 1 mm 3D heads of synthesis v4 \
(seed 41): $DATA" --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.6/model" "$OUT/mix-1.6.csv" "$OUT/run-1.6/split.json" val --record
  $BIN/deepwml export-onnx "$OUT/run-1.6/model" --int8 --calibration "$OUT/mix-1.6.csv" -q \
    --calibration-note "96 canvas slices of 24 evenly spaced cases of this model's training manifest; no real scan"
fi
mask_from_scratch() {  # mask_from_scratch TASK NAME VERSION MIX RUN STEPS E1 E2 NOTES: a mask network (brain, white
  # matter or mesial temporal; width 8 at half the canvas resolution) from random weights on MIX's masks, E1 epochs at 5e-4, then to E2 at
  # 1.5e-4; then its ONNX graph
  local options=(--task "$1" --input-pool 2 --base-channels 8 --crop "$CROP" --batch-size 8 --steps-per-epoch "$6"
                 --val-slices 480 --augment-intensity --seed 0 --device auto --name "$2" --model-version "$3"
                 --precision "${PRECISION:-bf16}")
  $BIN/deepwml train "$4" -o "$5" --epochs "$7" --lr 5e-4 "${options[@]}" --notes "$9"
  $BIN/deepwml train "$4" -o "$5" --epochs "$8" --lr 1.5e-4 "${options[@]}" --notes "$9"
  $BIN/deepwml export-onnx "$5/model" -q
}
brain_from_scratch() {  # brain_from_scratch VERSION MIX RUN STEPS E1 E2 NOTES: the brain-mask network
  mask_from_scratch brain deepwml-synth-brain8 "$@"
}
if [[ " $STAGES " == *" 12 "* ]]; then  # the brain-mask model (shipped in Models/brain): width 8 at half the canvas resolution, from scratch
  # on the brain masks (brain.nii.gz) of stage 11's 492 synthetic heads (v3/v4/v5 and whole-head 1 mm); no phantom
  [ -f "$OUT/brain-mix.csv" ] || $BIN/python benchmarks/training_mix.py --brain-labels "$OUT/mix-1.6.csv" "$OUT/brain-mix.csv"
  brain_from_scratch 1.0.0 "$OUT/brain-mix.csv" "$OUT/run-brain" "${STEPS12:-300}" "${E1_12:-16}" "${E2_12:-24}" \
    "Brain mask (not lesions): trained from scratch on the brain masks of 492 synthetic whole heads made from \
the 20 SynthSeg label maps (synthesis v3/v4/v5 and whole-head 1 mm v4 sets of the 1.5.0 and 1.6.0-3d training mixes); \
no real scan"
fi
new_heads_stage() {  # new_heads_stage N V WHAT: stages 13-14, 1.5.0 fine-tuned on its own mix plus 180 heads of
  # synthesis V (seed 51), 1.5.0's split kept; WHAT describes the version in the card's notes (run stage 10 first)
  synth "$OUT/synth-v$2a" 90 0 51 "$2"
  synth "$OUT/synth-v$2b" 90 90 51 "$2"
  mkdir -p "$OUT/run-1.6-v$2"
  $BIN/python benchmarks/mix_with_new_heads.py "$OUT/mix-1.4.csv" "$OUT/run-1.5/split.json" \
    "$OUT/synth-v$2a,$OUT/synth-v$2b" "$OUT/mix-1.6-v$2.csv" "$OUT/run-1.6-v$2/split.json" "v$2"
  local steps="STEPS$1" e1="E1_$1" e2="E2_$1"
  heads_options "${!steps:-300}"
  E1=${!e1:-4} E2=${!e2:-10}
  fine_tune "1.6.0-v$2" "$OUT/run-1.5/model" "$OUT/mix-1.6-v$2.csv" "$OUT/run-1.6-v$2" 1e-4 5e-5 \
    "Fine-tuned from deepwml-synth-unet16@1.5.0 on its own training mix plus 180 heads of synthesis v$2 (seed 51: $3): \
$DATA" --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.6-v$2/model" "$OUT/mix-1.6-v$2.csv" \
    "$OUT/run-1.6-v$2/split.json" val --record
}
V6_WHAT="v4 with the real MS masks of one to three patients united per case"
if [[ " $STAGES " == *" 13 "* ]]; then new_heads_stage 13 6 "$V6_WHAT"; fi  # 1.6.0-v6 (not shipped)
V7_WHAT="$V6_WHAT, lesions faint at their rim and full in their core"
if [[ " $STAGES " == *" 14 "* ]]; then  # 1.6.0-v7 (not shipped): the same heads, lesions faint at the rim
  new_heads_stage 14 7 "$V7_WHAT"
fi
if [[ " $STAGES " == *" 15 "* ]]; then  # 1.6.0-soup (not shipped): stages 13 and 14's models averaged (run them first)
  $BIN/python benchmarks/interpolate_weights.py --soup "$OUT/run-1.6-v6/model" "$OUT/run-1.6-v7/model" \
    "$OUT/soup-1.6" --model-version 1.6.0-soup
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/soup-1.6" "$OUT/mix-1.6-v7.csv" "$OUT/run-1.6-v7/split.json" val --record
fi
if [[ " $STAGES " == *" 16 "* ]]; then  # 1.6.0-v67: 1.5.0 on stages 13 and 14's data together (their synthesis first)
  mkdir -p "$OUT/run-1.6-v67"
  $BIN/python benchmarks/merge_mixes.py "$OUT/mix-1.6-v7.csv" "$OUT/run-1.6-v7/split.json" \
    "$OUT/mix-1.6-v6.csv" "$OUT/run-1.6-v6/split.json" "$OUT/mix-1.6-v67.csv" "$OUT/run-1.6-v67/split.json"
  heads_options "${STEPS16:-300}"
  E1=${E1_16:-4} E2=${E2_16:-16}
  model_from_git 581a3d1 "$OUT/model-1.5.0"  # the shipped 1.5.0, as the run started from it
  fine_tune 1.6.0-v67 "$OUT/model-1.5.0" "$OUT/mix-1.6-v67.csv" "$OUT/run-1.6-v67" 1e-4 5e-5 \
    "Fine-tuned from deepwml-synth-unet16@1.5.0 on its own training mix plus 180 heads of synthesis v6 (seed 51: \
$V6_WHAT) and the same 180 heads drawn as synthesis v7 (lesions faint at their rim and full in their core): $DATA" \
    --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-1.6-v67/model" "$OUT/mix-1.6-v67.csv" \
    "$OUT/run-1.6-v67/split.json" val --record
  $BIN/deepwml export-onnx "$OUT/run-1.6-v67/model" --int8 --calibration "$OUT/mix-1.6-v67.csv" -q \
    --calibration-note "96 canvas slices of 24 evenly spaced cases of this model's training manifest; no real scan"
fi
if [[ " $STAGES " == *" 17 "* ]]; then  # 1.6.0-thin (not shipped): a thin-slice model (--thin-model) from 1.6.0 (run 11 and 16 first)
  mkdir -p "$OUT/run-thin"
  $BIN/python benchmarks/thin_mix.py "$OUT/mix-1.6-v67.csv" "$OUT/run-1.6-v67/split.json" "$OUT/mix-1.6.csv" \
    "$OUT/run-1.6/split.json" "$OUT/mix-thin.csv" "$OUT/run-thin/split.json"
  heads_options "${STEPS17:-300}"
  COMMON=("${COMMON[@]/deepwml-synth-unet16/deepwml-synth-unet16-thin}")
  E1=${E1_17:-4} E2=${E2_17:-10}
  model_from_git 92069f0 "$OUT/model-1.6.0"  # the shipped 1.6.0, as the run started from it
  fine_tune 1.6.0-thin "$OUT/model-1.6.0" "$OUT/mix-thin.csv" "$OUT/run-thin" 1e-4 5e-5 \
    "Thin-slice model: fine-tuned from deepwml-synth-unet16@1.6.0 on the thin (< 2 mm) synthetic heads of 1.6.0's training \
mix (158 stacks of synthesis v4/v6/v7) plus 60 whole-head 1 mm 3D heads of synthesis v4 (seed 41): $DATA" \
    --precision "${PRECISION:-bf16}"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-thin/model" "$OUT/mix-thin.csv" "$OUT/run-thin/split.json" val --record
fi
from_scratch() {  # from_scratch VERSION MIX RUN E1 E2 NOTES [INIT]: random weights (no --init) or INIT's, E1 epochs at
  # 5e-4, then to E2 at 1.5e-4 (stages 18, 21 and 23, with heads_options' COMMON); then the threshold on the run's
  # validation split
  for stage in "$4 5e-4" "$5 1.5e-4"; do
    read -r epochs lr <<< "$stage"
    $BIN/deepwml train "$2" -o "$3" --base-channels 16 --epochs "$epochs" --lr "$lr" --model-version "$1" "${COMMON[@]}" \
      --precision "${PRECISION:-bf16}" --notes "$6" ${7:+--init "$7"}
  done
  $BIN/python benchmarks/threshold_on_validation.py "$3/model" "$2" "$3/split.json" val --record
}
if [[ " $STAGES " == *" 18 "* ]]; then  # 1.7.0-scratch (not shipped: real floors): the realistic mix from random weights
  # (run stages 3-5 first for the v3/v4/v5 sets). Experiment 30's recipe; its run used experiment 25's mix, whose
  # phantom copies were named by training_mix.py --phantom-copies 3, so this split is another draw of the same recipe.
  phantom_weighted_mix
  synth "$OUT/synth-v6-s71" 180 0 71 6
  synth "$OUT/synth-v7-s71" 180 0 71 7
  $BIN/python benchmarks/training_mix.py "$OUT/synth-v6-s71,$OUT/synth-v7-s71" "$OUT/phantoms" "$OUT/mix-s71-all.csv" --same-heads
  { cat "$OUT/mix-1.4.csv"
    awk -F, 'NR > 1 && $3 == "synthetic" {OFS=","; $1="s71-"$1; $2="s71-"$2; print}' "$OUT/mix-s71-all.csv"; } > "$OUT/mix-scratch.csv"
  heads_options "${STEPS18:-300}"
  SCRATCH_NOTES="Trained from random weights (no --init) on 1.5.0's training mix (360 synthesis-v4 heads seed 5, the 72 \
lesion-free heads of synthesis v3 seed 4 and v5 seed 6, the phantoms' train/validation cases listed three times) plus 180 \
heads of synthesis v6 (seed 71) and the same heads as v7: $DATA"
  from_scratch 1.7.0-scratch "$OUT/mix-scratch.csv" "$OUT/run-scratch" "${E1_18:-100}" "${E2_18:-140}" "$SCRATCH_NOTES"
fi
if [[ " $STAGES " == *" 19 "* ]]; then  # 1.7.0-v8: stage 18's model taught to leave faint diffuse white-matter
  # brightening alone. Experiment 32's run split its new heads 144/48/48 (make_split on them alone); mix_with_new_heads.py
  # splits them 44/60 train, 8/60 validation, so this is another draw of the same recipe.
  synth "$OUT/synth-v8-s72" 240 0 72 8
  $BIN/python benchmarks/mix_with_new_heads.py "$OUT/mix-scratch.csv" "$OUT/run-scratch/split.json" "$OUT/synth-v8-s72" \
    "$OUT/mix-v8.csv" "$OUT/split-v8.json" s72v8
  mkdir -p "$OUT/run-v8"
  [ -f "$OUT/run-v8/split.json" ] || cp "$OUT/split-v8.json" "$OUT/run-v8/split.json"
  heads_options "${STEPS19:-300}"
  $BIN/deepwml train "$OUT/mix-v8.csv" -o "$OUT/run-v8" --init "$OUT/run-scratch/model" --base-channels 16 \
    --epochs "${E19:-40}" --lr 1.5e-4 --model-version 1.7.0-v8 "${COMMON[@]}" --precision "${PRECISION:-bf16}" \
    --notes "Fine-tuned from 1.7.0-scratch (stage 18: random weights, 1.5.0's mix + v6/v7 heads of seed 71) on the same \
mix plus 240 heads of synthesis v8 (seed 72: v7 + faint, diffuse, unlabelled white-matter brightening): $DATA"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-v8/model" "$OUT/mix-v8.csv" "$OUT/run-v8/split.json" val --record
fi
stage18_split() {  # stage18_split RUN: RUN starts with stage 18's split (run stage 18 first), unless it has one
  mkdir -p "$1"
  [ -f "$1/split.json" ] || cp "$OUT/run-scratch/split.json" "$1/split.json"
}
regenerated_heads() {  # regenerated_heads V: stage 18's mix with its heads as synthesis V (mix-vV.csv), stage 18's
  # split in run-vV (stages 20, 21 and 22; run stage 18's data first): every v4 head of seed 5 and every v6/v7 head of
  # seed 71 becomes the head of synthesis V with the same seed and index (v6 and v7 rows both point to it)
  synth "$OUT/synth-v$1-s5" 360 0 5 "$1"
  synth "$OUT/synth-v$1-s71" 180 0 71 "$1"
  $BIN/python benchmarks/mix_with_regenerated_heads.py "$OUT/mix-scratch.csv" "$OUT/mix-v$1.csv" \
    "synth-v4[ab]=$OUT/synth-v$1-s5" "synth-v[67]-s71=$OUT/synth-v$1-s71"
  stage18_split "$OUT/run-v$1"
}
fine_tune_regenerated() {  # fine_tune_regenerated V STEPS EPOCHS NOTES: stage 18's model fine-tuned on its mix with
  # the heads regenerated as synthesis V (regenerated_heads), EPOCHS at 1.5e-4 of STEPS batches (stages 20 and 22, each
  # with its own STEPSnn/Enn knobs); then the threshold
  regenerated_heads "$1"
  heads_options "$2"
  $BIN/deepwml train "$OUT/mix-v$1.csv" -o "$OUT/run-v$1" --init "$OUT/run-scratch/model" --base-channels 16 \
    --epochs "$3" --lr 1.5e-4 --model-version "1.7.0-v$1" "${COMMON[@]}" --precision "${PRECISION:-bf16}" \
    --notes "Fine-tuned from 1.7.0-scratch (stage 18) on the same mix with its synthetic heads regenerated as $4: $DATA"
  $BIN/python benchmarks/threshold_on_validation.py "$OUT/run-v$1/model" "$OUT/mix-v$1.csv" "$OUT/run-v$1/split.json" \
    val --record
}
if [[ " $STAGES " == *" 20 "* ]]; then  # 1.7.0-v9: stage 18's model on its own mix, the heads relabelled as v9
  # (only visibly brighter lesion voxels labelled). Experiment 34 regenerated experiment 25's heads (360 of seed 5,
  # 180 of seed 71); stage 18's mix holds the same recipe's heads, so this regenerates those.
  fine_tune_regenerated 9 "${STEPS20:-300}" "${E20:-30}" \
    "synthesis v9 (v7's images, only visibly brighter lesion voxels labelled)"
fi
if [[ " $STAGES " == *" 21 "* ]]; then  # 1.7.0-v10 (experiment 36): stage 18's recipe from random weights, its heads
  # with lesions regenerated as synthesis v10 (real masks moved by random rigid motions) under the same names and split
  # (run stage 18's data first: its mix and split). Experiment 36 ran these epochs (55, then to 80) on experiment
  # 25's mix and split.
  regenerated_heads 10
  heads_options "${STEPS21:-300}"
  from_scratch 1.7.0-v10 "$OUT/mix-v10.csv" "$OUT/run-v10" "${E1_21:-55}" "${E2_21:-80}" "Trained from random weights \
(no --init) on stage 18's mix with its synthetic heads with lesions regenerated as synthesis v10 (v7 with every real mask \
moved by a random rigid motion in MNI space, up to 25 mm and 20 degrees): $DATA"
fi
if [[ " $STAGES " == *" 22 "* ]]; then  # 1.7.0-v11 (experiment 37): stage 18's model fine-tuned on its own mix, the
  # heads regenerated as synthesis v11 (normal symmetric tract brightening, unlabelled); run stage 18 first. Experiment
  # 37 fine-tuned experiment 30's model on experiment 25's mix and split, as experiment 34 did.
  fine_tune_regenerated 11 "${STEPS22:-300}" "${E22:-30}" "synthesis v11 (v7 with the corticospinal tracts and \
peritrigonal white matter faintly brighter on both sides, unlabelled)"
fi
if [[ " $STAGES " == *" 23 "* ]]; then  # 1.7.0-curriculum (experiment 38): stage 18's recipe and data, but started from
  # 0.2.0 (random weights trained on the phantoms only) instead of random weights: does the phantom start keep the
  # chain's restraint on faint brightening? Run stage 18 first (its mix and split). Experiment 38 ran 50, then to 75
  # epochs on experiment 25's mix and 30's split.
  model_from_git c43b84c "$OUT/model-0.2.0"
  stage18_split "$OUT/run-curriculum"
  heads_options "${STEPS23:-300}"
  from_scratch 1.7.0-curriculum "$OUT/mix-scratch.csv" "$OUT/run-curriculum" "${E1_23:-50}" "${E2_23:-75}" "Started \
from deepwml-phantom-unet16@0.2.0 (random weights trained on the phantoms of one template brain only) and trained with stage \
18's recipe on its mix: $DATA" "$OUT/model-0.2.0"
fi
if [[ " $STAGES " == *" 24 "* ]]; then  # 1.7.0 (experiment 40, shipped): stage 18's model + the contrast floor; run 18 first
  mkdir -p "$OUT/model-1.7.0"
  cp "$OUT/run-scratch/model/model.json" "$OUT/run-scratch/model/model.safetensors" "$OUT/model-1.7.0/"
  $BIN/python benchmarks/contrast_floor_study.py --record "$OUT/model-1.7.0" --factors 1.15 --modes voxel \
    --why "experiment 40's rule (README): the floor with the best mean paired Dice gain over 1.6.0 on 60 synthetic heads \
among those no worse than 1.6.0 on the brightening probe and on lesion-free heads; no real scan"
  $BIN/deepwml export-onnx "$OUT/model-1.7.0" --int8 --calibration "$OUT/mix-scratch.csv" -q \
    --calibration-note "96 canvas slices of 24 evenly spaced cases of this model's training manifest; no real scan"
fi
if [[ " $STAGES " == *" 25 "* ]]; then  # 1.7.0-v12 (experiment 41): stage 18's model fine-tuned on its own mix, the heads
  # regenerated as synthesis v12 (normally bright hippocampus and amygdala, unlabelled), with 1.7.0's floor; run 18 first.
  # Experiment 41 fine-tuned experiment 30's model on experiment 25's mix and split, as experiments 34 and 37 did.
  fine_tune_regenerated 12 "${STEPS25:-300}" "${E25:-30}" "synthesis v12 (v7 with the hippocampus and amygdala drawn \
1.0-1.25x the case's cortex in 70 % of the cases, unlabelled)"
  $BIN/python benchmarks/contrast_floor_study.py --record "$OUT/run-v12/model" --factors 1.15 --modes voxel \
    --why "1.7.0's floor, unchanged (experiment 41's rule fixed it before the run; experiment 40 chose it on synthetic heads only)"
fi
if [[ " $STAGES " == *" 26 "* ]]; then  # brain8-1.1.0 (experiment 47, not shipped): a brain-mask network of the same size as the
  # bundled one, from scratch on 420 new synthetic heads (v7 seed 140 with per-case protocols, v7 whole-head 1 mm seed 141)
  # and 2.5x its schedule; its mask lets less non-brain through, but the lesion Dice it gives failed the rule's bound.
  # The folders' names matter: the clashing set's case IDs get its folder's name, and the split follows the IDs.
  [ -f "$OUT/b47/train-v7/manifest.csv" ] || $BIN/deepwml synth "$OUT/b47/train-v7" --cases 360 --seed 140 --synthesis-version 7
  [ -f "$OUT/b47/train-wh3d/manifest.csv" ] || $BIN/deepwml synth "$OUT/b47/train-wh3d" --cases 60 --seed 141 \
    --synthesis-version 7 --whole-head-3d
  [ -f "$OUT/mix-brain-b.csv" ] || $BIN/python benchmarks/training_mix.py "$OUT/b47/train-v7,$OUT/b47/train-wh3d" \
    "$OUT/phantoms" "$OUT/mix-brain-b.csv"
  [ -f "$OUT/brain-mix-b.csv" ] || $BIN/python benchmarks/training_mix.py --brain-labels "$OUT/mix-brain-b.csv" "$OUT/brain-mix-b.csv"
  brain_from_scratch 1.1.0 "$OUT/brain-mix-b.csv" "$OUT/run-brain-b" "${STEPS26:-300}" "${E1_26:-40}" "${E2_26:-60}" \
    "Brain mask (not lesions): trained from scratch on the brain masks of 420 synthetic whole heads made from the \
20 SynthSeg label maps (synthesis v7 seed 140 x360 with per-case protocols, v7 whole-head 1 mm seed 141 x60); no real scan. Experiment 47."
fi
if [[ " $STAGES " == *" 27 "* ]]; then  # wm8-1.0.0 (experiment 48): the white-matter network, the brain network's size, from
  # scratch on the white matter (white_matter.nii.gz: white matter, brain stem, ventral diencephalon and the drawn lesions)
  # of 240 new synthetic heads (v7 seed 142 with per-case protocols, v7 whole-head 1 mm seed 143); ~16 min on 2 CPU cores
  [ -f "$OUT/b48/train-v7/manifest.csv" ] || $BIN/deepwml synth "$OUT/b48/train-v7" --cases 200 --seed 142 --synthesis-version 7
  [ -f "$OUT/b48/train-wh3d/manifest.csv" ] || $BIN/deepwml synth "$OUT/b48/train-wh3d" --cases 40 --seed 143 \
    --synthesis-version 7 --whole-head-3d
  [ -f "$OUT/mix-wm.csv" ] || $BIN/python benchmarks/training_mix.py "$OUT/b48/train-v7,$OUT/b48/train-wh3d" \
    "$OUT/phantoms" "$OUT/mix-wm.csv"
  [ -f "$OUT/wm-mix.csv" ] || $BIN/python benchmarks/training_mix.py --white-matter-labels "$OUT/mix-wm.csv" "$OUT/wm-mix.csv"
  mask_from_scratch white-matter deepwml-synth-wm8 1.0.0 "$OUT/wm-mix.csv" "$OUT/run-wm" "${STEPS27:-300}" "${E1_27:-24}" \
    "${E2_27:-36}" "White matter (not lesions): trained from scratch on the white matter (cerebral and cerebellar white \
matter, brain stem, ventral diencephalon, with the drawn lesions) of 240 synthetic whole heads made from the 20 SynthSeg \
label maps (synthesis v7 seed 142 x200 with per-case protocols, v7 whole-head 1 mm seed 143 x40); no real scan. Experiment 48."
fi
if [[ " $STAGES " == *" 28 "* ]]; then  # mt8-1.0.0 (experiment 49): the mesial-temporal network, the same size, from scratch
  # on the hippocampus and amygdala (mesial_temporal.nii.gz: labels 17/18/53/54 without the drawn lesions) of 240 new
  # synthetic heads (v12 seed 146 with per-case protocols, v12 whole-head 1 mm seed 147); ~16 min on 2 CPU cores
  [ -f "$OUT/b49/train-v12/manifest.csv" ] || $BIN/deepwml synth "$OUT/b49/train-v12" --cases 200 --seed 146 \
    --synthesis-version 12
  [ -f "$OUT/b49/train-wh3d/manifest.csv" ] || $BIN/deepwml synth "$OUT/b49/train-wh3d" --cases 40 --seed 147 \
    --synthesis-version 12 --whole-head-3d
  [ -f "$OUT/mix-mt.csv" ] || $BIN/python benchmarks/training_mix.py "$OUT/b49/train-v12,$OUT/b49/train-wh3d" \
    "$OUT/phantoms" "$OUT/mix-mt.csv"
  [ -f "$OUT/mt-mix.csv" ] || $BIN/python benchmarks/training_mix.py --mesial-temporal-labels "$OUT/mix-mt.csv" \
    "$OUT/mt-mix.csv"
  mask_from_scratch mesial-temporal deepwml-synth-mt8 1.0.0 "$OUT/mt-mix.csv" "$OUT/run-mt" "${STEPS28:-300}" \
    "${E1_28:-24}" "${E2_28:-36}" "Hippocampus and amygdala (not lesions): trained from scratch on the hippocampus and \
amygdala (SynthSeg labels 17/18/53/54, without the drawn lesions) of 240 synthetic whole heads made from the 20 SynthSeg \
label maps (synthesis v12 seed 146 x200 with per-case protocols, v12 whole-head 1 mm seed 147 x40); no real scan. \
Experiment 49."
fi
if [[ " $STAGES " == *" 29 "* ]]; then  # 1.7.0-thin (experiment 50, not shipped: +0.006 on 40 new 1 mm heads, the bar +0.02):
  # the bundled 1.7.0 fine-tuned on 100 new whole-head 1 mm heads (v7 seed 151), 10 epochs at 1e-4, for --thin-model;
  # 1.7.0's threshold and floor, fixed by the rule before training; ~150 s per epoch on 2 CPU cores
  [ -f "$OUT/b50/train-thin/manifest.csv" ] || $BIN/deepwml synth "$OUT/b50/train-thin" --cases 100 --seed 151 \
    --synthesis-version 7 --whole-head-3d
  $BIN/deepwml train "$OUT/b50/train-thin/manifest.csv" -o "$OUT/run-1.7.0-thin" --epochs "${E29:-10}" --lr 1e-4 \
    --init bundled --crop 160 --batch-size 8 --steps-per-epoch "${STEPS29:-300}" --val-slices 480 --augment-intensity \
    --seed 0 --device auto --precision bf16 --name deepwml-synth-unet16-thin --model-version 1.7.0-thin --notes "Thin-slice \
model (--thin-model): deepwml-synth-unet16@1.7.0's network fine-tuned on 100 synthetic whole-head 1 mm FLAIR heads \
(synthesis v7 seed 151, deepwml synth --whole-head-3d) made from SynthSeg's 20 whole-head label maps (Billot et al. 2023, \
Apache-2.0) and 27 real MS patients' consensus masks in MNI space (Lesjak et al. 2018, CC-BY; patients 07, 19, 26 \
excluded); no real FLAIR. Threshold 0.7 and contrast floor (voxel 1.15) are 1.7.0's, fixed by experiment 50's rule before \
training."
  # the threshold is 1.7.0's (the rule fixed it; none is chosen on this run), written into the card with why
  $BIN/python -c "import json, sys; p = sys.argv[1]; c = json.load(open(p)); c['threshold'] = 0.7; \
c.setdefault('metrics', {})['threshold_selection'] = {'chosen': 0.7, 'why': sys.argv[2]}; json.dump(c, open(p, 'w'), indent=2)" \
    "$OUT/run-1.7.0-thin/model/model.json" "1.7.0's threshold, fixed by experiment 50's rule (work-data/b40/RULE-thin.md) \
before training: one threshold for every input"
  $BIN/python benchmarks/contrast_floor_study.py --record "$OUT/run-1.7.0-thin/model" --factors 1.15 --modes voxel \
    --why "1.7.0's floor, unchanged (experiment 50's rule fixed it before the run; experiment 40 chose it on synthetic heads only)"
  $BIN/deepwml export-onnx "$OUT/run-1.7.0-thin/model" -q
fi
if [[ " $STAGES " == *" 30 "* ]]; then  # the shipped 1.8.0 (experiment 54; shipped 2026-12-03 after its fourth CPU veto, once
  # the engine's exact speed-ups had made room): 1.7.0's weights, graphs and threshold with the contrast floor's accurate
  # white-matter level inside the white matter's envelope on scans with a confluent load; run 24 first.
  # No training; the weights, and so the ONNX and int8 graphs, are 1.7.0's (byte for byte).
  mkdir -p "$OUT/model-1.8.0"
  cp "$OUT/model-1.7.0/"* "$OUT/model-1.8.0/"
  $BIN/python -c "import json, sys; p = sys.argv[1]; c = json.load(open(p)); c['version'] = '1.8.0'; \
c['notes'] = c.get('notes', '') + ' ' + sys.argv[2]; json.dump(c, open(p, 'w'), indent=2)" \
    "$OUT/model-1.8.0/model.json" "1.8.0 (2026-12-03, experiment 54, README 'White-matter restriction'): the same network, \
threshold and graphs as 1.7.0; only the contrast floor changed: on a scan whose marked components larger than 1 ml inside \
the white matter's envelope total at least 20 ml, their voxels there are held to 1.15x the flat-above-p25 white-matter \
level instead of the above-median level, which bright cortex pulls up. Chosen and judged on synthetic heads only."
  $BIN/python benchmarks/contrast_floor_study.py --record "$OUT/model-1.8.0" --factors 1.15 --modes voxel \
    --levels flat-in-envelope --min-load-ml 20 --why "experiment 54's rule (work-data/b42/RULE-envelope-gate.md, README \
'White-matter restriction'): 1.7.0's voxel floor 1.15, but inside the white matter's envelope the flat-above-p25 level for \
marked components > 1 ml on scans whose such marks total >= 20 ml (G chosen among 5/10/20/40 ml on experiment 53's spent \
synthetic sets); judged on fresh synthetic heads; no real scan"
fi
if [[ " $STAGES " == *" 31 "* ]]; then  # the shipped 1.8.1 (experiment 60): 1.8.0 with its 20 ml gate made
  # a ramp, so the result never jumps at the gate; run 30 first. No training: weights, graphs and threshold are
  # 1.7.0's (byte for byte).
  mkdir -p "$OUT/model-1.8.1"
  cp "$OUT/model-1.8.0/"* "$OUT/model-1.8.1/"
  $BIN/python -c "import json, sys; p = sys.argv[1]; c = json.load(open(p)); c['version'] = '1.8.1'; \
c['notes'] = c.get('notes', '') + ' ' + sys.argv[2]; json.dump(c, open(p, 'w'), indent=2)" \
    "$OUT/model-1.8.1/model.json" "1.8.1 (2026-12-04, experiment 60, docs/EXPERIMENTS.md): the same network, \
threshold and graphs as 1.7.0 and 1.8.0; only the contrast floor's gate changed: 1.8.0 used the flat white-matter \
level inside the envelope from 20 ml of large marked components on and not at all below, so a load near 20 ml could \
keep or lose most of its marks for a small change upstream; 1.8.1 blends that level in from 10 ml (none of it) to \
20 ml (all of it). Chosen and judged on synthetic heads only."
  $BIN/python benchmarks/contrast_floor_study.py --record "$OUT/model-1.8.1" --factors 1.15 --modes voxel \
    --levels flat-in-envelope --min-load-ml 10 --full-load-ml 20 --why "experiment 60's rule \
(work-data/b48/RULE-soft-gate.md, docs/EXPERIMENTS.md): 1.8.0's floor with its 20 ml gate made a ramp, the \
envelope's flat-above-p25 level blended in geometrically from 10 ml of marked components > 1 ml inside the envelope \
to 20 ml (the ramp chosen among (10, 20), (15, 25) and (20, 30) ml on experiment 56's spent synthetic sets); judged \
on fresh synthetic heads; no real scan chose anything"
fi
