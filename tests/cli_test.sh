#!/usr/bin/env bash
# End-to-end tests of the twosed CLI: outputs, formats and every bad-input path's exit code
# and message. Usage: cli_test.sh PATH/TO/twosed
set -u
TWOSED="$1"
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# Tiny .npy writer (float64 or float32, C order) with the standard library only.
write_npy() {  # write_npy PATH DTYPE ROWS COLS SEED
  python3 - "$@" <<'PY'
import random, struct, sys
path, dtype, rows, cols, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
random.seed(seed)
shape = f"({rows}, {cols})" if rows > 0 else f"({cols},)"
header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
fmt = "<d" if dtype == "<f8" else "<f"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for _ in range(max(rows, 1) * cols):
        f.write(struct.pack(fmt, random.uniform(-0.5, 0.5)))
PY
}

# --- Help and version
expect 0 "Examples:" measure --help
expect 0 "twosed measure" --help
expect 0 "twosed [0-9]" --version

# --- The front binary loads no LibTorch (its load alone takes ~0.5 s): no NEEDED entry names
# libtorch/libc10, nor does the loader pull one in indirectly; the store commands run there, the
# others in the twosed-torch it executes (the same process: exit codes come back unchanged).
needed=$(readelf -d "$TWOSED" 2> /dev/null | grep NEEDED)
if [ -n "$needed" ] && ! grep -Eq "libtorch|libc10" <<< "$needed"; then ok; else
  bad "$TWOSED NEEDED entries name LibTorch (or readelf failed): $(tr '\n' ' ' <<< "$needed")"
fi
if ldd "$TWOSED" > "$WORK/ldd" 2>&1 && ! grep -Eq "libtorch|libc10|not found" "$WORK/ldd"; then ok; else
  bad "ldd $TWOSED: $(grep -E "libtorch|libc10|not found" "$WORK/ldd" | head -3)"
fi
torch_exe="$(dirname "$TWOSED")/twosed-torch"
if [ -x "$torch_exe" ] && readelf -d "$torch_exe" | grep NEEDED | grep -Eq "libtorch|libc10"; then ok; else
  bad "$torch_exe is missing or does not link LibTorch"
fi
expect 0 "runs \[OPTIONS\]|Usage:.*runs" runs --help
expect 2 "--format xml: expected table or json" runs --format xml
expect 0 "measure" --help
# A copy of the front binary without its sibling names what is missing (exit 3), and only for
# the commands that need it.
mkdir -p "$WORK/lonely" && cp "$TWOSED" "$WORK/lonely/twosed"
TWOSED_SAVED="$TWOSED"
TWOSED="$WORK/lonely/twosed"
expect 3 "cannot run .*lonely/twosed-torch \(measure, train and study need it" measure --plan
expect 0 "twosed [0-9]" --version
expect 1 "no-such.db" runs --db no-such.db
TWOSED="$TWOSED_SAVED"

# --- Plan: layers, matrix size and memory, without computing anything
expect 0 "f256 +2304 -> 256 +590080 params" measure --plan --model cnn:3x32x32-c32k3-relu-p2-c64k3-relu-p2-f256-relu-f10
expect 0 "matrix +900 x 900 \(Gram, sample side\)" measure --plan --model mlp:784-64-10
expect 0 "does NOT fit" measure --plan --model mlp:784-100000-100000-10

# --- Formats
SMALL=(measure -q --model mlp:6-5-3 --data synthetic:blobs:3:6:200 --inputs 20 --samples 4 --bootstrap 100)
expect 0 "zeta = 0\.5" "${SMALL[@]}"
expect 0 "^kind,zeta,eps,n,value,stderr" "${SMALL[@]}" --format csv
expect 0 '"curves"' "${SMALL[@]}" --format json --ed-n 1e4 --n 1e4
python3 - "$WORK/out" <<'PY' && ok || bad "JSON structure"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["d"] == 6*5+5+5*3+3 and r["M"] == 4 and r["N"] == 20, r
assert [c["zeta"] for c in r["curves"]] == [0, 0.5]
for c in r["curves"]:
    assert len(c["eps"]) == 25 and len(c["value"]) == 25 and len(c["stderr"]) == 25
    assert abs(c["eps"][0] - 1e-6) < 1e-20 and abs(c["eps"][-1] - 0.1) < 1e-16
    # Every log term is >= 0, so d_zeta(eps) >= zeta*d; and values must be finite.
    assert all(c["zeta"] * r["d"] <= v < float("inf") for v in c["value"]), c["value"]
assert len(r["ed"]) == 1 and len(r["at_n"]) == 2
assert r["fisher"] == "exact" and r["zero_cutoff"]["relative"] == 1e-12
PY
expect 0 "SAMPLED" "${SMALL[@]}" --fisher sampled
expect 0 '"fisher": "sampled"' "${SMALL[@]}" --fisher sampled --format json
"$TWOSED" "${SMALL[@]}" --format json --out "$WORK/r.json" > "$WORK/stdout" 2>&1 \
  && [ ! -s "$WORK/stdout" ] && grep -q '"curves"' "$WORK/r.json" && ok || bad "--out FILE"

# --- Reproducibility: same seed -> identical JSON values; another seed -> different
"$TWOSED" "${SMALL[@]}" --format csv --seed 5 > "$WORK/a.csv"
"$TWOSED" "${SMALL[@]}" --format csv --seed 5 > "$WORK/b.csv"
"$TWOSED" "${SMALL[@]}" --format csv --seed 6 > "$WORK/c.csv"
cmp -s "$WORK/a.csv" "$WORK/b.csv" && ok || bad "same seed gives different output"
cmp -s "$WORK/a.csv" "$WORK/c.csv" && bad "different seeds give identical output" || ok

# --- Spectra written as they are computed; curves recomputed from them without the network
"$TWOSED" "${SMALL[@]}" --format csv --spectra-out "$WORK/spectra.jsonl" > "$WORK/direct.csv"
"$TWOSED" measure -q --spectra-in "$WORK/spectra.jsonl" --bootstrap 100 --format csv > "$WORK/from_file.csv"
cmp -s "$WORK/direct.csv" "$WORK/from_file.csv" && ok || bad "--spectra-in does not reproduce the direct run"
[ "$(wc -l < "$WORK/spectra.jsonl")" -eq 5 ] && ok || bad "spectra file should hold a header and 4 samples"
# A run stopped in the middle of writing its last sample: the finished samples still count.
head -c -40 "$WORK/spectra.jsonl" > "$WORK/stopped.jsonl"
expect 0 "3 finished samples.*unfinished last line was ignored" measure -q --spectra-in "$WORK/stopped.jsonl" --bootstrap 100
printf '{"hello": 1}\n' > "$WORK/notspectra.jsonl"
expect 1 "notspectra.jsonl:1: not a twosed spectra file" measure -q --spectra-in "$WORK/notspectra.jsonl"
expect 2 "excludes" measure -q --spectra-in "$WORK/spectra.jsonl" --model mlp:6-5-3

# --- Given samples and inputs (the cross-implementation path)
write_npy "$WORK/thetas.npy" "<f8" 3 53 1     # d of mlp:6-5-3 is 53
write_npy "$WORK/thetas32.npy" "<f4" 3 53 1
write_npy "$WORK/x.npy" "<f8" 10 6 2
expect 0 '"M": 3' measure -q --model mlp:6-5-3 --thetas "$WORK/thetas.npy" --inputs-file "$WORK/x.npy" --format json --bootstrap 50
expect 0 '"N": 10' measure -q --model mlp:6-5-3 --thetas "$WORK/thetas32.npy" --inputs-file "$WORK/x.npy" --format json --bootstrap 50
# --thetas is read a row at a time: sample 2 of the 3-row file must be what a file holding only
# that row gives, and a non-finite value fails before any sample, naming the sample and parameter.
python3 - "$WORK" <<'PY'
import struct, sys
w = sys.argv[1]
raw = open(f"{w}/thetas.npy", "rb").read()
hl = struct.unpack("<H", raw[8:10])[0]
data = raw[10 + hl:]
def write(path, rows, body):
    h = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, 53), }" % rows
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + body)
write(f"{w}/row2.npy", 1, data[2 * 53 * 8:3 * 53 * 8])
k = 1 * 53 + 7  # sample 1, parameter 7
write(f"{w}/nan.npy", 3, data[:k * 8] + struct.pack("<d", float("nan")) + data[(k + 1) * 8:])
PY
G=(measure -q --no-db --model mlp:6-5-3 --inputs-file "$WORK/x.npy" --format json --bootstrap 50)
"$TWOSED" "${G[@]}" --thetas "$WORK/thetas.npy" > "$WORK/all.out" 2>&1
"$TWOSED" "${G[@]}" --thetas "$WORK/row2.npy" > "$WORK/row2.out" 2>&1
python3 -c "
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert len(a['samples']) == 3 and len(b['samples']) == 1, (len(a['samples']), len(b['samples']))
assert a['samples'][2] == b['samples'][0], (a['samples'][2], b['samples'][0])
" "$WORK/all.out" "$WORK/row2.out" && ok ||
  bad "--thetas: row 2 read alone differs from row 2 of the file: $(head -c 300 "$WORK/all.out") / $(head -c 300 "$WORK/row2.out")"
expect 1 "nan.npy: value nan at sample 1, parameter 7 is out of range: parameters must be finite" \
  "${G[@]}" --thetas "$WORK/nan.npy"
write_npy "$WORK/ckpt.npy" "<f8" 0 53 3
expect 0 "local box" measure -q --model mlp:6-5-3 --space "local:$WORK/ckpt.npy:0.01" --data synthetic:blobs:3:6 --samples 3 --bootstrap 50
expect 0 "zeta = 0" measure -q --model cnn:1x6x6-c2k3-relu-p2-f3 --data synthetic:teacher:cnn:1x6x6-c2k3-tanh-f3:300 --inputs 10 --samples 2 --bootstrap 50
expect 0 "Gaussian" measure -q --model mlp:6-1 --no-bias --task regress --out-noise 0.5 --data synthetic:blobs:2:6 --samples 2 --bootstrap 50

# --- Bad input: usage errors exit 2, data errors exit 1, one line naming what is wrong
expect 2 "token 4 'q2'" measure --model cnn:3x32x32-c32k3-relu-q2-f10
expect 2 "must end with a linear layer" measure --model cnn:3x8x8-c2k3
expect 2 "^twosed: error: --zeta 1.2" measure --zeta 1.2
expect 2 "^twosed: error: --zeta abc" measure --zeta abc
expect 2 "^twosed: error: --eps" measure --eps 0:1:3
expect 2 "^twosed: error: --eps 2" measure --eps 2
expect 2 "--samples must be in \[1, 10000000\], got 0" measure --samples 0
expect 2 "--inputs must be >= 1" measure --inputs 0
expect 2 "^twosed: error: --ed-n 5" measure --ed-n 5
expect 2 "^twosed: error: --n 2" measure --n 2
expect 2 "^twosed: error: --bootstrap 1" measure --bootstrap 1
expect 2 "--format xml: expected one of table, json, csv" measure --format xml
expect 2 "--act swish" measure --act swish
expect 2 "--task foo" measure --task foo
expect 2 "--out-noise must be" measure --model mlp:6-3 --data synthetic:blobs:2:6 --task regress --out-noise -1
expect 2 "--space" measure --space box:0
expect 2 "unknown kind 'foo'" measure --data foo:bar
expect 2 "not expected: --bogus" measure --bogus
expect 2 "excludes" measure --thetas "$WORK/thetas.npy" --samples 3
expect 2 "--threads must be >= 1" measure --threads -2
expect 2 "--samples must be in \[1, 10000000\]" measure --samples 99999999999
expect 2 "--bootstrap 2000000: .*<= 1000000" measure --bootstrap 2000000
expect 2 "--memory-budget must be in" measure --memory-budget 0
# Pre-flight memory check: a model that cannot fit fails at once, saying what needs the memory.
expect 2 "needs about [0-9.]+ GB per parameter sample \(parameters [0-9.]+ GB" measure --model mlp:784-100000-100000-10 --data synthetic:blobs:10:784:200
expect 2 "needs at least 2" measure --model mlp:6-1 --data synthetic:blobs:1:6
expect 1 "/nonexistent.csv: cannot open" measure --model mlp:4-3 --data csv:/nonexistent.csv
expect 1 "has 6 features per example, but model 'mlp:5-3' takes 5" measure --model mlp:5-3 --data synthetic:blobs:3:6
expect 1 "has 4 classes, but model 'mlp:5-3' has only 3 outputs" measure --model mlp:5-3 --data synthetic:blobs:4:5
expect 1 "expected shape \(M, 53\)" measure --model mlp:6-5-3 --thetas "$WORK/x.npy"
expect 1 "checkpoint has shape" measure --model mlp:6-5-4 --space "local:$WORK/ckpt.npy:0.1" --data synthetic:blobs:3:6
expect 1 "takes 7" measure --model mlp:7-3 --inputs-file "$WORK/x.npy"
printf 'a,b,label\n1,2,0\n3,x,1\n' > "$WORK/bad.csv"
expect 1 "bad.csv:3:2: 'x' is not a number" measure --model mlp:2-2 --data "csv:$WORK/bad.csv"
printf 'a,b,label\n1,2,0\n3,4\n' > "$WORK/short.csv"
expect 1 "short.csv:3: expected 3 fields, found 2" measure --model mlp:2-2 --data "csv:$WORK/short.csv"
printf 'a,b,label\n1,nan,0\n3,4,1\n' > "$WORK/nan.csv"
expect 1 "nan.csv:2:2" measure --model mlp:2-2 --data "csv:$WORK/nan.csv"
printf 'a,b,y\n1,2,0.5\n3,1,-1.5\n2,2,0.25\n' > "$WORK/reg.csv"
expect 0 "Gaussian" measure -q --model mlp:2-3-1 --task regress --data "csv:$WORK/reg.csv:label=y" --samples 2 --bootstrap 50
expect 1 "reg.csv:2: label '0.5' is not an integer" measure -q --model mlp:2-3 --data "csv:$WORK/reg.csv:label=y"
printf 'not an npy file at all' > "$WORK/junk.npy"
expect 1 "junk.npy" measure --model mlp:6-5-3 --thetas "$WORK/junk.npy"
printf '\x00\x00\x08\x01\x00\x00\x00\x02' > "$WORK/images"
expect 1 "images" measure --model mlp:4-2 --data "idx:$WORK/images"
expect 1 "^twosed: error: /nonexistent-dir/r.json: cannot write output: directory '/nonexistent-dir': No such file" "${SMALL[@]}" --out /nonexistent-dir/r.json

# --- Markov chain model (--markov) ---
MK=(measure -q --model mlp:6-5-4-3 --data synthetic:blobs:3:6 --inputs 8 --samples 4 --bootstrap 50 --eps 1e-4:1e-1:4)
expect 0 "lower 2sED \(layer by layer\) and chain 2sED" "${MK[@]}" --markov --sigma 0.2
expect 0 "layer breakdown of the lower 2sED at eps = 1\.000e-02" "${MK[@]}" --markov --sigma 0.2 --breakdown-eps 0.01
expect 0 '"lower_stderr"' "${MK[@]}" --markov --sigma 0.2 --format json
expect 0 '"contribution"' "${MK[@]}" --markov --sigma 0.2 --format json --noise-draws 3
expect 0 "^kind,zeta,eps,n,layer,value,stderr" "${MK[@]}" --markov --sigma 0.2 --format csv
expect 0 "Markov chain model, sigma = 0.1" measure --plan --markov --sigma 0.1 --model cnn:3x32x32-c16k3-relu-p2-f10
expect 2 "Markov model .* needs about .* GB" measure -q --markov --sigma 0.1 --model cnn:3x224x224-c64k3-relu-c64k3-relu-p2-f10
expect 2 "--markov needs --sigma" "${MK[@]}" --markov
expect 2 "--sigma must be a finite number > 0, got 0" "${MK[@]}" --markov --sigma 0
expect 2 "--sigma must be a finite number > 0, got -1" "${MK[@]}" --markov --sigma -1
expect 2 "sigma" "${MK[@]}" --markov --sigma nan
expect 2 "--sigma" "${MK[@]}" --sigma 0.1
expect 2 "--noise-draws must be in \[1, 1000000\], got 0" "${MK[@]}" --markov --sigma 0.1 --noise-draws 0
expect 2 "--noise" "${MK[@]}" --noise "$WORK/x.npy"
expect 2 "--breakdown-eps must be in \(0,1\)" "${MK[@]}" --markov --sigma 0.1 --breakdown-eps 2
expect 0 "lower" "${MK[@]}" --markov --sigma 0.1 --spectra-out "$WORK/mk.jsonl"
expect 0 "Markov chain model.*\n?" measure -q --spectra-in "$WORK/mk.jsonl" --bootstrap 50 --eps 1e-4:1e-1:4
expect 0 "layer breakdown" measure -q --spectra-in "$WORK/mk.jsonl" --bootstrap 50 --eps 1e-2
expect 2 "--plot $WORK/f.pdf: expected a .png or .svg" "${MK[@]}" --markov --sigma 0.1 --plot "$WORK/f.pdf"
# Noise of the wrong shape (H = 5 + 4 = 9 per row; M = 4, N = 8): the error names file and shapes.
write_npy "$WORK/noise_bad.npy" "<f8" 4 9 1
expect 1 "noise_bad.npy: expected noise of shape \(M, N\*R, H\) = \(4, 8, 9\)" "${MK[@]}" --markov --sigma 0.1 --noise "$WORK/noise_bad.npy"
# --noise reproduces the drawn noise exactly: write the noise twosed would draw, inject it, compare.
python3 - "$WORK/noise_ok.npy" <<'PY'
import struct, sys
# 4 x 8 x 9 float64 standard normals in C order; any values will do for a shape round trip.
import random
random.seed(3)
header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 8, 9), }"
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for _ in range(4 * 8 * 9):
        f.write(struct.pack("<d", random.gauss(0, 1)))
PY
expect 0 "noise_ok.npy \(4 x 8 x 9\)" "${MK[@]}" --markov --sigma 0.1 --noise "$WORK/noise_ok.npy"
if command -v gnuplot > /dev/null; then
  expect 0 "lower" "${MK[@]}" --markov --sigma 0.2 --plot "$WORK/m.png"
  if [ "$(head -c 4 "$WORK/m.png" | od -An -c | tr -d ' ')" = "211PNG" ]; then ok; else bad "--plot did not write a PNG"; fi
  expect 0 "zeta" "${MK[@]}" --plot "$WORK/s.svg"
  if grep -q "<svg" "$WORK/s.svg"; then ok; else bad "--plot did not write an SVG"; fi
fi

# --- Hardening: memory limits, write errors, checkpoints' metadata, value ranges
# with_limit 'ulimit ...' CODE REGEX ARGS...: expect, with twosed run under a shell limit.
with_limit() {
  local limit="$1" real="$TWOSED"
  shift
  printf '#!/usr/bin/env bash\ntrap "" XFSZ\n%s\nexec "%s" "$@"\n' "$limit" "$real" > "$WORK/limited.sh"
  chmod +x "$WORK/limited.sh"
  TWOSED="$WORK/limited.sh"
  expect "$@"
  TWOSED="$real"
}
# The address-space limit is the memory the pre-flight check compares with.
with_limit "ulimit -v 2000000" 0 "address-space limit \(ulimit -v\) of 2\.05 GB: does NOT fit" \
  measure --plan --model mlp:784-25-10 --side parameters
with_limit "ulimit -v 2000000" 2 "more than the .* GB left under the address-space limit" \
  measure --no-db -q -M 3 --bootstrap 50 --model mlp:784-25-10 --side parameters
# An allocation that fails after the check is a data error naming the stage, not exit 3.
with_limit "ulimit -v 2000000" 1 "^twosed: error: out of memory while loading the data 'synthetic:blobs:3:784:2000000'" \
  measure --no-db -q -M 3 --bootstrap 50 --model mlp:784-5-3 --data synthetic:blobs:3:784:2000000
# Write errors: /dev/full, a file-size limit (the stand-in for a full disk), a missing directory.
Q=(--no-db -q -M 3 --eps 1e-3 --bootstrap 50)
TINY=(measure --model mlp:6-5-3 --data synthetic:blobs:3:6:200 --inputs 20 "${Q[@]}")
expect 1 "^twosed: error: /dev/full: cannot write output: No space left on device" "${TINY[@]}" --out /dev/full
expect 1 "/dev/full: cannot write output" "${TINY[@]}" --format csv --out /dev/full
"$TWOSED" "${TINY[@]}" > /dev/full 2> "$WORK/err"
if [ $? -eq 1 ] && grep -q "standard output: cannot write output: No space left" "$WORK/err"; then ok; else
  bad "stdout on /dev/full: $(cat "$WORK/err")"; fi
mkdir -p "$WORK/fsz"
echo "old" > "$WORK/fsz/x.json"
with_limit "ulimit -f 1" 1 "fsz/x.json: cannot write output: File too large" "${TINY[@]}" --format json --out "$WORK/fsz/x.json"
if [ "$(cat "$WORK/fsz/x.json")" = "old" ] && [ "$(ls -A "$WORK/fsz" | wc -l)" -eq 1 ]; then ok; else
  bad "a failed write changed the old file or left a temporary: $(ls -A "$WORK/fsz")"; fi
expect 1 "nodir/x.csv: cannot write output: directory '.*nodir': No such file" "${TINY[@]}" --out "$WORK/nodir/x.csv"
expect 1 "nodir/x.png: cannot write figure" "${TINY[@]}" --plot "$WORK/nodir/x.png"
expect 1 "cannot write spectra" "${TINY[@]}" --spectra-out "$WORK/nodir/s.jsonl"
"$TWOSED" measure --model mlp:6-5-3 --data synthetic:blobs:3:6:200 --inputs 20 -q -M 3 --bootstrap 50 --db h.db \
  > /dev/null 2>&1 || bad "measure --db h.db failed"
expect 1 "/dev/full: cannot write output" export 1 --db h.db --format json --out /dev/full
expect 1 "/dev/full: cannot write output" show 1 --db h.db --out /dev/full
expect 1 "/dev/full: cannot write output" bound 1 --db h.db --n 1e4 --out /dev/full
TR=(train --model mlp:4-8-3 --data synthetic:blobs:3:4:60 --epochs 1 --no-db -q)
expect 1 "/dev/full: cannot write output" "${TR[@]}" --out /dev/full
expect 1 "/dev/full: cannot write array: No space left" "${TR[@]}" --checkpoint /dev/full
expect 1 "nodir/ck.npy: cannot write checkpoint" "${TR[@]}" --checkpoint "$WORK/nodir/ck.npy"
# A checkpoint's sidecar must agree with the model options, not only with the spec.
expect 0 "checkpoint" "${TR[@]}" --act tanh --checkpoint "$WORK/ck.npy"
expect 1 "ck.npy: a checkpoint of 'mlp:4-8-3' with activation tanh, but the model's activation is relu" \
  measure "${Q[@]}" --model mlp:4-8-3 --data synthetic:blobs:3:4:60 --inputs 10 --space "local:$WORK/ck.npy:0.01"
expect 0 "zeta" measure "${Q[@]}" --model mlp:4-8-3 --act tanh --data synthetic:blobs:3:4:60 --inputs 10 \
  --space "local:$WORK/ck.npy:0.01"
expect 1 "trained for task classify, but the task is regress" measure "${Q[@]}" --model mlp:4-8-3 --act tanh \
  --task regress --data synthetic:blobs:3:4:60 --inputs 10 --space "local:$WORK/ck.npy:0.01"
expect 1 "with activation tanh, but the model's activation is relu" measure --no-db -q --bootstrap 50 --model mlp:4-8-3 \
  --data synthetic:blobs:3:4:60 --inputs 10 --thetas "$WORK/ck.npy"
expect 1 "with activation tanh, but the model's activation is relu" "${TR[@]}" --init "$WORK/ck.npy"
# Values out of range are data (files) or usage (options) errors that name the value, never exit 3.
python3 -c "
import struct
def npy(path, shape, values):
    h = \"{'descr': '<f8', 'fortran_order': False, 'shape': %s, }\" % (shape,)
    h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\n'
    open(path, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack('<%dd' % len(values), *values))
npy('$WORK/bigx.npy', (2, 4), [1.0, 2.0, 1e154, 0.5, 0, 0, 0, 0])
npy('$WORK/bigck.npy', (67,), [1e200] * 67)
"
expect 1 "value 1e\+154 at example 0, feature 2 is out of range: inputs must satisfy \|x\| <= 1e\+150" \
  measure "${Q[@]}" --model mlp:4-8-3 --inputs-file "$WORK/bigx.npy"
expect 2 "box:1e300: half-width A 1e300 is out of range" measure "${Q[@]}" --model mlp:4-8-3 --space box:1e300
expect 1 "bigck.npy: value 1e\+200 at index 0 is out of range" measure "${Q[@]}" --model mlp:4-8-3 \
  --data synthetic:blobs:3:4:60 --space "local:$WORK/bigck.npy:0.1"
expect 2 "sigma must be >= 1e-150" measure "${Q[@]}" --model mlp:4-8-3 --data synthetic:blobs:3:4:60 --markov --sigma 1e-300
cp h.db corrupt.db
sqlite3 corrupt.db "UPDATE runs SET config = '{\"model\": ' WHERE id = 1"
expect 1 "corrupt.db: run 1: column 'config' is not valid JSON" runs --db corrupt.db
expect 1 "corrupt.db: run 1: column 'config' is not valid JSON" show 1 --db corrupt.db
# Reading commands open the database read-only: no -wal/-shm left, and a read-only copy is readable.
rm -f h.db-wal h.db-shm
expect 0 "mlp:6-5-3" runs --db h.db
if [ ! -e h.db-wal ] && [ ! -e h.db-shm ]; then ok; else bad "runs left $(ls h.db-*)"; fi
mkdir -p "$WORK/ro" && cp h.db "$WORK/ro/ro.db" && chmod 444 "$WORK/ro/ro.db" && chmod 555 "$WORK/ro" && chmod 755 "$WORK"
if setpriv --reuid=65534 --regid=65534 --clear-groups "$TWOSED" --version > /dev/null 2>&1; then
  setpriv --reuid=65534 --regid=65534 --clear-groups "$TWOSED" runs --db "$WORK/ro/ro.db" > "$WORK/out" 2> "$WORK/err"
  if [ $? -eq 0 ] && grep -q "mlp:6-5-3" "$WORK/out"; then ok; else bad "runs on a read-only database as nobody: $(cat "$WORK/err")"; fi
  setpriv --reuid=65534 --regid=65534 --clear-groups "$TWOSED" show 1 --db "$WORK/ro/ro.db" > /dev/null 2> "$WORK/err" \
    && ok || bad "show on a read-only database as nobody: $(cat "$WORK/err")"
else
  echo "skipped: the read-only database as an unprivileged user (setpriv cannot run twosed as nobody here)"
fi
chmod 755 "$WORK/ro"
# Option values refused or reported instead of silently changed.
expect 2 "^twosed: error: --seed must be an integer in \[0, 2\^64-1\], got '-1'" "${TINY[@]}" --seed -1
expect 2 "--seed must be an integer in \[0, 2\^64-1\], got '18446744073709551616'" "${TINY[@]}" --seed 18446744073709551616
expect 0 "zeta" "${TINY[@]}" --seed 18446744073709551615
expect 2 "--seed must be an integer" "${TR[@]}" --seed -1
expect 2 "^twosed: error: --threads must be in \[1, [0-9]+\] \(4 x the [0-9]+ cores of this machine\), got 1000" \
  "${TINY[@]}" --threads 1000
"$TWOSED" measure --model mlp:6-5-3 --data synthetic:blobs:3:6:50 --inputs 1000000 "${Q[@]}" > /dev/null 2> "$WORK/err"
grep -q "warning: N = 1000000 requested, the data has 50 examples: using 50" "$WORK/err" && ok || bad "no N warning: $(cat "$WORK/err")"
expect 0 "\+- n/a" measure --model mlp:6-5-3 --data synthetic:blobs:3:6:200 --inputs 20 --no-db -q -M 1 --bootstrap 50
grep -q "(one sample: no standard error)" "$WORK/out" && ok || bad "no one-sample note"
expect 0 '"stderr": \[' measure --model mlp:6-5-3 --data synthetic:blobs:3:6:200 --inputs 20 --no-db -q -M 1 \
  --bootstrap 50 --format json
python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['curves'][0]; sys.exit(0 if all(v is None for v in c['stderr']) else 1)" \
  "$WORK/out" && ok || bad "M = 1: JSON stderr is not null"
expect 2 "--eps 0.999999999999: each value must be <= 0.99 \(\|log eps\| -> 0" measure --model mlp:6-5-3 \
  --data synthetic:blobs:3:6:200 --inputs 20 --no-db -q -M 3 --bootstrap 50 --eps 0.999999999999
expect 2 "--eps 1e-6:1e-1:1000000: COUNT must be at most 10000" show 1 --db h.db --eps 1e-6:1e-1:1000000
if command -v gnuplot > /dev/null; then
  expect 0 "zeta" "${TINY[@]}" --plot "$WORK/q''2.png"
  [ -s "$WORK/q''2.png" ] && ok || bad "--plot \"q''2.png\" wrote nothing"
fi

finish
