#!/usr/bin/env bash
# Builds and runs every twosed benchmark and prints the results (docs/benchmarks.md explains
# them). On demand only: not part of the tests. Takes about 5 minutes (--no-dense: ~1.5 less).
#
#   scripts/bench.sh                   everything: bench_fisher at 2 and 1 threads, the numpy
#                                      comparison, the dense d x d path, end-to-end `twosed measure`
#   scripts/bench.sh --no-dense        without the dense path (d = 9550 alone takes ~70 s)
#   scripts/bench.sh --out DIR         keep the JSON results and /usr/bin/time logs in DIR
#   scripts/bench.sh --coretype NAME   also rerun bench_fisher once with OPENBLAS_CORETYPE=NAME
#                                      (a labelled side experiment; the main runs use the
#                                      environment as it is)
#
# Builds into build-bench/ (Release, benchmarks on, tests off), not build/, so that it never
# changes the options of the main build directory. Timings on a shared machine are only as good
# as its quiet: each step first waits (up to QUIET_WAIT seconds, default 120) until other
# processes use less than QUIET_CPUS CPUs (default 0.2), and bench_fisher reports the other
# processes' CPU use during its timed samples ("other CPUs") and a dgemm speed probe taken just
# before and after them ("dgemm GF/s": this VM's speed drifts with its host's load).
# Environment: QUIET_WAIT, QUIET_CPUS, ROUNDS (twosed/numpy alternations, default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

DENSE=1
OUT=""
CORETYPE_PROBE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-dense) DENSE=0 ;;
    --out) OUT="$2"; shift ;;
    --coretype) CORETYPE_PROBE="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/twosed-bench.XXXXXX)"
mkdir -p "$OUT"
QUIET_WAIT="${QUIET_WAIT:-120}"
QUIET_CPUS="${QUIET_CPUS:-0.2}"
ROUNDS="${ROUNDS:-3}"  # twosed/numpy alternations per thread count
PY=/usr/bin/python3  # Debian's python3-numpy; the pyenv python3 on PATH has no numpy

echo "== packages"
bash scripts/setup.sh
# The numpy comparison needs Debian's numpy (for /usr/bin/python3); only the benchmarks use it.
if ! dpkg-query -W -f='${Status}' python3-numpy 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-numpy
fi

echo "== build (build-bench/, Release)"
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DTWOSED_BUILD_BENCH=ON -DTWOSED_BUILD_TESTS=OFF > "$OUT/cmake.log"
cmake --build build-bench -j 2 --target bench_fisher twosed_cli > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
BENCH=build-bench/bench/bench_fisher
CLI=build-bench/twosed

# CPUs busy (system-wide) over one second, from /proc/stat.
busy_cpus() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}'
}
wait_quiet() {
  local waited=0 busy
  while :; do
    busy=$(busy_cpus)
    if awk -v b="$busy" -v q="$QUIET_CPUS" 'BEGIN{exit !(b < q)}'; then
      echo "   (machine quiet: $busy CPUs busy)"; return 0
    fi
    waited=$((waited + 1))
    if [ "$waited" -ge "$QUIET_WAIT" ]; then
      echo "   (still $busy CPUs busy after ${QUIET_WAIT}s: timing anyway; see 'other CPUs')"; return 0
    fi
  done
}

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Socket\(s\)|L2 cache|L3 cache)' | sed 's/^/   /'
echo "   OPENBLAS_CORETYPE='${OPENBLAS_CORETYPE:-}'  (OpenBLAS's core, as bench_fisher prints it, is below)"
echo "   results in $OUT"

echo
echo "== bench_fisher: per parameter sample, 2 threads then 1 thread (each job in its own process)"
wait_quiet
"$BENCH" --threads 2,1 --export-dir "$OUT/npy" --json "$OUT/bench_fisher.json" | tee "$OUT/bench_fisher.txt"

echo
echo "== numpy Kronecker Gram (bench/numpy_kron_gram.py) vs twosed, mlp:784-1024-10"
echo "   agreement at theta^(0) and the same inputs (exported by bench_fisher above):"
wait_quiet
"$PY" bench/numpy_kron_gram.py --threads 2 --samples 1 --warmup 0 --inputs "$OUT/npy/inputs.npy" \
  --theta "$OUT/npy/theta.npy" --reference "$OUT/npy/twosed_eigs.npy" --json "$OUT/numpy_check.json" > "$OUT/numpy_check.txt"
sed -n '1,3s/^/   /p' "$OUT/numpy_check.txt"
echo "   timing: twosed and numpy alternately, ${ROUNDS} rounds per thread count (5 samples + 1 warm-up each):"
for r in $(seq 1 "$ROUNDS"); do
  for t in 2 1; do
    wait_quiet > /dev/null
    "$BENCH" --models mlp:784-1024-10 --threads "$t" --no-replay --json "$OUT/cmp_twosed_r${r}_t$t.json" > /dev/null 2>&1
    "$PY" bench/numpy_kron_gram.py --threads "$t" --inputs "$OUT/npy/inputs.npy" --json "$OUT/cmp_numpy_r${r}_t$t.json" > /dev/null
  done
done
"$PY" - "$OUT" "$ROUNDS" <<'PYEOF'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print("   round  T  twosed ms/sample (fb / Gram / eigen)       numpy ms/sample (fb / Gram / eigen)        numpy/twosed  dgemm GF/s")
for r in range(1, rounds + 1):
    for t in (2, 1):
        tj = json.load(open(f"{out}/cmp_twosed_r{r}_t{t}.json"))["jobs"][0]
        nj = json.load(open(f"{out}/cmp_numpy_r{r}_t{t}.json"))
        ts, ns = tj["stats"], nj["stats"]
        f = lambda st: f"{st['total']['mean']*1e3:6.1f} ({st['forward_backward']['mean']*1e3:5.1f} / {st['gram']['mean']*1e3:5.1f} / {st['eigen']['mean']*1e3:5.1f})"
        print(f"   {r:5d} {t:2d}  {f(ts):40s}  {f(ns):40s}  {ns['total']['mean']/ts['total']['mean']:10.2f}x  {tj['dgemm_gflops_before']:.1f}/{tj['dgemm_gflops_after']:.1f}")
PYEOF
echo "   NNGeometry (Gram, exact) cannot be installed here (no PyPI); docs/benchmarks.md (Other tools) lists 4.61 s for M = 10 at"
echo "   d = 8.1e5 on a machine of this kind, i.e. 0.46 s per sample (not measured in this run)"

if [ "$DENSE" = 1 ]; then
  echo
  echo "== dense d x d path (GramSide::Parameters), M = 1, 2 threads"
  wait_quiet
  "$BENCH" --models "" --dense --dense-models mlp:784-1-10,mlp:784-12-10 --threads 2 --json "$OUT/bench_dense.json" \
    | sed -n '/Dense/,$p' | tee "$OUT/bench_dense.txt"
fi

echo
echo "== end to end: twosed measure --model mlp:784-1024-256-10 --samples 100 (Fashion-MNIST, N = 100)"
for t in default 1; do
  wait_quiet
  args=(measure --model mlp:784-1024-256-10 --samples 100 -q --format json --out "$OUT/measure_$t.json")
  [ "$t" = default ] || args+=(--threads "$t")
  /usr/bin/time -v "$CLI" "${args[@]}" 2> "$OUT/measure_$t.time"
  wall=$(grep 'Elapsed (wall clock)' "$OUT/measure_$t.time" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$OUT/measure_$t.time" | awk '{print $NF}')
  cpu=$(grep 'Percent of CPU' "$OUT/measure_$t.time" | awk '{print $NF}')
  echo "   threads $t: wall $wall, max RSS $((rss / 1024)) MB, CPU $cpu"
done

if [ -n "$CORETYPE_PROBE" ]; then
  echo
  echo "== side experiment (not the environment as it is): OPENBLAS_CORETYPE=$CORETYPE_PROBE"
  wait_quiet
  OPENBLAS_CORETYPE="$CORETYPE_PROBE" "$BENCH" --models mlp:784-1024-10,mlp:784-1024-256-10 --threads 2,1 \
    --json "$OUT/bench_fisher_coretype.json" | tee "$OUT/bench_fisher_coretype.txt"
  OPENBLAS_CORETYPE="$CORETYPE_PROBE" "$PY" bench/numpy_kron_gram.py --threads 1 --inputs "$OUT/npy/inputs.npy" \
    --json "$OUT/numpy_coretype.json" | tail -2
  wait_quiet
  OPENBLAS_CORETYPE="$CORETYPE_PROBE" /usr/bin/time -v "$CLI" measure --model mlp:784-1024-256-10 --samples 100 -q \
    --format json --out "$OUT/measure_coretype.json" 2> "$OUT/measure_coretype.time"
  echo "   end to end: wall $(grep 'Elapsed (wall clock)' "$OUT/measure_coretype.time" | awk '{print $NF}'), max RSS $(( $(grep 'Maximum resident set size' "$OUT/measure_coretype.time" | awk '{print $NF}') / 1024 )) MB"
fi

echo
echo "== done; JSON and logs in $OUT"
