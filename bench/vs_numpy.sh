#!/usr/bin/env bash
# `twosed measure --thetas` against bench/numpy_kron_gram.py --thetas, as whole processes (what a
# user waits for: start-up, loading, every sample, the effective dimension), on the same inputs
# and the same parameter samples, alternating in one run. Prints one table row per (model, round)
# and checks that both give the same ED(n).
#
#   bash bench/vs_numpy.sh [BUILD_DIR] [ROUNDS] [HIDDEN_WIDTHS] [THREADS]
#   bash bench/vs_numpy.sh build 3 1024,4096,16384 2
#
# Models mlp:784-H-10 with ReLU, N = 100 Fashion-MNIST training images (the first 100, scaled to
# [0, 1]), M = 10 samples drawn uniformly from PyTorch's default init box (seed 0), exact Fisher,
# ED at n = 1e5. Times and peak RSS from /usr/bin/time.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
widths=${3:-1024,4096,16384}
threads=${4:-2}
py=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
twosed="$build/twosed"
[ -x "$twosed" ] || { echo "vs_numpy.sh: $twosed not found (build first)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" - "$work" "$widths" <<'EOF'
import gzip, sys
import numpy as np
work, widths = sys.argv[1], [int(w) for w in sys.argv[2].split(",")]
with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
x = raw[:100 * 784].reshape(100, 784).astype(np.float64) / 255.0
np.save(f"{work}/x.npy", x)
rng = np.random.default_rng(0)
for h in widths:
    rows = []
    for _ in range(10):
        parts = []
        for fan_in, out in ((784, h), (h, 10)):
            a = 1.0 / np.sqrt(fan_in)
            parts.append(rng.uniform(-a, a, size=out * fan_in + out))
        rows.append(np.concatenate(parts))
    np.save(f"{work}/thetas{h}.npy", np.stack(rows))
EOF
sync  # the 1.3 GB just written must not be flushed to disk while the timed runs read it

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %5s %12s %10s %12s %10s %7s %12s\n' model round twosed_s twosed_MB numpy_s numpy_MB ratio ed_rel_diff
IFS=, read -ra hs <<< "$widths"
for round in $(seq 1 "$rounds"); do
  for h in "${hs[@]}"; do
    model="mlp:784-$h-10"
    /usr/bin/time -f "%e %M" -o "$work/t.time" "$twosed" measure --no-db -q --format json --model "$model" \
      --inputs-file "$work/x.npy" --thetas "$work/thetas$h.npy" --ed-n 1e5 --threads "$threads" > "$work/t.json"
    /usr/bin/time -f "%e %M" -o "$work/n.time" "$py" "$here/numpy_kron_gram.py" --sizes "784,$h,10" \
      --inputs "$work/x.npy" --thetas "$work/thetas$h.npy" --ed-n 1e5 --threads "$threads" > "$work/n.json"
    read -r ts tm < "$work/t.time"
    read -r ns nm < "$work/n.time"
    ted=$(jq -r '.ed[0].value' "$work/t.json")
    ned=$(jq -r .ed "$work/n.json")
    "$py" -c "import sys; ts,tm,ns,nm,a,b=map(float,sys.argv[2:]); print('%-22s %5s %12.2f %10.0f %12.2f %10.0f %7.2f %12.1e' % (sys.argv[1], '$round', ts, tm/1024, ns, nm/1024, ns/ts, abs(a-b)/abs(b)))" \
      "$model" "$ts" "$tm" "$ns" "$nm" "$ted" "$ned"
  done
done
