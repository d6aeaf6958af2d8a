#!/usr/bin/env bash
# Compares twosed's standard-model 2sED with the independent pure-Python reference
# (tests/reference_2sed.py: dense Fisher from analytic Jacobians, cyclic Jacobi eigenvalues) on
# injected --thetas and --inputs-file, as an outside team would. Every curve value, ED value and
# at_n value, the eps grids, d/M/N/k, the mean trace and the per-sample traces must agree to
# 1e-8 relative.
#
# Standard errors come from twosed's own bootstrap RNG, so they are not compared to 1e-8. The
# reference computes the *ideal* bootstrap standard error exactly (all C(2M-1, M) resamples with
# their multinomial probabilities; deterministic). twosed's B = 200 estimate of the same quantity
# has a relative Monte Carlo error of about 1/sqrt(2B) = 5%, so its stderr must be finite, >= 0
# and within a factor 2 of the ideal one: a loose check that it resamples the M samples and
# recomputes t, not a precision check. twosed's output is seeded, so the check is not flaky.
#
# Usage: reference_test.sh PATH/TO/twosed   (KEEP_WORK=1 keeps the temporary folder of .npy/.json)
set -u
TWOSED="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REF="$HERE/reference_2sed.py"
WORK=$(mktemp -d)
cd "$WORK"  # measurements record into ./twosed.db: keep it in the temporary folder
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
pass=0
fail=0

# write_npy PATH DTYPE ROWS COLS SEED LO HI: uniform values in [LO, HI], C order.
write_npy() {
  python3 - "$@" <<'PY'
import random, struct, sys
path, dtype, rows, cols, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lo, hi = float(sys.argv[6]), float(sys.argv[7])
rng = random.Random(seed)
header = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (dtype, rows, cols)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
fmt = "<d" if dtype == "<f8" else "<f"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for _ in range(rows * cols):
        f.write(struct.pack(fmt, rng.uniform(lo, hi)))
PY
}

# compare NAME TWOSED.json REF.json: prints every mismatch; returns non-zero on any.
compare() {
  python3 - "$@" <<'PY'
import json, math, sys
name, got_path, ref_path = sys.argv[1:4]
got, ref = json.load(open(got_path)), json.load(open(ref_path))
RTOL = 1e-8
errors = []

def close(a, b):
    return math.isfinite(a) and abs(a - b) <= RTOL * max(abs(a), abs(b)) + 1e-300

worst = [0.0]

def num(what, a, b):
    if math.isfinite(a) and math.isfinite(b):
        worst[0] = max(worst[0], abs(a - b) / max(abs(a), abs(b), 1e-300))
    if not close(a, b):
        rel = abs(a - b) / max(abs(a), abs(b), 1e-300)
        errors.append(f"{what}: twosed {a!r} vs reference {b!r} (rel diff {rel:.3e})")

def se(what, a, b):
    if a is None or not math.isfinite(a) or a < 0:
        errors.append(f"{what} stderr: twosed {a!r} is not finite and >= 0")
    elif b > 1e-12 * max(1.0, abs(a)) and not 0.5 <= a / b <= 2.0:
        errors.append(f"{what} stderr: twosed {a!r} vs ideal bootstrap {b!r} "
                      f"(ratio {a / b:.3f} outside [0.5, 2])")

for key in ("d", "M", "N", "k"):
    if got.get(key) != ref[key]:
        errors.append(f"{key}: twosed {got.get(key)!r} vs reference {ref[key]!r}")
if got.get("cover") != ref["cover"]:
    errors.append(f"cover: twosed {got.get('cover')!r} vs reference {ref['cover']!r}")
num("mean_trace", got["mean_trace"], ref["mean_trace"])
gs, rs = got.get("samples", []), ref["samples"]
if len(gs) != len(rs):
    errors.append(f"samples: twosed has {len(gs)}, reference {len(rs)}")
for j, (g, r) in enumerate(zip(gs, rs)):
    num(f"samples[{j}].trace", g["trace"], r["trace"])
    # Kept (non-zero) eigenvalues: the same on both sides. The cut counts differ by design
    # (twosed's Gram side has N(k-1) rows, its softmax factor k-1 rows), so they are not compared.
    if g.get("kept") != r["kept"]:
        errors.append(f"samples[{j}].kept: twosed {g.get('kept')!r} vs reference {r['kept']!r}")

gc, rc = got["curves"], ref["curves"]
if [c["zeta"] for c in gc] != [c["zeta"] for c in rc]:
    errors.append(f"curve zetas: twosed {[c['zeta'] for c in gc]} vs reference {[c['zeta'] for c in rc]}")
for g, r in zip(gc, rc):
    z = r["zeta"]
    if len(g["eps"]) != len(r["eps"]) or len(g["value"]) != len(r["value"]) \
            or len(g["stderr"]) != len(r["value"]):
        errors.append(f"curve zeta={z}: twosed has {len(g['eps'])} eps / {len(g['value'])} values"
                      f" / {len(g['stderr'])} stderrs, reference {len(r['eps'])}")
        continue
    for i, (ge, re_) in enumerate(zip(g["eps"], r["eps"])):
        num(f"curve zeta={z} eps[{i}]", ge, re_)
    for i, (gv, rv, gse, rse) in enumerate(zip(g["value"], r["value"], g["stderr"], r["stderr"])):
        num(f"curve zeta={z} eps={r['eps'][i]:.4e} value", gv, rv)
        se(f"curve zeta={z} eps={r['eps'][i]:.4e}", gse, rse)

for key in ("ed", "at_n"):
    g_list, r_list = got.get(key, []), ref[key]
    if len(g_list) != len(r_list):
        errors.append(f"{key}: twosed has {len(g_list)} entries, reference {len(r_list)}")
        continue
    # Match entries by (n, zeta): the order of the list is not part of the JSON contract.
    g_by = {(g["n"], g["zeta"]): g for g in g_list}
    for r in r_list:
        g = g_by.get((r["n"], r["zeta"]))
        if g is None:
            errors.append(f"{key}: twosed has no entry for n={r['n']:g} zeta={r['zeta']}")
            continue
        tag = f"{key} n={r['n']:g} zeta={r['zeta']}"
        num(f"{tag} n", g["n"], r["n"])
        num(f"{tag} zeta", g["zeta"], r["zeta"])
        num(f"{tag} eps", g["eps"], r["eps"])
        num(f"{tag} value", g["value"], r["value"])
        se(tag, g["stderr"], r["stderr"])

if errors:
    print(f"FAIL {name}: {len(errors)} mismatch(es)")
    for e in errors[:40]:
        print("   ", e)
    if len(errors) > 40:
        print(f"    ... and {len(errors) - 40} more")
    sys.exit(1)
n_values = sum(len(c["value"]) for c in rc) + len(ref["ed"]) + len(ref["at_n"])
print(f"ok   {name}: {n_values} values agree to {RTOL:g} relative (largest rel diff {worst[0]:.1e})")
PY
}

# check NAME "REF ARGS" "EXTRA TWOSED ARGS..." -- runs the reference once, then twosed with each
# --side in SIDES (a space-separated list; "auto" adds nothing), comparing each to the reference.
check() {
  local name="$1" args="$2" sides="$3"
  # shellcheck disable=SC2086
  if ! python3 "$REF" $args > "$WORK/$name.ref.json" 2> "$WORK/$name.ref.err"; then
    fail=$((fail + 1))
    echo "FAIL $name: reference failed: $(head -c 800 "$WORK/$name.ref.err")"
    return
  fi
  local side
  for side in $sides; do
    local extra=()
    [ "$side" != auto ] && extra=(--side "$side")
    # shellcheck disable=SC2086
    if ! "$TWOSED" measure -q $args --format json --bootstrap 200 "${extra[@]}" \
        > "$WORK/$name.$side.json" 2> "$WORK/$name.$side.err"; then
      fail=$((fail + 1))
      echo "FAIL $name (--side $side): twosed failed: $(head -c 800 "$WORK/$name.$side.err")"
      continue
    fi
    if compare "$name (--side $side)" "$WORK/$name.$side.json" "$WORK/$name.ref.json"; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1))
    fi
  done
}

# (a) tanh with bias, classify, M = 4, N = 7: N(k-1) = 14 < d = 39, twosed's auto side is the
#     sample-side Gram; also forced to the parameter side.
write_npy "$WORK/a_t.npy" "<f8" 4 39 11 -0.8 0.8
write_npy "$WORK/a_x.npy" "<f8" 7 5 12 -1.5 1.5
check a "--model mlp:5-4-3 --act tanh --thetas $WORK/a_t.npy --inputs-file $WORK/a_x.npy --zeta 0,0.5 --ed-n 1e4 --n 1e4" \
  "auto parameters"

# (b) relu classify, N = 30: N(k-1) = 60 > d = 51, twosed's auto side is the parameter side;
#     also forced to the sample side. Thetas in [-0.8, 0.8] leave the ReLU units mixed.
write_npy "$WORK/b_t.npy" "<f8" 4 51 21 -0.8 0.8
write_npy "$WORK/b_x.npy" "<f8" 30 4 22 -1.5 1.5
check b "--model mlp:4-6-3 --act relu --thetas $WORK/b_t.npy --inputs-file $WORK/b_x.npy --ed-n 1e3 --n 1e3,1e6" \
  "auto samples"

# (c) sigmoid, no bias, Gaussian regression with s_out = 0.3, float32 thetas and inputs, a
#     LO:HI:COUNT eps grid. N k = 20 < d = 28.
write_npy "$WORK/c_t.npy" "<f4" 5 28 31 -0.8 0.8
write_npy "$WORK/c_x.npy" "<f4" 10 5 32 -1.5 1.5
check c "--model mlp:5-4-2 --act sigmoid --no-bias --task regress --out-noise 0.3 --thetas $WORK/c_t.npy --inputs-file $WORK/c_x.npy --eps 1e-5:1e-2:7 --zeta 0,0.5 --ed-n 1e4 --n 1e4" \
  "auto parameters"

# (d) gelu (exact, erf-based) with two hidden layers, ellipsoid cover, three zetas, ED at two n
#     and d_zeta at eps_zeta(1e4). N(k-1) = 24 < d = 51.
write_npy "$WORK/d_t.npy" "<f8" 4 51 41 -0.8 0.8
write_npy "$WORK/d_x.npy" "<f8" 12 3 42 -1.5 1.5
check d "--model mlp:3-4-4-3 --act gelu --cover ellipsoid --zeta 0,0.3,0.9 --ed-n 1e3,1e5 --n 1e4 --thetas $WORK/d_t.npy --inputs-file $WORK/d_x.npy" \
  "auto parameters"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
