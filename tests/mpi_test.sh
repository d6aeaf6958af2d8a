#!/usr/bin/env bash
# MPI ranks end to end (README "Many machines (MPI)"): 1, 2 and 3 ranks under mpirun give the
# same numbers as a single process, byte for byte (standard and Markov, drawn and given
# samples/noise, --no-db and --db); a worker killed with SIGKILL ends the job within seconds,
# leaves an intact database, and --resume with another rank count completes it; a rank's data
# error ends the run with that rank's message and exit 1.
# Usage: mpi_test.sh PATH/TO/twosed mpi|nompi  (exit 77: skipped)
set -u
TWOSED=$(realpath "$1")
if [ "${2:-mpi}" != mpi ]; then
  echo "SKIP: twosed was built without MPI (TWOSED_WITH_MPI=OFF or no libopenmpi-dev)"
  exit 77
fi
if ! command -v mpirun > /dev/null; then
  echo "SKIP: no mpirun (Debian: openmpi-bin)"
  exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# Root in a container, oversubscribed cores, loopback TCP only (no network is touched).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)

# numbers IN OUT: the result without what may differ between runs (timings, context, where
# it was stored), every number kept as the text twosed wrote.
numbers() {
  python3 - "$1" "$2" << 'PY'
import json, re, sys
drop = re.compile(r"seconds|^context$|^stored$|^resumed_samples$")
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not drop.search(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
text = open(sys.argv[1]).read()
j = json.loads(text, parse_float=lambda s: "f:" + s, parse_int=lambda s: "i:" + s)
json.dump(strip(j), open(sys.argv[2], "w"), indent=1, sort_keys=True)
PY
}

# same_numbers NAME REF.json GOT.json
same_numbers() {
  numbers "$2" "$2.n" && numbers "$3" "$3.n" || { bad "$1: not JSON"; return; }
  if cmp -s "$2.n" "$3.n"; then ok; else bad "$1: numbers differ from a single process: $(diff "$2.n" "$3.n" | head -5)"; fi
}

# write_array PATH SEED GAUSSIAN DIMS...: a float64 .npy of uniform(-0.5, 0.5) or N(0, 1) values.
write_array() {
  python3 - "$@" << 'PY'
import random, struct, sys
path, seed, gauss, dims = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", [int(a) for a in sys.argv[4:]]
random.seed(seed)
shape = "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
header = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
n = 1
for d in dims: n *= d
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for _ in range(n):
        f.write(struct.pack("<d", random.gauss(0, 1) if gauss else random.uniform(-0.5, 0.5)))
PY
}

# --- 1, 2, 3 ranks = one process, byte for byte.
STD=(--model mlp:6-8-3 --data synthetic:blobs:3:6:200 -N 30 -M 7 --bootstrap 50 --ed-n 1e4 --threads 1 -q --format json)
MARKOV=(--model mlp:6-8-5-3 --markov --sigma 0.3 --noise-draws 2 --data synthetic:blobs:3:6:200 -N 20 -M 5
  --bootstrap 50 --threads 1 -q --format json)
# Given samples and noise: rank 0 reads the files and sends theta^(j) and noise j with each task.
# mlp:6-8-5-3: d = 56 + 45 + 18 = 119; H = 8 + 5 = 13 hidden outputs; N*R = 20.
write_array thetas.npy 1 0 6 119
write_array noise.npy 2 1 6 20 13
write_array x.npy 3 0 20 6
GIVEN=(--model mlp:6-8-5-3 --markov --sigma 0.3 --thetas thetas.npy --noise noise.npy --inputs-file x.npy
  --bootstrap 50 --threads 1 -q --format json)
for name in STD MARKOV GIVEN; do
  declare -n args="$name"
  "$TWOSED" measure "${args[@]}" --no-db > "$name-ref.json" || bad "$name: single process failed"
  for np in 1 2 3; do
    if "${MPIRUN[@]}" -np "$np" "$TWOSED" measure "${args[@]}" --no-db > "$name-$np.json" 2> "$name-$np.err"; then
      same_numbers "$name, $np ranks" "$name-ref.json" "$name-$np.json"
    else
      bad "$name, $np ranks: mpirun failed: $(head -c 600 "$name-$np.err")"
    fi
  done
  unset -n args
done
# The run's context names the ranks.
python3 -c 'import json,sys; c = json.load(open("STD-3.json"))["context"]; assert c["mpi"]["ranks"] == 3, c' && ok ||
  bad "the context of a 3-rank run does not say 3 ranks"

# --db: rank 0 alone writes the store; every sample committed once; same numbers.
"$TWOSED" measure "${MARKOV[@]}" --db single.db > db-ref.json || bad "single process --db failed"
"${MPIRUN[@]}" -np 3 "$TWOSED" measure "${MARKOV[@]}" --db ranks.db > db-3.json 2> db-3.err || bad "3 ranks --db: $(cat db-3.err)"
same_numbers "Markov --db, 3 ranks" db-ref.json db-3.json
[ "$(sqlite3 ranks.db 'select count(*) from samples')" = 5 ] && ok || bad "3 ranks committed other than 5 samples"
[ ! -e twosed.db ] && ok || bad "a worker opened the default database"

# --- A worker killed with SIGKILL mid-run: mpirun ends the job within seconds, the database is
# intact, and --resume with another rank count finishes with the uninterrupted run's numbers.
BIG=(--model mlp:784-256-10 --data synthetic:blobs:10:784:400 -N 100 -M 30 --bootstrap 200 --threads 1 -q --format json)
"$TWOSED" measure "${BIG[@]}" --no-db > big-ref.json || bad "uninterrupted run failed"
"${MPIRUN[@]}" -np 3 "$TWOSED" measure "${BIG[@]}" --db killed.db > /dev/null 2> killed.err &
mpid=$!
committed=0
for _ in $(seq 1 1200); do
  committed=$(sqlite3 killed.db "select count(*) from samples" 2> /dev/null || echo 0)
  [ "${committed:-0}" -ge 3 ] && break
  sleep 0.05
done
victim=""
for c in $(pgrep -P "$mpid"); do
  grep -qz '^OMPI_COMM_WORLD_RANK=2$' "/proc/$c/environ" 2> /dev/null && victim=$c
done
if [ -n "$victim" ]; then
  t0=$(date +%s)
  kill -9 "$victim"
  for _ in $(seq 1 300); do kill -0 "$mpid" 2> /dev/null || break; sleep 0.1; done
  if kill -0 "$mpid" 2> /dev/null; then
    bad "mpirun still running 30 s after a worker was killed"
    kill -9 "$mpid"
  fi
  wait "$mpid"
  code=$?
  [ "$code" -ne 0 ] && ok || bad "mpirun exited 0 after a worker was killed"
  [ $(($(date +%s) - t0)) -le 10 ] && ok || bad "the job took over 10 s to end after a worker was killed"
else
  bad "no rank 2 among mpirun's children ($(pgrep -P "$mpid" | tr '\n' ' '))"
  kill -9 "$mpid"
  wait "$mpid"
fi
after=$(sqlite3 killed.db "select count(*) from samples")
if [ "$after" -ge 3 ] && [ "$after" -lt 30 ]; then ok; else bad "the kill left $after of 30 samples (expected 3..29)"; fi
[ "$(sqlite3 killed.db 'pragma integrity_check')" = ok ] && ok || bad "database not intact after the kill"
# mpirun may return before every rank has exited; --resume refuses a run whose process (rank 0)
# is still alive, so wait (at most 20 s) for it to be gone.
pid=$(sqlite3 killed.db "select text from texts where name = 'process'" 2> /dev/null | cut -d@ -f1)
for _ in $(seq 200); do { [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null; } || break; sleep 0.1; done
"${MPIRUN[@]}" -np 2 "$TWOSED" measure "${BIG[@]}" --db killed.db --resume > resumed.json 2> resumed.err ||
  bad "--resume with 2 ranks failed: $(head -c 600 resumed.err)"
python3 -c 'import json,sys; r = json.load(open("resumed.json")); assert r["resumed_samples"] == int(sys.argv[1]), r["resumed_samples"]' \
  "$after" && ok || bad "the resumed run did not take the $after committed samples"
same_numbers "killed, resumed with 2 ranks" big-ref.json resumed.json

# --- A rank's data error: its message, its rank and host, exit 1; committed samples stay and
# --resume (another rank count) finishes the run.
TWOSED_TEST_FAIL_RANK=2 "${MPIRUN[@]}" -x TWOSED_TEST_FAIL_RANK -np 3 "$TWOSED" measure "${STD[@]}" --db fail.db \
  > /dev/null 2> fail.err
code=$?
[ "$code" -eq 1 ] && ok || bad "an injected data error: exit $code, expected 1: $(head -c 600 fail.err)"
grep -Eq "^twosed: error: rank 2 \(.+\): injected failure at the first sample \(TWOSED_TEST_FAIL_RANK=2\)$" fail.err && ok ||
  bad "the error does not name rank 2, its host and the message: $(head -c 600 fail.err)"
[ "$(grep -c '^twosed: error' fail.err)" = 1 ] && ok || bad "not one error line: $(cat fail.err)"
"${MPIRUN[@]}" -np 2 "$TWOSED" measure "${STD[@]}" --db fail.db --resume > fail-resumed.json 2> fail-resumed.err ||
  bad "--resume after a data error failed: $(head -c 600 fail-resumed.err)"
same_numbers "failed, resumed with 2 ranks" STD-ref.json fail-resumed.json
# Rank 0's own compute thread fails the same way.
TWOSED_TEST_FAIL_RANK=0 "${MPIRUN[@]}" -x TWOSED_TEST_FAIL_RANK -np 2 "$TWOSED" measure "${STD[@]}" --no-db \
  > /dev/null 2> fail0.err
code=$?
[ "$code" -eq 1 ] && grep -q "^twosed: error: rank 0 (" fail0.err && ok || bad "rank 0's failure: exit $code: $(cat fail0.err)"

# --- A usage error is reported once, by rank 0, and every rank exits.
"${MPIRUN[@]}" -np 3 "$TWOSED" measure --model mlp:6-x-3 --no-db > /dev/null 2> usage.err
code=$?
[ "$code" -eq 2 ] && [ "$(grep -c 'twosed: error' usage.err)" = 1 ] && ok ||
  bad "a bad spec under 3 ranks: exit $code, stderr: $(head -c 600 usage.err)"

finish
