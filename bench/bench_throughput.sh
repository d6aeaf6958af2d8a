#!/bin/bash
# Throughput checks of docs/benchmarks.md ("Throughput"), all in one run so that ratios are
# taken on the same machine state:
#   1. the eigen routines by size and thread count (bench_eigen);
#   2. the default job (`twosed measure`, no model options) in sequence (--parallel-samples 1:
#      what it did before samples ran in parallel; the eigen routine is dsyevd in both at its
#      900 x 900 size) against the automatic choice, alternating, whole processes.
#
#   bash bench/bench_throughput.sh BUILD_DIR [REPEATS] [EIGEN_SIZES]
set -euo pipefail
build=${1:?usage: bench_throughput.sh BUILD_DIR [REPEATS] [EIGEN_SIZES]}
repeats=${2:-3}
sizes=${3:-100,200,400,600,900,1200,1600,2000,3000}
twosed=$build/twosed
[ -x "$twosed" ] || twosed=$build/tools/twosed/twosed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\))' || true
uptime

echo "== eigen routines (bench_eigen --sizes $sizes --threads 1,2)"
"$build/bench/bench_eigen" --sizes "$sizes" --threads 1,2 --budget 0.5

echo "== default job: twosed measure --no-db -q, sequential vs automatic, alternating"
wall() {  # wall seconds of one whole process; its JSON result kept as $work/$1.json
  local tag=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$twosed" measure --no-db -q --format json --out "$work/$tag.json" "$@"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
seq_times=() par_times=()
for r in $(seq 1 "$repeats"); do
  seq_times+=("$(wall seq --parallel-samples 1)")
  par_times+=("$(wall auto)")
  echo "  repeat $r: sequential ${seq_times[-1]} s, automatic ${par_times[-1]} s"
done
python3 - "$work/seq.json" "$work/auto.json" "${seq_times[*]}" "${par_times[*]}" <<'EOF'
import json, statistics, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
s = [float(v) for v in sys.argv[3].split()]
p = [float(v) for v in sys.argv[4].split()]
print(f"  automatic: {b['context']['parallel_samples']}")
print(f"  sequential median {statistics.median(s):.2f} s (in-process {a['seconds']:.2f}), automatic median "
      f"{statistics.median(p):.2f} s (in-process {b['seconds']:.2f}): {statistics.median(s) / statistics.median(p):.2f}x")
# Sequential on all threads and parallel on one thread each are different BLAS thread counts,
# so the curves agree to round-off, not bit for bit.
worst = max(abs(x - y) / max(abs(x), 1e-300) for ca, cb in zip(a["curves"], b["curves"])
            for x, y in zip(ca["value"], cb["value"]))
print(f"  curves: largest relative difference {worst:.1e}")
EOF
