#!/usr/bin/env bash
# Regenerates docs/reproduction.md and its figures (docs/img/reproduction/) from the example
# studies in examples/: measures before training, trainings, rank correlations, the
# generalisation estimate. About 5 minutes on 2 cores (docs/reproduction.md records the time).
#
# Everything is recorded in build/reproduce/reproduction.db as it is done. REPRODUCE_RESUME=1
# continues a stopped run from that database instead of starting again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh > /dev/null
TWOSED=./build/twosed
OUT=build/reproduce
IMG=docs/img/reproduction
DB=$OUT/reproduction.db
mkdir -p "$OUT" "$IMG"
if [ "${REPRODUCE_RESUME:-0}" != 1 ]; then rm -f "$DB" "$DB-wal" "$DB-shm"; fi
start=$(date +%s)

# The newest study of this name in the database: "done ID", "unfinished ID" or "none".
study_state() {
  if [ ! -f "$DB" ]; then
    echo none
    return
  fi
  "$TWOSED" runs --db "$DB" --kind study --format json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r["label"] == sys.argv[1]]
print("none" if not runs else ("done" if runs[-1]["status"] == "done" else "unfinished"), runs[-1]["id"] if runs else "")
' "$1"
}

args=()
for name in covertype-mlps fashion-mnist-mlps fashion-mnist-cnns; do
  echo "reproduce: study $name" >&2
  read -r state id < <(study_state "$name")
  case "$state" in
    done) "$TWOSED" show "$id" --db "$DB" --format json --out "$OUT/$name.json" --plot "$IMG/$name.png" ;;
    unfinished) "$TWOSED" study "examples/$name.json" --db "$DB" --resume "$id" --format json --out "$OUT/$name.json" \
      --plot "$IMG/$name.png" ;;
    *) "$TWOSED" study "examples/$name.json" --db "$DB" --format json --out "$OUT/$name.json" --plot "$IMG/$name.png" ;;
  esac
  # The generalisation estimate of every model's 2sED measurement at n = the training-set size.
  python3 - "$OUT/$name.json" "$OUT/$name-bounds.json" "$DB" "$TWOSED" <<'PY'
import json, subprocess, sys
study, out, db, twosed = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
bounds = {}
for m in study["models"]:
    run = m["measure_runs"]["2sED"]
    text = subprocess.run([twosed, "bound", str(run), "--db", db, "--n", str(int(study["n_train"])),
                           "--format", "json"], check=True, capture_output=True, text=True).stdout
    bounds[m["name"]] = json.loads(text)
json.dump(bounds, open(out, "w"), indent=1)
PY
  args+=("$OUT/$name.json:$OUT/$name-bounds.json")
done

seconds=$(($(date +%s) - start))
python3 - "$OUT/header.json" "$seconds" "$("$TWOSED" --version)" <<'PY'
import json, os, platform, sys, time
cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
json.dump({"seconds": float(sys.argv[2]), "version": sys.argv[3].replace("twosed ", ""),
           "date": time.strftime("%Y-%m-%d", time.gmtime()),
           "machine": f"{os.cpu_count()} cores ({cpu}), OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"},
          open(sys.argv[1], "w"))
PY
python3 scripts/reproduction_report.py --out docs/reproduction.md --img-dir img/reproduction \
  --header "$OUT/header.json" "${args[@]}"
echo "reproduce: wrote docs/reproduction.md in ${seconds} s" >&2
