#!/usr/bin/env bash
# Rebuild the whole zoo, one training process at a time, on one CPU thread by default:
#   1. the digits zoo        -> examples/zoo/models/       (logs/, zoo.json, samples/)
#   2. the patches-cnn FD network -> flatcheck/assets/patches_cnn.safetensors (skipped if present)
#   3. the RGB-patch zoo     -> examples/zoo/models-rgb/   (logs-rgb/, zoo-rgb.json, samples/rgb-*)
# Members already built are skipped, so an interrupted rebuild resumes. Extra arguments go to
# both zoo runs (e.g. --device cuda). PYTHON picks the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$PY" examples/zoo/train_zoo.py --dataset digits "$@"
if [ ! -f flatcheck/assets/patches_cnn.safetensors ]; then
  mkdir -p examples/zoo/logs-rgb
  "$PY" examples/zoo/train_patches_cnn.py 2>&1 | grep -v gemm_4bit | tee examples/zoo/logs-rgb/patches_cnn.txt
fi
"$PY" examples/zoo/train_zoo.py --dataset rgb "$@"
