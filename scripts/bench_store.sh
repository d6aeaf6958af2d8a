#!/usr/bin/env bash
# What recording into the results store costs: the same measurement with --db and with --no-db,
# alternately, 3 rounds each, on the default job (mlp:784-64-10, M = N = 100) and on a Markov
# run of the 11.6M-parameter MLP whose samples hold ~1e5 eigenvalues each (M = 10). Prints the
# medians, their ratio and the database size. Results go in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh > /dev/null
TWOSED=$PWD/build/twosed
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

bench() {  # bench NAME ARGS...
  local name="$1"
  shift
  : > with.txt
  : > without.txt
  local TIMEFORMAT=%R
  for _ in 1 2 3; do
    rm -f b.db b.db-wal b.db-shm
    { time "$TWOSED" measure "$@" -q --db b.db > /dev/null; } 2>> with.txt
    { time "$TWOSED" measure "$@" -q --no-db > /dev/null; } 2>> without.txt
  done
  local w wo
  w=$(median < with.txt)
  wo=$(median < without.txt)
  printf '%-28s --db %7.2f s   --no-db %7.2f s   ratio %.3f   database %s\n' "$name" "$w" "$wo" \
    "$(python3 -c "print($w / $wo)")" "$(du -h b.db | cut -f1)"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
bench "default job (M=100)" --model mlp:784-64-10
bench "Markov 11.6M MLP (M=10)" --model mlp:784-4096-2048-10 --markov --sigma 0.1 -M 10
