#!/usr/bin/env bash
# Start-up time of the CLI's commands and the cost of --thetas from a large file
# (docs/benchmarks.md, "Start-up and streamed thetas").
#   bench/startup_thetas.sh BUILD_DIR [BEFORE_TORCH_BINARY] [--no-thetas]
# BUILD_DIR holds twosed and twosed-torch. BEFORE_TORCH_BINARY, if given, is a twosed-torch
# built from an earlier commit (the --thetas comparison runs it too, alternating with
# BUILD_DIR's). Start-up: the median of 10 runs of each command; `twosed-torch` runs the same
# commands with LibTorch loaded, as the single CLI binary did before the split.
# --thetas: mlp:784-16384-10 (d = 13,025,290), N = 100, M = 10, a 10 x d float64 file (1.04 GB)
# against drawn thetas; wall time and peak RSS from /usr/bin/time -v.
set -eu
BUILD=$(cd "$1" && pwd)
BEFORE=${2:-}
[ "$BEFORE" = "--no-thetas" ] && BEFORE=""
NO_THETAS=0
for a in "$@"; do [ "$a" = "--no-thetas" ] && NO_THETAS=1; done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

"$BUILD/twosed" measure -q --model mlp:6-5-3 --data synthetic:blobs:3:6:200 --inputs 20 --samples 2 \
  --bootstrap 100 --db s.db > /dev/null
median_ms() {  # median_ms CMD...: median wall time of 10 runs, in ms
  /usr/bin/python3 - "$@" <<'PY'
import statistics, subprocess, sys, time
t = []
for _ in range(10):
    t0 = time.perf_counter()
    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    t.append(time.perf_counter() - t0)
print(f"{statistics.median(t) * 1e3:8.1f} ms (min {min(t) * 1e3:.1f})")
PY
}
echo "== start-up (median of 10 runs)"
for args in "--version" "runs --db s.db" "show 1 --db s.db" "export 1 --db s.db --format json" \
  "bound --help" "compare 1 1 --db s.db" "measure --plan --model mlp:784-64-10"; do
  # shellcheck disable=SC2086
  printf "%-40s twosed %s   twosed-torch %s\n" "$args" "$(median_ms "$BUILD/twosed" $args)" \
    "$(median_ms "$BUILD/twosed-torch" $args)"
done
[ "$NO_THETAS" = 1 ] && exit 0

echo "== --thetas from a 1 GB file vs drawn thetas (mlp:784-16384-10, N = 100, M = 10)"
/usr/bin/python3 -c "
import numpy as np
rng = np.random.default_rng(1)
d = 784 * 16384 + 16384 + 16384 * 10 + 10
np.save('thetas.npy', rng.uniform(-0.03, 0.03, size=(10, d)))
"
ls -l thetas.npy
COMMON=(measure -q --no-db --model mlp:784-16384-10 --inputs 100 --bootstrap 100 --format json)
run() {  # run LABEL BINARY ARGS...
  local label=$1 bin=$2
  shift 2
  /usr/bin/time -v "$bin" "${COMMON[@]}" "$@" > out.json 2> time.log
  printf "%-28s wall %6.2f s  peak RSS %6.0f MB  its own seconds %s\n" "$label" \
    "$(awk -F': ' '/Elapsed/ {n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s}' time.log)" \
    "$(awk -F': ' '/Maximum resident/ {print $2 / 1024}' time.log)" \
    "$(/usr/bin/python3 -c "import json; print(round(json.load(open('out.json'))['seconds'], 2))" 2> /dev/null || echo '?')"
}
for round in 1 2; do
  echo "-- round $round"
  run "after: --thetas" "$BUILD/twosed" --thetas thetas.npy
  run "after: drawn" "$BUILD/twosed" --samples 10
  if [ -n "$BEFORE" ]; then
    run "before: --thetas" "$BEFORE" --thetas thetas.npy
    run "before: drawn" "$BEFORE" --samples 10
  fi
done
