#!/usr/bin/env bash
# Issue 14's GPU figures in one device call: benchmarks/benchmark_inference.py on the GPU machine (overhead share,
# 1 mm 3D end to end, cold start, batch throughput; CUDA rows when CUDA is present), with the packages and MNI maps
# of the bundle (benchmarks/gpu_bundle.py pack here first). Right after gpu_train.sh on a warm machine the bundle is
# already unpacked and is not unpacked again.
#
#   device:  run(command="bash benchmarks/gpu_benchmark.sh", carry=[".gpu"], timeout_s=300)
#   CPU dry run:  PY=.venv/bin/python CASES=2 REPEATS=1 OUT=/tmp/bench-dry bash benchmarks/gpu_benchmark.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-work-data/gpu}
WORK=${WORK:-/tmp/deepwml-gpu}
mkdir -p "$OUT"
[ -f .gpu/bundle.json ] || { echo ".gpu/bundle.json: no bundle (run benchmarks/gpu_bundle.py pack here, carry .gpu)" >&2; exit 2; }
[ -d "$WORK/site/SimpleITK" ] || "$PY" benchmarks/gpu_bundle.py unpack .gpu --site "$WORK/site" --data "$WORK/data"
export PYTHONPATH="$PWD/DeepWML:$WORK/site" DEEPWML_SHARED_DATA="$WORK/data" DEEPWML_MNI_DIR="$WORK/data/mni"
export PYTHONUNBUFFERED=1
"$PY" benchmarks/benchmark_inference.py --speed-only --repeats "${REPEATS:-5}" --batch-cases "${CASES:-50}" \
  --json "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench-gpu.log"
