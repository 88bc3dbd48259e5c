#!/bin/bash
# Accuracy on real scans (issue 10): every figure of the README section "Accuracy on real scans".
# Evaluation only: nothing here trains, tunes or selects on these data. Outputs go under OUT
# (default work-data/real, git-ignored); the data are read from DATA (../shared/data).
#
#   bash benchmarks/real_scans.sh [OUT]        (about 10 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-work-data/real}
DATA=${DEEPWML_SHARED_DATA:-../shared/data}
BIN=.venv/bin
# MODEL=DIR evaluates another model than the bundled one; PRECISION=int8 its int8 graph;
# BRAIN_MASK=off without the brain mask (lesion probabilities everywhere in the head, as before 2026-11-30);
# BRAIN_MARGIN=MM another margin outside the brain mask than the default (experiment 46);
# BRAIN_MODEL=DIR another brain-mask model than the bundled one (experiment 47);
# WHITE_MATTER=off without the white-matter restriction, WHITE_MATTER_MODEL=DIR another white-matter model (experiment 48)
# THIN_MODEL=DIR a thin-slice model for the volumes seen at slices < 2 mm (--thin-model; experiment 50)
M=(); [ -n "${MODEL:-}" ] && M=(--model "$MODEL")
[ -n "${PRECISION:-}" ] && M+=(--precision "$PRECISION")
[ "${BRAIN_MASK:-on}" = off ] && M+=(--no-brain-mask)
[ -n "${BRAIN_MARGIN:-}" ] && M+=(--brain-margin-mm "$BRAIN_MARGIN")
[ -n "${BRAIN_MODEL:-}" ] && M+=(--brain-model "$BRAIN_MODEL")
[ "${WHITE_MATTER:-on}" = off ] && M+=(--no-white-matter)
[ -n "${WHITE_MATTER_MODEL:-}" ] && M+=(--white-matter-model "$WHITE_MATTER_MODEL")
[ -n "${THIN_MODEL:-}" ] && M+=(--thin-model "$THIN_MODEL")
mkdir -p "$OUT"
$BIN/deepwml realdata lesjak2017 -o "$OUT" --data "$DATA" --reslice 3 5 8 --overwrite
$BIN/deepwml evaluate "${M[@]}" "$OUT/lesjak2017-native/manifest.csv" -o "$OUT/report-native" --thin-slab-mm 0 --overwrite
$BIN/deepwml evaluate "${M[@]}" "$OUT/lesjak2017-native/manifest.csv" -o "$OUT/report-native-slab3" --thin-slab-mm 3 --overwrite
$BIN/deepwml evaluate "${M[@]}" "$OUT/lesjak2017-native/manifest.csv" -o "$OUT/report-native-sliding3" --sliding-slab-mm 3 --overwrite
$BIN/deepwml evaluate "${M[@]}" "$OUT/lesjak2017-3mm/manifest.csv" -o "$OUT/report-3mm" --overwrite
$BIN/deepwml evaluate "${M[@]}" "$OUT/lesjak2017-5mm/manifest.csv" -o "$OUT/report-5mm" --overwrite
# 8 mm: the thick end of the paper's 3-8 mm, and the slice of the held-out clinical set (issue 13)
$BIN/deepwml evaluate "${M[@]}" "$OUT/lesjak2017-8mm/manifest.csv" -o "$OUT/report-8mm" --overwrite
$BIN/deepwml sanity "${M[@]}" "$DATA"/lesjak2016-ms-longitudinal-raw/patient*/study*_FLAIR.nii.gz \
  "$DATA"/rorden-synthsr-flair3d/FLAIR.nii.gz "$DATA"/tcga-fg6692-flair2d/*.nii.gz \
  "$DATA"/deepmedic-brats2015-flair/*/Flair_subtrMeanDivStd.nii.gz -o "$OUT/sanity" --overwrite
for r in report-native report-native-slab3 report-native-sliding3 report-3mm report-5mm report-8mm; do
  echo "== $r"; cat "$OUT/$r/per_volume.csv"
done
echo "== sanity"; cat "$OUT/sanity/sanity.csv"
