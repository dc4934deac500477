#!/usr/bin/env bash
# Wall time and peak RSS of `ctarr crop` on one input (not a test; never gates CI).
# Usage: scripts/bench_crop.sh BUILD_DIR INPUT [extra ctarr crop arguments, e.g. --seg SEG or --model M]
# Needs GNU time (apt-get install time).
set -euo pipefail
build=$1 input=$2
shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
/usr/bin/time -f "wall %e s, peak RSS %M KiB" "$build/bin/ctarr" -q crop --device cpu --region liver -o "$out" "$@" "$input" 2>&1 |
  grep -E "^wall|error" || true
