#!/usr/bin/env bash
# The Markov chain model's scale targets (issue "Markov chain models and the lower 2sED"; results
# in docs/benchmarks.md). On demand only: not part of the tests. About 10 minutes on 2 cores.
#
#   scripts/bench_markov.sh              all three targets
#   scripts/bench_markov.sh --quick      M = 10 instead of 100 for the two M = 100 targets
#   scripts/bench_markov.sh --out DIR    keep the JSON results and /usr/bin/time logs in DIR
#
# Targets, all with N = 100 inputs, zeta in {0, 0.5}, exact spectra, sigma = 0.1, R = 1:
#   A  an MLP of >= 1e7 parameters (mlp:784-4096-2048-10, d = 11.6e6) on Fashion-MNIST, M = 100:
#      under 5 minutes and 4 GB
#   B  a CNN of about 2e5 parameters on 3x32x32 inputs, M = 100: under 10 minutes and 4 GB
#   C  a CNN of >= 1e6 parameters on 3x32x32 inputs (conv 64-128-256-256 with pooling, two linear
#      layers), M = 2: under 60 s per parameter sample and 4 GB
# Each run's table (per-layer time per sample, blocks on each side) is printed, with the peak
# resident memory of the whole process and a dgemm probe (bench_fisher's) before and after.
# Builds into build-bench/ like scripts/bench.sh. The environment is used as it is
# (OPENBLAS_CORETYPE is not set here).
set -euo pipefail
cd "$(dirname "$0")/.."

M_BIG=100
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) M_BIG=10 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench_markov.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/twosed-bench-markov.XXXXXX)"
mkdir -p "$OUT"

bash scripts/setup.sh > /dev/null
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DTWOSED_BUILD_BENCH=ON -DTWOSED_BUILD_TESTS=OFF > "$OUT/cmake.log"
cmake --build build-bench -j 2 --target bench_fisher twosed_cli > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
CLI=build-bench/twosed
BENCH=build-bench/bench/bench_fisher

probe() {  # dgemm GF/s of this VM right now (bench_fisher's probe on a tiny model)
  "$BENCH" --models mlp:10-10 --samples 1 --warmup 0 --threads 2 --no-replay --json "$OUT/probe.json" > /dev/null 2>&1
  /usr/bin/python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["jobs"][0]["dgemm_gflops_before"])' \
    "$OUT/probe.json"
}

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; OPENBLAS_CORETYPE='${OPENBLAS_CORETYPE:-}'"
echo "   results in $OUT"

run() {  # run NAME M MODEL
  local name="$1" m="$2" model="$3"
  echo
  echo "== $name: $model, M = $m (dgemm probe before: $(probe) GF/s)"
  /usr/bin/time -v "$CLI" measure -q --model "$model" --markov --sigma 0.1 --samples "$m" --inputs 100 \
    --zeta 0,0.5 --format json --out "$OUT/$name.json" 2> "$OUT/$name.time"
  /usr/bin/python3 - "$OUT/$name.json" "$OUT/$name.time" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
t = open(sys.argv[2]).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1)
M = r["M"]
print(f"   d = {r['d']}, M = {M}, N = {r['N']}: wall {wall} (twosed's own total {r['seconds']:.1f} s, "
      f"{r['seconds'] / M:.2f} s per sample), peak RSS {rss / 1024**2:.2f} GiB")
print("   layer  params      blocks/sample  samples/params side  max block  s/sample  products/eigen cpu-s  layers")
for l in r["layers"]:
    per = (l["blocks_samples_side"] + l["blocks_parameter_side"]) / M
    pe = f"{l['cpu_seconds_products_per_sample']:.3f} / {l['cpu_seconds_eigen_per_sample']:.3f}" if l["hidden"] else "-"
    print(f"   {l['name']:>5}  {l['params']:>9}  {per:>13.1f}  {l['blocks_samples_side']:>9} / {l['blocks_parameter_side']:<9}"
          f"  {l['largest_block']:>9}  {l['seconds_per_sample']:>8.3f}  {pe:>20}  {l['layers']}")
c = r["curves"]
i = len(c[0]["eps"]) // 2
for cz in c:
    print(f"   zeta = {cz['zeta']}: at eps = {cz['eps'][i]:.3g} lower {cz['lower'][i]:.1f} +- {cz['lower_stderr'][i]:.1f}, "
          f"chain {cz['chain'][i]:.1f} +- {cz['chain_stderr'][i]:.1f}")
PY
  echo "   dgemm probe after: $(probe) GF/s"
}

run A "$M_BIG" mlp:784-4096-2048-10
run B "$M_BIG" cnn:3x32x32-c32k3-relu-p2-c64k3-relu-p2-f80-relu-f10
run C 2 cnn:3x32x32-c64k3p1-relu-p2-c128k3p1-relu-p2-c256k3p1-relu-p2-c256k3p1-relu-p2-f256-relu-f10
