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
expect 1 "--out /nonexistent-dir/r.json: cannot open" "${SMALL[@]}" --out /nonexistent-dir/r.json

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

finish
