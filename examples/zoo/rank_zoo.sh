#!/usr/bin/env bash
# Rank both zoos: does the sharpness audit predict quantization damage and exposure bias?
#
#   bash examples/zoo/rank_zoo.sh            # both zoos (build them first: examples/zoo/rebuild.sh)
#   ZOOS=digits bash examples/zoo/rank_zoo.sh
#
# One `flatcheck rank` per zoo (one shared bank and seed set, the --quick audit plus W6A6 and nf4),
# writing examples/zoo/runs/rank-<zoo>.{json,md,png}; examples/evidence/zoo.md is written from them
# (examples/evidence/zoo_tables.py). --steps 20: the committed runs were made when --quick sampled
# 20 steps (it samples 10 since issue 14). One thread: about 8 min for the digits zoo and 15 min for the
# RGB zoo on this 2-core CPU.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
export OMP_NUM_THREADS=1
mkdir -p "$here/runs"
settings="W8A8,W6A6,W4A4,bnb-nf4"

for zoo in ${ZOOS:-digits rgb}; do
  case "$zoo" in
  digits)
    members=(adamw-s0 adamw-s1 adamw-s2 ema swa sam-0.02 sam-0.05 sam-0.1 sam-0.2 sam-0.5 asam)
    dir="$here/models"
    data=(--data digits --ref digits --features digits-cnn) ;;
  rgb)
    members=(adamw ema swa sam-0.05 sam-0.1 sam-0.2)
    dir="$here/models-rgb"
    data=(--data patches --ref patches-test --features patches-cnn) ;;
  *) echo "rank_zoo.sh: unknown zoo '$zoo'" >&2; exit 2 ;;
  esac
  paths=()
  for m in "${members[@]}"; do paths+=("$dir/$m"); done
  "$py" -m flatcheck rank "${paths[@]}" "${data[@]}" --quick --steps 20 --quantize-settings "$settings" \
    --threads 1 --device cpu --json "$here/runs/rank-$zoo.json" --markdown "$here/runs/rank-$zoo.md" \
    --plot "$here/runs/rank-$zoo.png"
done
