#!/usr/bin/env python3
"""Self-checks of the --markov mode of tests/reference_2sed.py (pure standard library).

  1. lower <= chain at every (zeta, eps), and the layer contributions sum to lower - zeta*d
     (1e-12 relative), on the full sample and on bootstrap resamples; through the CLI's JSON.
  2. Every hidden block's eigenvalues (and the output block's) equal those of the block formed
     from a central finite-difference Jacobian (step 1e-6, tanh) of g_l w.r.t. theta's slice of
     layer l, at the same noisy inputs, to 1e-10 x the block's largest eigenvalue.
  3. A single-Linear "mlp:IN-K" (L = 1, H = 0, noise omitted or of shape (M, N*R, 0)): chain
     equals the standard-model 2sED of the same thetas and inputs to 1e-12 relative (values, and
     the bootstrap stderrs, which use the same resamples).
  4. Per-unit structure: a hidden block, with each unit's weight row and bias grouped, has
     exactly-zero entries between different units; the spectra of the unit blocks together are
     the block's spectrum (1e-10 x the largest eigenvalue).
  Also: shape errors of --noise/--thetas/--inputs-file exit 2 with one line on stderr; the Monte
  Carlo bootstrap agrees with the exact ideal one within 15%.

Usage: reference_markov_selftest.py   (exit 0 if every check passes, 1 otherwise)
"""
import decimal
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import reference_2sed as ref  # noqa: E402

REF = os.path.join(HERE, "reference_2sed.py")
results = []


def report(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


def write_npy(path, shape, vals, dtype="<f8"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join("%d, " % s for s in shape))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%d%s" % (len(vals), "d" if dtype[1:] == "f8" else "f"), *vals))


def init_thetas(net, M, rng, scale=1.0):
    """M parameter vectors, each layer's weight and bias uniform in +-scale/sqrt(fan_in)."""
    out = []
    for _ in range(M):
        th = [0.0] * net.d
        for n_in, n_out, w_off, b_off in net.layout:
            r = scale / math.sqrt(n_in)
            for q in range(n_out * n_in):
                th[w_off + q] = rng.uniform(-r, r)
            if b_off is not None:
                for q in range(n_out):
                    th[b_off + q] = rng.uniform(-r, r)
        out.append(th)
    return out


class Config:
    def __init__(self, name, spec, act, task="classify", out_noise=1.0, bias=True, M=3, N=5, R=1,
                 sigma=0.3, seed=1, scale=1.5, cover="box", noise4d=False):
        self.name, self.spec, self.act, self.task, self.out_noise = name, spec, act, task, out_noise
        self.bias, self.M, self.N, self.R, self.sigma, self.cover = bias, M, N, R, sigma, cover
        self.net = ref.MLP(spec, act, bias)
        rng = random.Random(seed)
        self.thetas = init_thetas(self.net, M, rng, scale)
        self.X = [[rng.uniform(-1.5, 1.5) for _ in range(self.net.sizes[0])] for _ in range(N)]
        _, self.H = ref.hidden_offsets(self.net)
        self.noise_flat = [rng.gauss(0.0, 1.0) for _ in range(M * N * R * self.H)]
        self.noise = [[self.noise_flat[(j * N * R + row) * self.H:(j * N * R + row + 1) * self.H]
                       for row in range(N * R)] for j in range(M)]
        self.noise4d = noise4d

    def files(self, work):
        t, x, n = (os.path.join(work, f"{self.name}_{s}.npy") for s in ("t", "x", "n"))
        write_npy(t, (self.M, self.net.d), [v for th in self.thetas for v in th])
        write_npy(x, (self.N, self.net.sizes[0]), [v for r in self.X for v in r])
        M, N, R, H = self.M, self.N, self.R, self.H
        shape = (M, N, R, H) if self.noise4d else (M, N * R, H)
        write_npy(n, shape, self.noise_flat)
        return t, x, n

    def cli_args(self, t, x, n):
        a = ["--model", self.spec, "--act", self.act, "--task", self.task,
             "--out-noise", repr(self.out_noise), "--thetas", t, "--inputs-file", x,
             "--cover", self.cover]
        if not self.bias:
            a.append("--no-bias")
        if n is not None:
            a += ["--markov", "--sigma", repr(self.sigma), "--noise-draws", str(self.R),
                  "--noise", n]
        return a

    def blocks(self, j):
        noise = self.noise[j] if self.H else None
        return ref.markov_blocks(self.net, self.thetas[j], self.X, noise,
                                 self.R, self.sigma, self.task, self.out_noise)


def run_ref(args):
    p = subprocess.run([sys.executable, REF] + args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


CONFIGS = [
    Config("tanh_cls", "mlp:4-5-3", "tanh", M=3, N=5, seed=1),
    Config("relu_cls_R2", "mlp:3-4-4-2", "relu", M=4, N=6, R=2, seed=2, noise4d=True),
    Config("sig_reg", "mlp:4-3-2", "sigmoid", task="regress", out_noise=0.5, M=4, N=5, seed=3),
    Config("gelu_nobias_ell", "mlp:3-4-3-3", "gelu", bias=False, M=3, N=4, R=3, seed=4,
           cover="ellipsoid", sigma=0.7),
    Config("tanh_deep_R2", "mlp:3-4-3-4-2", "tanh", M=3, N=4, R=2, seed=5, sigma=0.1),
]


# ----------------------------------------------------------------------------- check 1
def check1(work):
    for c in CONFIGS:
        rc, out, err = run_ref(c.cli_args(*c.files(work)) + ["--zeta", "0,0.3,0.9",
                                                            "--eps", "1e-6:1e-1:9"])
        if rc != 0:
            report(f"1 {c.name}", False, f"reference exit {rc}: {err.strip()[:300]}")
            continue
        res = json.loads(out)
        d, bad, worst = res["d"], [], 0.0
        for cur in res["curves"]:
            z = cur["zeta"]
            for i, e in enumerate(cur["eps"]):
                lo, ch = cur["lower"][i], cur["chain"][i]
                s = sum(lay["contribution"][i] for lay in cur["layers"])
                ref_s = lo - z * d
                rel = abs(s - ref_s) / max(abs(ref_s), 1e-300)
                worst = max(worst, rel)
                if not lo <= ch:
                    bad.append(f"zeta={z} eps={e:.3g}: lower {lo!r} > chain {ch!r}")
                if rel > 1e-12:
                    bad.append(f"zeta={z} eps={e:.3g}: sum of contributions {s!r} vs "
                               f"lower - zeta*d {ref_s!r}")
                for key in ("lower_stderr", "chain_stderr"):
                    v = cur[key][i]
                    if not (math.isfinite(v) and v >= 0.0):
                        bad.append(f"{key} {v!r}")
        names = [lay["name"] for lay in res["curves"][0]["layers"]]
        params = [lay["params"] for lay in res["curves"][0]["layers"]]
        L = len(c.net.layout)
        if names != [str(2 * l) for l in range(L)] or sum(params) != d:
            bad.append(f"layer names {names} / params {params} (d = {d})")
        if len(res["sample_traces"]) != c.M or any(len(t) != L for t in res["sample_traces"]):
            bad.append("sample_traces shape")
        mt = sum(sum(t) for t in res["sample_traces"]) / c.M
        if abs(mt - res["mean_trace"]) > 1e-13 * abs(mt):
            bad.append("mean_trace is not the mean of the summed sample traces")
        # On bootstrap resamples too (the functions behind the CLI).
        spectra, traces = [], []
        for j in range(c.M):
            Fs = c.blocks(j)
            traces.append([sum(F[i][i] for i in range(len(F))) for F in Fs])
            spectra.append([ref.kept_eigenvalues(F) for F in Fs])
        est = ref.MarkovEstimator(d, spectra, traces)
        rng = random.Random(7)
        for _ in range(20):
            cnt = [0] * c.M
            for _ in range(c.M):
                cnt[rng.randrange(c.M)] += 1
            idx = [j for j in range(c.M) if cnt[j]]
            w = [cnt[j] / c.M for j in idx]
            for z in (0.0, 0.5):
                for e in (1e-6, 1e-3, 0.1):
                    v = est.values(z, e, c.cover, idx, w)
                    if not v[0] <= v[1] or abs(sum(v[2:]) - (v[0] - z * d)) > \
                            1e-12 * abs(v[0] - z * d):
                        bad.append(f"resample {cnt} zeta={z} eps={e}: {v}")
        report(f"1 {c.name} ({c.spec} {c.act} {c.task} R={c.R} {c.cover})", not bad,
               "; ".join(bad[:5]) if bad else
               f"lower <= chain at {sum(len(cur['eps']) for cur in res['curves'])} points, "
               f"breakdown sums (worst rel {worst:.1e}), 20 resamples")


# ----------------------------------------------------------------------------- check 2
def dec_tanh(z):
    e = (2 * z).exp()
    return (e - 1) / (e + 1)


def fd_block(c, j, l, h="1e-6"):
    """Block l of sample j from central finite differences (step h) of g_l w.r.t. theta's slice of
    layer l, at the same noisy inputs. g is evaluated in 40-digit decimal arithmetic from the
    exact binary values of theta and the inputs, so the quotient carries only the O(h^2)
    truncation error (in float64, tanh's round-off / 2h alone is ~1e-10)."""
    net, theta = c.net, c.thetas[j]
    if net.act != "tanh":
        raise ValueError("fd_block: tanh only")
    n_in, n_out, w_off, b_off = net.layout[l]
    p = n_out * n_in + (n_out if net.bias else 0)
    lo = w_off  # a layer's weight and bias are contiguous in theta, weight first
    L = len(net.layout)
    layers = net.unpack(theta)
    rows = ref.markov_chain_rows(net, layers, c.X, c.noise[j] if c.H else None, c.R, c.sigma)
    F = [[0.0] * p for _ in range(p)]
    D = decimal.Decimal
    hd = D(h)
    th_dec = [D(v) for v in theta]

    def g(th, a):
        # Layer l of the decimal theta: weight (out x in, row-major) then bias.
        z = []
        for u in range(n_out):
            acc = sum((th[w_off + u * n_in + q] * a[q] for q in range(n_in)), D(0))
            if b_off is not None:
                acc += th[b_off + u]
            z.append(acc)
        return [dec_tanh(v) for v in z] if l < L - 1 else z

    with decimal.localcontext() as ctx:
        ctx.prec = 40
        for inputs in rows:
            a = [D(v) for v in inputs[l]]
            C = [[0.0] * p for _ in range(n_out)]
            for q in range(p):
                tp, tm = list(th_dec), list(th_dec)
                tp[lo + q] += hd
                tm[lo + q] -= hd
                gp, gm = g(tp, a), g(tm, a)
                for u in range(n_out):
                    C[u][q] = float((gp[u] - gm[u]) / (2 * hd))
            if l < L - 1:
                LC = C
            elif c.task == "classify":
                W, b = layers[l]
                pr = ref.softmax([sum(w * v for w, v in zip(row, inputs[l])) + bb
                                  for row, bb in zip(W, b)])
                pC = [sum(pr[u] * C[u][q] for u in range(n_out)) for q in range(p)]
                LC = [[pr[u] * (C[u][q] - pC[q]) for q in range(p)] for u in range(n_out)]
            else:
                LC = [[v / c.out_noise ** 2 for v in C[u]] for u in range(n_out)]
            ref.accumulate_ct_lc(F, C, LC)
    div = len(rows) * (c.sigma ** 2 if l < L - 1 else 1.0)
    return ref.symmetrise([[v / div for v in r] for r in F])


def check2():
    for c in [Config("fd_tanh", "mlp:4-5-3", "tanh", M=2, N=5, seed=11),
              Config("fd_tanh_deep_R2", "mlp:3-4-3-2", "tanh", M=2, N=4, R=2, seed=12,
                     task="regress", out_noise=0.7),
              Config("fd_tanh_nobias", "mlp:3-4-4-3", "tanh", M=2, N=4, R=2, seed=13,
                     bias=False)]:
        worst_hidden, worst_out, bad = 0.0, 0.0, []
        L = len(c.net.layout)
        for j in range(c.M):
            Fs = c.blocks(j)
            for l in range(L):
                ea = sorted(ref.jacobi_eigenvalues(Fs[l]))
                ef = sorted(ref.jacobi_eigenvalues(fd_block(c, j, l)))
                top = max(abs(v) for v in ea)
                rel = max(abs(x - y) for x, y in zip(ea, ef)) / top
                if l < L - 1:
                    worst_hidden = max(worst_hidden, rel)
                    if rel > 1e-10:
                        bad.append(f"sample {j} layer {l}: rel {rel:.2e}")
                else:
                    worst_out = max(worst_out, rel)
                    if rel > 1e-10:
                        bad.append(f"sample {j} output layer: rel {rel:.2e}")
        report(f"2 {c.name} ({c.spec} {c.task} R={c.R} bias={c.bias})", not bad,
               "; ".join(bad) if bad else
               f"analytic vs FD eigenvalues: worst {worst_hidden:.1e} (hidden), "
               f"{worst_out:.1e} (output) x lambda_max")


# ----------------------------------------------------------------------------- check 3
def check3(work):
    cases = [("single_cls", "mlp:5-3", "tanh", "classify", True, 1, "omit"),
             ("single_reg_nobias", "mlp:4-2", "relu", "regress", False, 1, "file3"),
             ("single_cls_R2", "mlp:3-4", "sigmoid", "classify", True, 2, "file4"),
             ("single_cls_R2_3d", "mlp:3-3", "gelu", "classify", True, 2, "file3")]
    for name, spec, act, task, bias, R, how in cases:
        c = Config(name, spec, act, task=task, out_noise=0.4, bias=bias, M=4, N=6, R=R, seed=21)
        t, x, n = c.files(work)
        if how == "omit":
            n_args = ["--markov", "--sigma", "0.5", "--noise-draws", str(R)]
        else:
            shape = (c.M, c.N * R, 0) if how == "file3" else (c.M, c.N, R, 0)
            write_npy(n, shape, [])
            n_args = ["--markov", "--sigma", "0.5", "--noise-draws", str(R), "--noise", n]
        common = c.cli_args(t, x, None) + ["--zeta", "0,0.5,0.95", "--eps", "1e-6:1e-1:11"]
        rc1, out1, err1 = run_ref(common + n_args)
        rc2, out2, err2 = run_ref(common)
        if rc1 or rc2:
            report(f"3 {name}", False,
                   f"exit {rc1}/{rc2}: {err1.strip()[:200]} {err2.strip()[:200]}")
            continue
        mk, st = json.loads(out1), json.loads(out2)
        bad, worst = [], 0.0

        def cmp(what, a, b, tol=1e-12):
            nonlocal worst
            rel = abs(a - b) / max(abs(b), 1e-300)
            worst = max(worst, rel) if what != "stderr" else worst
            if rel > tol:
                bad.append(f"{what}: markov {a!r} vs standard {b!r}")

        cmp("mean_trace", mk["mean_trace"], st["mean_trace"])
        for j, (a, b) in enumerate(zip(mk["sample_traces"], st["samples"])):
            cmp(f"trace[{j}]", a[0], b["trace"])
        for cm, cs in zip(mk["curves"], st["curves"]):
            for i in range(len(cs["eps"])):
                cmp(f"zeta={cs['zeta']} eps[{i}] chain", cm["chain"][i], cs["value"][i])
                cmp("stderr", cm["chain_stderr"][i], cs["stderr"][i], 1e-9)
        report(f"3 {name} ({spec} {task} R={R}, noise {how})", not bad,
               "; ".join(bad[:5]) if bad else
               f"chain == standard 2sED at {sum(len(cs['eps']) for cs in st['curves'])} points "
               f"(worst rel {worst:.1e}), stderrs too")


# ----------------------------------------------------------------------------- check 4
def check4():
    for c in [Config("unit_tanh", "mlp:4-5-3", "tanh", M=2, N=5, seed=31),
              Config("unit_relu_R2", "mlp:3-4-4-2", "relu", M=2, N=6, R=2, seed=32),
              Config("unit_sig_nobias", "mlp:3-3-4-2", "sigmoid", bias=False, M=2, N=4, seed=33)]:
        bad, nzero, worst = [], 0, 0.0
        L = len(c.net.layout)
        for j in range(c.M):
            Fs = c.blocks(j)
            for l in range(L - 1):
                n_in, n_out, _, _ = c.net.layout[l]
                unit = [u for u in range(n_out) for _ in range(n_in)]
                if c.bias:
                    unit += list(range(n_out))
                perm = sorted(range(len(unit)), key=lambda q: (unit[q], q))
                F = Fs[l]
                P = [[F[a][b] for b in perm] for a in perm]
                pu = [unit[q] for q in perm]
                for a in range(len(P)):
                    for b in range(len(P)):
                        if pu[a] != pu[b]:
                            nzero += 1
                            if P[a][b] != 0.0:
                                bad.append(f"sample {j} layer {l} ({a},{b}) = {P[a][b]!r}")
                ev_units = []
                for u in range(n_out):
                    qs = [q for q in range(len(unit)) if unit[q] == u]
                    ev_units += ref.jacobi_eigenvalues([[F[a][b] for b in qs] for a in qs])
                ev = sorted(ref.jacobi_eigenvalues(F))
                top = max(ev) if max(ev) > 0 else 1.0
                rel = max(abs(x - y) for x, y in zip(ev, sorted(ev_units))) / top
                worst = max(worst, rel)
                if rel > 1e-10:
                    bad.append(f"sample {j} layer {l}: unit spectra differ by {rel:.2e}")
        report(f"4 {c.name} ({c.spec} {c.act})", not bad,
               "; ".join(bad[:5]) if bad else
               f"{nzero} cross-unit entries exactly 0; unit-block spectra match "
               f"(worst {worst:.1e})")


# ----------------------------------------------------------------------------- extras
def check_errors(work):
    c = CONFIGS[0]
    t, x, n = c.files(work)
    base = c.cli_args(t, x, n)
    bad_t = os.path.join(work, "bad_t.npy")
    write_npy(bad_t, (c.M + 1, c.net.d), [0.1] * ((c.M + 1) * c.net.d))
    bad_x = os.path.join(work, "bad_x.npy")
    write_npy(bad_x, (c.N + 1, c.net.sizes[0]), [0.2] * ((c.N + 1) * c.net.sizes[0]))
    bad_h = os.path.join(work, "bad_h.npy")
    write_npy(bad_h, (c.M, c.N, c.H + 1), [0.0] * (c.M * c.N * (c.H + 1)))
    cases = [("M mismatch", [a if a != t else bad_t for a in base], "--noise"),
             ("N mismatch", [a if a != x else bad_x for a in base], "--noise"),
             ("H mismatch", [a if a != n else bad_h for a in base], "--noise"),
             ("R mismatch", base + ["--noise-draws", "2"], "--noise"),
             ("noise missing", [a for a in base if a not in ("--noise", n)], "needs --noise"),
             ("thetas width", [a if a != t else bad_h for a in base], "--thetas")]
    for what, args, expect in cases:
        rc, out, err = run_ref(args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        report(f"error exit: {what}",
               rc == 2 and len(lines) == 1 and not out and expect in lines[0],
               f"exit {rc}, {lines[0] if lines else 'no message'}")


def check_mc_bootstrap(work):
    c = Config("mc", "mlp:3-4-2", "tanh", M=6, N=4, seed=41)
    args = c.cli_args(*c.files(work)) + ["--zeta", "0.5", "--eps", "1e-4,1e-2"]
    _, out1, _ = run_ref(args)
    _, out2, _ = run_ref(args + ["--exact-bootstrap-limit", "0", "--bootstrap", "4000"])
    ex, mc = json.loads(out1)["curves"][0], json.loads(out2)["curves"][0]
    ratios = [a / b for k in ("lower_stderr", "chain_stderr") for a, b in zip(mc[k], ex[k])]
    ratios += [a / b for le, lm in zip(ex["layers"], mc["layers"])
               for a, b in zip(lm["contribution_stderr"], le["contribution_stderr"])]
    same = mc["lower"] == ex["lower"] and mc["chain"] == ex["chain"]
    report("bootstrap: Monte Carlo (B=4000) vs exact ideal, M=6", same and
           all(0.85 <= r <= 1.15 for r in ratios),
           "stderr ratios " + ", ".join(f"{r:.3f}" for r in ratios))


def main():
    with tempfile.TemporaryDirectory() as work:
        check1(work)
        check2()
        check3(work)
        check4()
        check_errors(work)
        check_mc_bootstrap(work)
    n_fail = results.count(False)
    print(f"{len(results) - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
