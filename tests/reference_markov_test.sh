#!/usr/bin/env bash
# Compares twosed's Markov chain model M_sigma (the lower 2sED, the chain 2sED and the layer
# breakdown; docs/math.md sections 1-4) with the independent pure-Python reference
# (tests/reference_2sed.py --markov: dense per-layer Fisher blocks from analytic local Jacobians
# along the noisy chain, cyclic Jacobi eigenvalues) on injected --thetas, --inputs-file and
# --noise, as an outside team would. d/M/N/k, sigma and the noise draws R must match exactly;
# every curve's eps grid, lower, chain and each layer's contribution (matched by position and by
# name, with its parameter count), the mean trace and the per-sample per-layer traces must agree
# to |a - b| <= 1e-8 * max(1, |b|) (b the reference's).
#
# Standard errors come from twosed's own bootstrap RNG, so they are not compared to 1e-8. The
# reference computes the *ideal* bootstrap standard error exactly (all C(2M-1, M) resamples with
# their multinomial probabilities; deterministic). twosed's B = 200 estimate of the same quantity
# has a relative Monte Carlo error of about 1/sqrt(2B) = 5%, so its stderr must be finite, >= 0
# and within a factor 2 of the ideal one (and about 0 where the ideal one is): a loose check that
# it resamples the M samples and recomputes t, not a precision check. twosed's output is seeded,
# so the check is not flaky. A layer's contribution_stderr is checked the same way when twosed
# reports it (it is optional).
#
# Usage: reference_markov_test.sh PATH/TO/twosed   (KEEP_WORK=1 keeps the temporary folder)
set -u
TWOSED="$1"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REF="$HERE/reference_2sed.py"
WORK=$(mktemp -d)
cd "$WORK"  # measurements record into ./twosed.db: keep it in the temporary folder
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
pass=0
fail=0

# write_inputs NAME SPEC M N R SEED NOISE_LAYOUT: writes $WORK/NAME_{t,x,n}.npy, float64, C order:
#   thetas (M, d): every Linear's weight (out x in, row-major) then bias, uniform in
#     [-1/sqrt(fan_in), 1/sqrt(fan_in)] (PyTorch's default-initialisation box);
#   inputs (N, IN): uniform in [-1.5, 1.5];
#   noise: standard normals, (M, N*R, H) for NOISE_LAYOUT 3d or (M, N, R, H) for 4d.
write_inputs() {
  python3 - "$WORK" "$@" <<'PY'
import math, random, struct, sys
work, name, spec, M, N, R, seed, layout = sys.argv[1:9]
M, N, R, seed = int(M), int(N), int(R), int(seed)
sizes = [int(s) for s in spec[4:].split("-")]
H = sum(sizes[1:-1])
rng = random.Random(seed)

def write(path, shape, vals):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }" % "".join(
        "%d, " % s for s in shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%dd" % len(vals), *vals))

thetas = []
for _ in range(M):
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        r = 1.0 / math.sqrt(n_in)
        thetas += [rng.uniform(-r, r) for _ in range(n_out * n_in + n_out)]
d = len(thetas) // M
write(f"{work}/{name}_t.npy", (M, d), thetas)
write(f"{work}/{name}_x.npy", (N, sizes[0]), [rng.uniform(-1.5, 1.5) for _ in range(N * sizes[0])])
noise = [rng.gauss(0.0, 1.0) for _ in range(M * N * R * H)]
write(f"{work}/{name}_n.npy", (M, N * R, H) if layout == "3d" else (M, N, R, H), noise)
PY
}

# compare NAME TWOSED.json REF.json: prints every mismatch; returns non-zero on any.
compare() {
  python3 - "$@" <<'PY'
import json, math, sys
name, got_path, ref_path = sys.argv[1:4]
try:
    got = json.load(open(got_path))
except ValueError as e:
    print(f"FAIL {name}: twosed's output is not JSON: {e}")
    sys.exit(1)
ref = json.load(open(ref_path))
TOL = 1e-8
errors = []
worst = [0.0]
n_values = [0]

def is_num(a):
    return isinstance(a, (int, float)) and not isinstance(a, bool)

def num(what, a, b):
    n_values[0] += 1
    if not is_num(a) or not math.isfinite(a):
        errors.append(f"{what}: twosed {a!r} is not a finite number (reference {b!r})")
        return
    diff = abs(a - b) / max(1.0, abs(b))
    worst[0] = max(worst[0], diff)
    if diff > TOL:
        errors.append(f"{what}: twosed {a!r} vs reference {b!r} "
                      f"(|a-b|/max(1,|b|) = {diff:.3e})")

def se(what, a, b, value):
    if not is_num(a) or not math.isfinite(a) or a < 0:
        errors.append(f"{what} stderr: twosed {a!r} is not finite and >= 0")
    elif b > 1e-12:
        if not 0.5 <= a / b <= 2.0:
            errors.append(f"{what} stderr: twosed {a!r} vs ideal bootstrap {b!r} "
                          f"(ratio {a / b:.3f} outside [0.5, 2])")
    elif a > 1e-8 * max(1.0, abs(value)):
        errors.append(f"{what} stderr: twosed {a!r} but the ideal bootstrap's is {b!r} (~0)")

def seq(what, g, n):
    """g as a list of length n, or an error and None."""
    if not isinstance(g, list) or len(g) != n:
        have = f"{len(g)} entries" if isinstance(g, list) else f"no list ({g!r})"
        errors.append(f"{what}: twosed has {have}, reference {n} entries")
        return None
    return g

for key in ("d", "M", "N", "k"):
    if got.get(key) != ref[key]:
        errors.append(f"{key}: twosed {got.get(key)!r} vs reference {ref[key]!r}")
gm, rm = got.get("markov"), ref["markov"]
if not isinstance(gm, dict):
    errors.append(f"markov: twosed {gm!r}, reference {rm!r}")
else:
    if gm.get("noise_draws") != rm["noise_draws"]:
        errors.append(f"markov.noise_draws: twosed {gm.get('noise_draws')!r} vs reference "
                      f"{rm['noise_draws']!r}")
    num("markov.sigma", gm.get("sigma"), rm["sigma"])
num("mean_trace", got.get("mean_trace"), ref["mean_trace"])
gst = seq("sample_traces", got.get("sample_traces"), len(ref["sample_traces"]))
if gst is not None:
    for j, (g, r) in enumerate(zip(gst, ref["sample_traces"])):
        g = seq(f"sample_traces[{j}]", g, len(r))
        if g is not None:
            for l, (a, b) in enumerate(zip(g, r)):
                num(f"sample_traces[{j}][{l}]", a, b)

gc = seq("curves", got.get("curves"), len(ref["curves"])) or []
for g, r in zip(gc, ref["curves"]):
    z = r["zeta"]
    num(f"curve[zeta={z}] zeta", g.get("zeta"), z)
    n = len(r["eps"])
    tag = f"curve zeta={z}"
    ge = seq(f"{tag} eps", g.get("eps"), n)
    if ge is None:
        continue
    for i, (a, b) in enumerate(zip(ge, r["eps"])):
        num(f"{tag} eps[{i}]", a, b)
    for key in ("lower", "chain"):
        gv = seq(f"{tag} {key}", g.get(key), n)
        gs = seq(f"{tag} {key}_stderr", g.get(key + "_stderr"), n)
        if gv is None or gs is None:
            continue
        for i in range(n):
            at = f"{tag} eps={r['eps'][i]:.4e} {key}"
            num(at, gv[i], r[key][i])
            se(at, gs[i], r[key + "_stderr"][i], r[key][i])
    gl = seq(f"{tag} layers", g.get("layers"), len(r["layers"]))
    if gl is None:
        continue
    g_names = [lay.get("name") for lay in gl]
    r_names = [lay["name"] for lay in r["layers"]]
    if g_names != r_names:
        errors.append(f"{tag} layer names: twosed {g_names} vs reference {r_names}")
    g_by_name = {lay.get("name"): lay for lay in gl}
    for pos, rl in enumerate(r["layers"]):
        # By position (same names in the same order, checked above) and by name.
        for how, glay in (("position", gl[pos]), ("name", g_by_name.get(rl["name"]))):
            lt = f"{tag} layer {rl['name']} (by {how})"
            if glay is None:
                errors.append(f"{lt}: twosed has no layer of that name")
                continue
            if glay.get("params") != rl["params"]:
                errors.append(f"{lt} params: twosed {glay.get('params')!r} vs reference "
                              f"{rl['params']!r}")
            gv = seq(f"{lt} contribution", glay.get("contribution"), n)
            if gv is not None:
                for i in range(n):
                    num(f"{lt} eps={r['eps'][i]:.4e} contribution", gv[i], rl["contribution"][i])
            if how == "position" and "contribution_stderr" in glay:
                gs = seq(f"{lt} contribution_stderr", glay["contribution_stderr"], n)
                if gs is not None:
                    for i in range(n):
                        se(f"{lt} eps={r['eps'][i]:.4e} contribution", gs[i],
                           rl["contribution_stderr"][i], rl["contribution"][i])

if errors:
    print(f"FAIL {name}: {len(errors)} mismatch(es)")
    for e in errors[:40]:
        print("   ", e)
    if len(errors) > 40:
        print(f"    ... and {len(errors) - 40} more")
    sys.exit(1)
print(f"ok   {name}: {n_values[0]} values agree to {TOL:g} (largest |a-b|/max(1,|b|) "
      f"{worst[0]:.1e}), stderrs within [0.5, 2] x ideal")
PY
}

# check NAME SPEC M N R NOISE_LAYOUT SEED "OTHER ARGS" -- writes the inputs, runs the reference
# and twosed on them with the same arguments, compares.
check() {
  local name="$1" spec="$2" M="$3" N="$4" R="$5" layout="$6" seed="$7" other="$8"
  if ! write_inputs "$name" "$spec" "$M" "$N" "$R" "$seed" "$layout"; then
    fail=$((fail + 1))
    echo "FAIL $name: could not write the inputs"
    return
  fi
  local args="--model $spec $other --markov --noise-draws $R --noise $WORK/${name}_n.npy
    --thetas $WORK/${name}_t.npy --inputs-file $WORK/${name}_x.npy --zeta 0,0.5 --eps 1e-6:1e-1:7"
  # shellcheck disable=SC2086
  if ! python3 "$REF" $args > "$WORK/$name.ref.json" 2> "$WORK/$name.ref.err"; then
    fail=$((fail + 1))
    echo "FAIL $name: reference failed: $(head -c 800 "$WORK/$name.ref.err")"
    return
  fi
  # shellcheck disable=SC2086
  if ! "$TWOSED" measure -q $args --bootstrap 200 --format json \
      > "$WORK/$name.json" 2> "$WORK/$name.err"; then
    fail=$((fail + 1))
    echo "FAIL $name: twosed failed: $(head -c 800 "$WORK/$name.err")"
    return
  fi
  if compare "$name" "$WORK/$name.json" "$WORK/$name.ref.json"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
  fi
}

# (a) tanh classify, one hidden layer, M = 4, N = 5, R = 1, noise as (M, N, H).
check a "mlp:4-5-3" 4 5 1 3d 51 "--act tanh --sigma 0.3"

# (b) relu classify, two hidden layers, M = 3, N = 6, R = 2 noise draws per input, noise as
#     (M, N, R, H). The initialisation box leaves the ReLU units mixed.
check b "mlp:3-4-4-2" 3 6 2 4d 52 "--act relu --sigma 0.2"

# (c) sigmoid, Gaussian regression with s_out = 0.5, M = 4, N = 6, R = 1, noise as (M, N*R, H).
check c "mlp:4-3-2" 4 6 1 3d 53 "--act sigmoid --task regress --out-noise 0.5 --sigma 0.5"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
