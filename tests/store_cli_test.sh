#!/usr/bin/env bash
# End-to-end tests of the results store through the CLI: measure --db, a real SIGKILL and
# --resume, runs/show/export, schema checks, train and checkpoints, bound, study files.
# Usage: store_cli_test.sh PATH/TO/twosed
set -u
TWOSED="$1"
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# same_curves A.json B.json: the curves, at_n and ed values of two JSON results are identical.
same_curves() {
  python3 - "$1" "$2" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["curves", "at_n", "ed", "mean_trace"]
diff = [k for k in keys if a.get(k) != b.get(k)]
sys.exit(1 if diff else 0)
PY
}

SMALL=(--model mlp:6-5-3 --data synthetic:blobs:3:6:200 -N 20 -M 6 --bootstrap 100 -q)

# --- measure records into ./twosed.db by default; runs lists it; show recomputes.
expect 0 "stored as run 1 in twosed.db" measure "${SMALL[@]}"
[ -f twosed.db ] && ok || bad "no twosed.db in the working directory"
expect 0 "1 +measure +done +- +6 smp" runs
expect 0 '"kind": "measure"' runs --format json
expect 0 "run 1 \(done" show 1
# show --eps/--zeta from the stored spectra equals a fresh measurement with those values.
"$TWOSED" show 1 --eps 1e-3,0.05 --zeta 0.25 --format json > shown.json
"$TWOSED" measure "${SMALL[@]}" --no-db --eps 1e-3,0.05 --zeta 0.25 --format json > fresh.json
same_curves shown.json fresh.json && ok || bad "show --eps/--zeta differs from a fresh measurement"
expect 0 "^kind,zeta,eps,n,value,stderr" export 1 --format csv
expect 0 '"config"' export 1 --format json
# The stored spectra exported as a spectra file give the same curves through --spectra-in.
"$TWOSED" export 1 --format spectra --out run1.jsonl || bad "export --format spectra failed"
"$TWOSED" measure --spectra-in run1.jsonl --bootstrap 100 --format json -q > from-file.json
"$TWOSED" show 1 --format json > shown1.json
same_curves from-file.json shown1.json && ok || bad "exported spectra give other curves"
expect 2 "needs --out" export 1 --format spectra
expect 0 "measure" measure "${SMALL[@]}" --no-db
expect 0 "1 +measure" runs   # --no-db added nothing
[ "$("$TWOSED" runs --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] && ok ||
  bad "--no-db recorded a run"

# --- A real SIGKILL during a measurement, then --resume: nothing committed is recomputed and
# the result equals an uninterrupted run's.
# M large enough that a loaded machine cannot finish the run between the poll and the kill.
BIG=(--model mlp:784-256-10 -N 100 -M 90 --bootstrap 200 -q --format json)
"$TWOSED" measure "${BIG[@]}" --db full.db > full.json || bad "uninterrupted run failed"
"$TWOSED" measure "${BIG[@]}" --db killed.db > /dev/null 2>&1 &
pid=$!
committed=0
for _ in $(seq 1 600); do
  committed=$(sqlite3 killed.db "select count(*) from samples" 2> /dev/null || echo 0)
  [ "${committed:-0}" -ge 3 ] && break
  sleep 0.05
done
kill -9 "$pid" 2> /dev/null
wait "$pid" 2> /dev/null
after=$(sqlite3 killed.db "select count(*) from samples")
if [ "$after" -ge 3 ] && [ "$after" -lt 90 ]; then ok; else bad "kill left $after of 90 samples (expected 3..89)"; fi
[ "$(sqlite3 killed.db 'pragma integrity_check')" = ok ] && ok || bad "database not intact after SIGKILL"
expect 0 "1 +measure +stopped" runs --db killed.db
"$TWOSED" measure "${BIG[@]}" --db killed.db --resume > resumed.json || bad "--resume failed"
python3 - resumed.json "$after" <<'PY' && ok || bad "resume recomputed committed samples or lost some"
import json, sys
r = json.load(open(sys.argv[1])); k = int(sys.argv[2])
assert r["resumed_samples"] == k, (r["resumed_samples"], k)
assert f"resumed: {k} of 90 samples taken from the database, {90 - k} computed now" in r["stored"], r["stored"]
PY
same_curves full.json resumed.json && ok || bad "resumed result differs from the uninterrupted run"
expect 1 "run 1 with this configuration is already finished" measure "${BIG[@]}" --db killed.db --resume
expect 1 "no unfinished measure run to resume" measure "${SMALL[@]}" --db fresh.db --resume
# A resume with another configuration is refused, naming what differs.
"$TWOSED" measure "${BIG[@]}" --db other.db > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ "$(sqlite3 other.db "select count(*) from samples" 2> /dev/null || echo 0)" -ge 1 ] && break
  sleep 0.05
done
kill -9 "$pid" 2> /dev/null
wait "$pid" 2> /dev/null
expect 1 "run 1 has a different configuration: samples 90 \(now 89\)" measure --model mlp:784-256-10 -N 100 -M 89 \
  --bootstrap 200 -q --db other.db --resume

# --- Databases that are not twosed's, or newer.
echo "not a database" > text.db
expect 1 "text.db: not a twosed database \(not an SQLite file\)" measure "${SMALL[@]}" --db text.db
sqlite3 foreign.db "create table t(x); insert into t values (1);"
before=$(md5sum < foreign.db)
expect 1 "foreign.db: not a twosed database \(application_id" runs --db foreign.db
[ "$(md5sum < foreign.db)" = "$before" ] && ok || bad "a foreign database was modified"
cp twosed.db newer.db
sqlite3 newer.db "pragma user_version = 7"
expect 1 "newer.db: schema version 7 is newer than this twosed" show 1 --db newer.db
expect 1 "missing.db: no such results database" runs --db missing.db
expect 1 "no run 42" show 42
expect 2 "expected csv, json or spectra" export 1 --format xml

# --- train: deterministic, checkpoints that measure accepts, and refuses for another model.
TRAIN=(--model mlp:6-8-3 --data synthetic:blobs:3:6:300 --test-fraction 0.2 --epochs 3 --batch 32 --lr 0.01 -q)
"$TWOSED" train "${TRAIN[@]}" --format csv --checkpoint ck.npy > t1.csv || bad "train failed"
"$TWOSED" train "${TRAIN[@]}" --format csv --no-db > t2.csv
cmp -s t1.csv t2.csv && bad "train csv includes wall times: expected them to differ" || true
cut -d, -f1-6 t1.csv > a.csv
cut -d, -f1-6 t2.csv > b.csv
cmp -s a.csv b.csv && ok || bad "two trainings with the same seed differ"
[ -f ck.npy ] && [ -f ck.json ] && ok || bad "no checkpoint and sidecar"
expect 0 "local box ck.npy" measure --model mlp:6-8-3 --data synthetic:blobs:3:6:200 -N 20 -M 4 --space local:ck.npy:0.01 -q --no-db
expect 1 "ck.npy: a checkpoint of 'mlp:6-8-3' \(d = 83\), but the model is 'mlp:6-8-3-3'" measure \
  --model mlp:6-8-3-3 --data synthetic:blobs:3:6:200 -N 20 -M 4 --space local:ck.npy:0.01 -q --no-db
expect 0 "final train loss" train "${TRAIN[@]}"
train_run=$("$TWOSED" runs --kind train --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
expect 0 "training of mlp:6-8-3" show "$train_run"
expect 0 "^epoch,step,train_loss" export "$train_run" --format csv
# The library names the field (TrainOptions.momentum); the CLI says the flag.
expect 2 "^twosed: error: --optimizer must be adam or sgd, got 'rmsprop'$" train "${TRAIN[@]}" --optimizer rmsprop
expect 2 "^twosed: error: --momentum must be in \[0, 1\), got 1.5$" train "${TRAIN[@]}" --momentum 1.5
expect 2 "^twosed: error: --test-fraction must be in \[0, 1\), got 2$" train --model mlp:6-8-3 \
  --data synthetic:blobs:3:6:300 --test-fraction 2 --epochs 1 -q --no-db
expect 2 "bound" bound "$train_run" --n 1000

# --- bound: docs/math.md section 6, with the caveat printed beside it.
expect 0 "covering constants are set to one" bound 1 --n 1e3,1e4
expect 0 '"caveat"' bound 1 --n 1e4 --format json
expect 0 "^n,zeta,eps" bound 1 --n 1e4 --format csv --search grid
expect 2 "^twosed: error: --delta must satisfy 0 < delta < 1, got 2$" bound 1 --n 1e4 --delta 2
expect 2 "--n" bound 1 --n 0.5

# --- study files: errors name the key and the expected type.
printf '{"models": ["mlp:6-4-3"], "train": {"epochs": "ten"}}' > bad1.json
expect 2 "bad1.json: key 'train.epochs': expected an integer, got \"ten\"" study bad1.json
printf '{"models": ["mlp:6-4-3"], "measure": {"smaples": 3}}' > bad2.json
expect 2 "bad2.json: unknown key 'measure.smaples'" study bad2.json
printf '{"models": ["mlp:6-x-3"]}' > bad3.json
expect 2 "bad3.json: key 'models\[0\]'" study bad3.json
printf '{"models": [' > bad4.json
expect 1 "bad4.json: not valid JSON" study bad4.json
expect 1 "nofile.json: cannot open study file" study nofile.json
# A bad value fails before any work (no database is created), in the file's words, not as a flag.
printf '{"models": ["mlp:6-4-3"], "train": {"momentum": 1.5}}' > bad5.json
expect 2 "^twosed: error: bad5.json: key 'train.momentum': must be in \[0, 1\), got 1.5$" study -q --db bad5.db bad5.json
[ ! -e bad5.db ] && ok || bad "a study with a bad value created its database"
printf '{"models": ["mlp:6-4-3"], "measure": {"samples": 3, "samples": 4}}' > bad6.json
expect 2 "bad6.json: key 'measure.samples' appears twice" study -q --db bad6.db bad6.json
# A 100000-deep file is refused while parsing (it used to crash dumping the value: exit 139).
python3 -c "open('deep.json','w').write('{\"name\":'+'['*100000+']'*100000+'}')"
expect 1 "^twosed: error: deep.json: nesting deeper than 64 levels$" study -q --db deep.db deep.json
cat > tiny.json <<'J'
{"name": "tiny", "data": {"source": "synthetic:blobs:3:6:400", "test_fraction": 0.25},
 "models": ["mlp:6-2-3", "mlp:6-4-3", "mlp:6-16-3"],
 "measure": {"inputs": 10, "samples": 4, "eps": [0.01], "sigmas": [0.5], "bootstrap": 50},
 "train": {"epochs": 2, "seeds": [0, 1], "batch": 50, "lr": 0.01}, "correlation": {"bootstrap": 100}}
J
expect 0 "rank correlations with the final loss" study tiny.json --db study.db -q --plot tiny.png
[ -s tiny-curves.png ] && [ -s tiny-training.png ] && [ -s tiny-scatter.png ] && ok || bad "study figures missing"
expect 0 '^measure,target,method,value,lo,hi,n' show 1 --db study.db --format csv
expect 1 "run 1 with this configuration is already finished" study tiny.json --db study.db --resume

# A study killed midway and resumed reuses every finished child run and ends with the same numbers.
cat > slow.json <<'J'
{"name": "slow", "data": {"source": "synthetic:blobs:3:6:2000", "test_fraction": 0.25},
 "models": ["mlp:6-2-3", "mlp:6-4-3", "mlp:6-16-3"],
 "measure": {"inputs": 10, "samples": 4, "eps": [0.01], "sigmas": [0.5], "bootstrap": 50},
 "train": {"epochs": 40, "seeds": [0, 1], "batch": 50, "lr": 0.01}, "correlation": {"bootstrap": 100}}
J
"$TWOSED" study slow.json --db slow-full.db -q --format json > slow-full.json || bad "study failed"
"$TWOSED" study slow.json --db slow.db -q > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ "$(sqlite3 slow.db "select count(*) from runs where kind = 'train' and status = 'done'" 2> /dev/null || echo 0)" -ge 2 ] && break
  sleep 0.02
done
kill -9 "$pid" 2> /dev/null
wait "$pid" 2> /dev/null
done_before=$(sqlite3 slow.db "select group_concat(id) from runs where status = 'done' order by id")
"$TWOSED" study slow.json --db slow.db -q --resume --format json > slow-resumed.json || bad "study --resume failed"
python3 - slow-full.json slow-resumed.json "$done_before" <<'PY' && ok || bad "resumed study differs or recomputed finished runs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
done = {int(x) for x in sys.argv[3].split(",") if x}
assert len(done) >= 2, done
for ma, mb in zip(a["models"], b["models"]):
    assert ma["measures"] == mb["measures"] and ma["train_loss"] == mb["train_loss"], ma["spec"]
assert a["correlations"] == b["correlations"]
used = {r for m in b["models"] for r in m["train_runs"]} | {r for m in b["models"] for r in m["measure_runs"].values()}
assert done <= used, (done, used)   # every run finished before the kill is reused, not redone
PY

# --- --resume of a run another live process works on is refused up front, and of two
# concurrent resumes of a stopped run exactly one proceeds; the other never writes the run.
LIVE=(--model mlp:784-64-10 -N 60 -M 240 --eps 1e-4,1e-2 --bootstrap 100 -q --format json)
# In sequence (--parallel-samples is not part of the configuration): the run must outlast the
# refused resume's start-up, and two samples at once could finish it first on a quiet machine.
"$TWOSED" measure "${LIVE[@]}" --parallel-samples 1 --db live.db > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ "$(sqlite3 live.db "select count(*) from samples" 2> /dev/null || echo 0)" -ge 1 ] && break
  sleep 0.05
done
expect 1 "live.db: cannot resume: run 1 is still running in process $pid@[^;]+; wait for it or stop it" \
  measure "${LIVE[@]}" --db live.db --resume
kill -9 "$pid" 2> /dev/null
wait "$pid" 2> /dev/null
"$TWOSED" measure "${LIVE[@]}" --db live.db --resume > r1.json 2> r1.err &
p1=$!
"$TWOSED" measure "${LIVE[@]}" --db live.db --resume > r2.json 2> r2.err &
p2=$!
wait "$p1"; c1=$?
wait "$p2"; c2=$?
if [ $((c1 + c2)) -eq 1 ]; then ok; else bad "concurrent resumes exited $c1 and $c2 (expected one 0, one 1): $(cat r1.err r2.err)"; fi
grep -Eq "still running in process|already finished" r1.err r2.err && ok || bad "the refused resume said: $(cat r1.err r2.err)"
[ "$(sqlite3 live.db "select status || '|' || coalesce(message, '') from runs")" = "done|" ] && ok ||
  bad "the run is not done with an empty message: $(sqlite3 live.db 'select status, message from runs')"

# --- --resume --samples M2 extends a finished run; the result equals a fresh M2 run.
BASE=(--data synthetic:blobs:3:6:200 -N 20 --bootstrap 100 -q)
"$TWOSED" measure "${SMALL[@]}" --db extend.db --format json > /dev/null || bad "measure failed"
expect 0 "resumed: 6 of 9 samples taken from the database, 3 computed now" measure --model mlp:6-5-3 "${BASE[@]}" -M 9 \
  --db extend.db --resume
"$TWOSED" show 1 --db extend.db --format json > extended.json
"$TWOSED" measure --model mlp:6-5-3 "${BASE[@]}" -M 9 --no-db --format json > fresh9.json
same_curves extended.json fresh9.json && ok || bad "an extended run differs from a fresh run with as many samples"
expect 0 "1 +measure +done +- +9 smp" runs --db extend.db

# --- show: the data line says where the spectra came from; a recomputed time says so.
expect 0 "data    spectra stored in run 1 of extend.db \(measured on synthetic:blobs:3:6:200\)" show 1 --db extend.db
expect 0 "time    recomputed from stored spectra in [0-9.]+ s \(measured: passes" show 1 --db extend.db
# CSV: the shortest form that round-trips (0.001, not 0.0010000000000000000208).
expect 0 "^curve,0,0.001," show 1 --db extend.db --eps 1e-3,0.05 --format csv

# --- runs: the "stopped" legend only when a stopped run is listed; --delete.
"$TWOSED" runs --db extend.db | grep -q "stopped: killed" && bad "legend without a stopped run" || ok
cp other.db legend.db
expect 0 "stopped: killed or crashed; continue with --resume" runs --db legend.db
"$TWOSED" measure --model mlp:6-5-3 "${BASE[@]}" -M 4 --db extend.db > /dev/null
expect 0 "deleted run 2" runs --db extend.db --delete 2
expect 1 "no run 2" show 2 --db extend.db

# --- compare: several stored runs at one eps grid, with eps_zeta(n).
"$TWOSED" measure --model mlp:6-8-3 "${BASE[@]}" -M 6 --db extend.db > /dev/null
expect 0 "twosed compare: 2 stored measurements" compare 1 3 --db extend.db --eps 1e-3,0.05 --n 1000
expect 0 '"runs"' compare 1 3 --db extend.db --format json
expect 0 "^run,kind,zeta,eps,n,value,stderr" compare 1 3 --db extend.db --format csv
"$TWOSED" compare 1 3 --db extend.db --plot cmp.png > /dev/null && [ -s cmp.png ] && ok || bad "compare --plot wrote no figure"
"$TWOSED" compare 1 --db extend.db --eps 1e-3,0.05 --zeta 0.25 --format csv | grep "^1,curve" | cut -d, -f3- > cmp.csv
"$TWOSED" show 1 --db extend.db --eps 1e-3,0.05 --zeta 0.25 --format csv | grep "^curve" | sed 's/^curve,//' > shown.csv
cmp -s cmp.csv shown.csv && ok || bad "compare differs from show at the same eps/zeta: $(diff cmp.csv shown.csv | head -3)"

# --- Defaults that used to hide themselves.
expect 0 "synthetic:covertype" measure --help
"$TWOSED" measure --model mlp:6-5-3 -N 10 -M 2 --bootstrap 10 -q --no-db 2> notice.err > /dev/null
grep -q "^twosed: no --data given and the model does not take 784 inputs: using synthetic:blobs:3:6$" notice.err && ok ||
  bad "no default-data notice: $(cat notice.err)"
expect 1 "training diverged: the training loss is (NaN|infinite) after epoch 1 \\(10 steps; lr 1e\\+300 is probably too large\\); recorded as run 1 in diverge.db" train --model mlp:6-8-3 \
  --data synthetic:blobs:3:6:300 --epochs 3 --batch 32 --optimizer sgd --lr 1e300 -q --db diverge.db
[ "$(sqlite3 diverge.db "select json_extract(result, '$.diverged') is not null from runs")" = 1 ] && ok ||
  bad "the diverged training is not recorded as diverged"
expect 0 "1 +train +done .*\\(diverged\\)" runs --db diverge.db

# --- Ctrl-C during a recorded measurement says what is stored and how to continue.
python3 - "$TWOSED" <<'PY' && ok || bad "SIGINT message"
import signal, sqlite3, subprocess, sys, time
cmd = [sys.argv[1], "measure", "--model", "mlp:784-64-10", "-N", "60", "-M", "60", "--eps", "1e-4,1e-2", "-q",
       "--db", "int.db"]
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
for _ in range(600):
    try:
        if sqlite3.connect("int.db").execute("select count(*) from samples").fetchone()[0] >= 1: break
    except sqlite3.Error:
        pass
    time.sleep(0.05)
p.send_signal(signal.SIGINT)
err = p.communicate()[1]
assert p.returncode == 130, (p.returncode, err)
n = sqlite3.connect("int.db").execute("select count(*) from samples").fetchone()[0]
want = (f"twosed: stopped; {n} of 60 samples are stored in run 1 of int.db; continue with: twosed measure --model "
        f"mlp:784-64-10 -N 60 -M 60 --eps 1e-4,1e-2 -q --db int.db --resume 1")
assert want in err, (want, err)
PY
"$TWOSED" measure --model mlp:784-64-10 -N 60 -M 60 --eps 1e-4,1e-2 -q --db int.db --resume 1 > /dev/null &&
  ok || bad "the printed resume command failed"

# --- A study whose trainings diverge says so and lists the models left out of the correlations.
sed 's/"lr": 0.01/"lr": 1e300, "optimizer": "sgd"/' tiny.json > diverging.json
"$TWOSED" study diverging.json --no-db -q > diverging.txt 2>&1 || bad "a diverging study failed: $(tail -2 diverging.txt)"
grep -Eq "^  diverged \(a final loss not finite; no loss mean\): .*mlp:6-2-3 seed 0" diverging.txt && ok ||
  bad "no diverged model in the study table: $(tail -8 diverging.txt)"
grep -q "no correlations: fewer than two models with a finite loss" diverging.txt && ok || bad "no reason for the empty table"

# --- study --no-db: runs in memory, prints the result, leaves no database.
before=$(md5sum < twosed.db)
expect 0 "twosed study" study tiny.json --no-db -q
[ ! -e ":memory:" ] && [ "$(md5sum < twosed.db)" = "$before" ] && ok || bad "study --no-db wrote a database"

finish
