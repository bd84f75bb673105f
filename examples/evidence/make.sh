#!/usr/bin/env bash
# Regenerate the evidence: every command behind examples/evidence/*.md, on one CPU thread, then the
# tables of the .md files from their JSON.
#
#   examples/evidence/make.sh              rerun everything into examples/evidence/runs/ and render
#   examples/evidence/make.sh --check      rerun into a temporary folder and compare every number
#                                          with runs/ (changes no file; exit 1 on a difference)
#   AREAS="audit fid" examples/evidence/make.sh     only some areas (audit fid quantize sharpness exposure)
#
# Same seed + same device + same thread count + same CPU instruction set = the same numbers, bit for
# bit (README, Reproducibility); runs/env.json records what this run had. About 45 min on one core
# of the 2-core development machine; wall times of each command go to runs/wall.tsv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py=python3
areas="${AREAS:-audit fid quantize sharpness exposure}"
check=0
[ "${1:-}" = "--check" ] && check=1

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ $check = 1 ]; then runs="$work/runs"; else runs="$here/runs"; fi
mkdir -p "$runs"
: > "$runs/wall.tsv.new"
cd "$root"

fc() {  # fc NAME ARGS...: one flatcheck command, its wall time recorded; exit 1 (a gate that fails) is kept
  local name="$1"; shift
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  "$py" -m flatcheck "$@" --threads 1 --device cpu --json "$runs/$name.json" > "$work/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  printf '%s\t%.1f\t%s\n' "$name" "$(echo "$t1 - $t0" | bc)" "$rc" >> "$runs/wall.tsv.new"
  if [ $rc -gt 1 ]; then echo "make.sh: '$name' failed (exit $rc):" >&2; tail -5 "$work/$name.log" >&2; exit $rc; fi
  echo "$name: exit $rc, $(tail -1 "$runs/wall.tsv.new" | cut -f2) s"
}

copy() {  # copy SRC DEST: plots, only when regenerating
  [ $check = 1 ] || cp "$1" "$2"
}

models="digits-base digits-ema digits-sam"
"$py" "$here/evidence.py" env > "$runs/env.json"

for area in $areas; do case "$area" in
audit)
  fc audit audit --quick --out "$work/audit"
  fc compare compare $models --quick
  "$py" "$here/evidence.py" noisy "$work/noisy"
  fc gate-base gate digits-base --config examples/gate/flatcheck.toml --skip sharpness
  fc gate-noisy gate "$work/noisy" --config examples/gate/flatcheck.toml --skip sharpness
  ;;
fid)
  for m in $models; do
    fc "fid-$m" fid "$m" --sample-dir "$work/sample-$m/store"
    # Those 1000 samples exported from fid's sample folder (nothing is generated again), for the
    # paired differences and the rescoring check in evidence.py.
    fc "sample-$m" sample "$m" --samples 1000 --steps 25 --out "$work/sample-$m" --no-png
  done
  "$py" "$here/evidence.py" fid-pairs "$work" > "$runs/fid-pairs.json"
  ;;
quantize)
  for m in $models; do
    fc "quantize-$m" quantize "$m" --data digits --bnb int8,nf4 --out "$work/quantize-$m"
    fc "quantize-seed1-$m" quantize "$m" --data digits --bits 6,4 --seed 1 --sensitivity-samples 0
    fc "quantize-first-last-8-$m" quantize "$m" --data digits --bits 4 --first-last 8 --sensitivity-samples 0
  done
  ;;
sharpness)
  for m in $models; do
    fc "sharpness-data-$m" sharpness "$m" --data digits --out "$work/sharpness-$m"
    for plot in breakdown:sharpness_breakdown landscape-1d:landscape_1d radius:sharpness_radius; do
      copy "$work/sharpness-$m/${plot#*:}.png" "$here/sharpness/${plot%%:*}-$m.png"
    done
    fc "sharpness-free-$m" sharpness "$m" --data none  # the bundled models default to --data digits
  done
  ;;
exposure)
  for m in $models; do
    fc "exposure-$m" exposure "$m" --steps 20,100 --data digits --probes 512 --samples 512 --batch-size 512 \
      --linear-scale --out "$work/exposure-$m"
    copy "$work/exposure-$m/exposure.png" "$here/exposure-$m.png"
  done
  ;;
*) echo "make.sh: unknown area '$area'" >&2; exit 2 ;;
esac; done

if [ $check = 1 ]; then
  "$py" "$here/evidence.py" compare "$here/runs" "$runs"
else
  # keep the wall times of areas not rerun
  touch "$runs/wall.tsv"
  cut -f1 "$runs/wall.tsv.new" > "$work/names"
  { grep -v -F -x -f "$work/names" <(cut -f1 "$runs/wall.tsv") | grep -F -f - "$runs/wall.tsv" || true; cat "$runs/wall.tsv.new"; } | sort > "$work/wall"
  mv "$work/wall" "$runs/wall.tsv"
  rm -f "$runs/wall.tsv.new"
  "$py" "$here/evidence.py" render
fi
