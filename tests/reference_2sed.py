#!/usr/bin/env python3
"""Independent reference implementation of the standard-model 2sED (docs/math.md sections 2-5).

Pure Python 3, standard library only (no numpy). It deliberately uses a different algorithm
from twosed: for every parameter sample it forms the full Jacobian J_i (k x d) of the network
outputs by analytic backpropagation, the dense d x d Fisher F = (1/N) sum_i J_i^T Lambda_i J_i
with the exact Lambda (diag(p) - p p^T for softmax, I/s_out^2 for Gaussian), and the eigenvalues
of F by a cyclic Jacobi eigenvalue algorithm. Meant for small d (say d <= 60).

Supports "mlp:IN-H1-...-K" with relu | tanh | sigmoid | gelu (exact, erf-based), with or
without bias, classify or regress. theta is ordered as PyTorch's named_parameters(): layer by
layer, weight (out x in, row-major) then bias.

Usage:
  reference_2sed.py --model mlp:5-4-3 --act tanh --thetas T.npy --inputs-file X.npy
                    [--no-bias] [--task classify|regress] [--out-noise S]
                    [--eps LO:HI:COUNT | e1,e2,...] [--zeta z1,z2,...] [--cover box|ellipsoid]
                    [--ed-n n1,...] [--n n1,...] [--bootstrap B] [--seed S]
Prints JSON with the same keys as `twosed measure --format json` for d, M, N, k, mean_trace,
curves, ed and at_n.

Standard errors: when the number of distinct bootstrap resamples (multisets of size M drawn
from M samples, C(2M-1, M)) is at most --exact-bootstrap-limit, the *ideal* bootstrap standard
error is computed exactly by enumerating every multiset with its multinomial probability (no
randomness at all). Otherwise a Monte Carlo bootstrap with B resamples from Python's `random`
seeded with --seed. Either way t is recomputed on every resample (docs/math.md section 5).

Markov chain model M_sigma and the lower 2sED (docs/math.md sections 1-4, `--markov`):
  reference_2sed.py --markov --sigma S --noise NOISE.npy [--noise-draws R] --model mlp:... ...
Layer l = Linear_l then the activation (hidden layers l < L, output sizes m_l, H = sum m_l); the
last Linear is the output layer. NOISE.npy is float64 (M, N*R, H) or (M, N, R, H): row i*R + r
is draw r for input i, layer l's noise in columns [off_l, off_l + m_l). It may be omitted when
H = 0 (a single-Linear "mlp:IN-K"). For every sample j and row (i, r) the chain is
x_0 = x_i, x_l = act(W_l x_{l-1} + b_l) + sigma * xi_l (l < L). Every layer's Fisher block is
formed densely from the local Jacobian C_l = d g_l / d theta_l at that row's noisy x_{l-1}:
F_l = (1/(N R sigma^2)) sum_rows C_l^T C_l (hidden), F_L = (1/(N R)) sum_rows C_L^T Lambda C_L
(output, exact Lambda as above), its eigenvalues by Jacobi, cut at 1e-12 x the block's largest.
With t = (1/M) sum_j sum_l tr F_l(theta_j), lam_hat = (d/t) lam and S_j the sum of the log
terms of sample j over all layers:
  lower = zeta*d + mean_j S_j / |log eps|,  chain = zeta*d + (LSE_j S_j - log M) / |log eps|,
  layer contribution_l = mean_j (layer l's part of S_j) / |log eps|   (they sum to lower - zeta*d).
Prints JSON: d, M, N, k, mean_trace, cover, markov {sigma, noise_draws}, curves [{zeta, eps,
lower, lower_stderr, chain, chain_stderr, layers [{name, params, contribution,
contribution_stderr}]}], sample_traces (per sample, per layer). A layer's name is the index of
its Linear in the equivalent torch.nn.Sequential (Linear, act, ..., Linear): "0", "2", ...
Shape errors of --noise/--thetas/--inputs-file in this mode: one line on stderr, exit 2.
Self-checks of this mode: tests/reference_markov_selftest.py.
"""
import argparse
import ast
import itertools
import json
import math
import random
import struct
import sys

ZERO_CUTOFF = 1e-12


# ----------------------------------------------------------------------------- .npy reader
def read_npy(path):
    """Returns (shape, flat list of floats) of a float64/float32 .npy file in C order."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:6] != b"\x93NUMPY":
        raise ValueError(f"{path}: not a .npy file")
    major = raw[6]
    if major == 1:
        hlen = struct.unpack("<H", raw[8:10])[0]
        start = 10
    elif major in (2, 3):
        hlen = struct.unpack("<I", raw[8:12])[0]
        start = 12
    else:
        raise ValueError(f"{path}: unsupported .npy version {major}")
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    descr, fortran, shape = header["descr"], header["fortran_order"], tuple(header["shape"])
    codes = {"<f8": "<d", ">f8": ">d", "=f8": "=d", "|f8": "<d",
             "<f4": "<f", ">f4": ">f", "=f4": "=f", "|f4": "<f"}
    if descr not in codes:
        raise ValueError(f"{path}: unsupported dtype {descr}")
    count = 1
    for s in shape:
        count *= s
    fmt = codes[descr]
    size = struct.calcsize(fmt)
    body = raw[start + hlen:start + hlen + count * size]
    if len(body) != count * size:
        raise ValueError(f"{path}: truncated data")
    vals = [float(v) for v in struct.unpack(fmt[0] + fmt[1] * count, body)]
    if fortran and len(shape) >= 2 and count > 0:
        # Fortran order: the first index varies fastest. Re-order into C order.
        strides, st = [], 1
        for s in shape:
            strides.append(st)
            st *= s
        vals = [vals[sum(i * t for i, t in zip(idx, strides))]
                for idx in itertools.product(*[range(s) for s in shape])]
    return shape, vals


def as_matrix(shape, vals, name):
    if len(shape) == 1:
        return [list(vals)]
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {shape}")
    r, c = shape
    return [vals[i * c:(i + 1) * c] for i in range(r)]


# ----------------------------------------------------------------------------- network
SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def act_and_deriv(name, z):
    """Elementwise activation and its derivative at z (lists)."""
    if name == "relu":
        return [x if x > 0.0 else 0.0 for x in z], [1.0 if x > 0.0 else 0.0 for x in z]
    if name == "tanh":
        h = [math.tanh(x) for x in z]
        return h, [1.0 - v * v for v in h]
    if name == "sigmoid":
        h = []
        for x in z:
            if x >= 0.0:
                h.append(1.0 / (1.0 + math.exp(-x)))
            else:
                e = math.exp(x)
                h.append(e / (1.0 + e))
        return h, [v * (1.0 - v) for v in h]
    if name == "gelu":
        cdf = [0.5 * (1.0 + math.erf(x / SQRT2)) for x in z]
        h = [x * c for x, c in zip(z, cdf)]
        dh = [c + x * INV_SQRT_2PI * math.exp(-0.5 * x * x) for x, c in zip(z, cdf)]
        return h, dh
    raise ValueError(f"unknown activation {name}")


class MLP:
    def __init__(self, spec, act, bias):
        if not spec.startswith("mlp:"):
            raise ValueError("only mlp:IN-H1-...-K specs are supported")
        self.sizes = [int(s) for s in spec[4:].split("-")]
        if len(self.sizes) < 2:
            raise ValueError("mlp spec needs at least IN-K")
        self.act = act
        self.bias = bias
        # Offsets of every layer's weight and bias in theta (named_parameters order).
        self.layout = []
        off = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            w_off = off
            off += n_out * n_in
            b_off = off if bias else None
            if bias:
                off += n_out
            self.layout.append((n_in, n_out, w_off, b_off))
        self.d = off
        self.k = self.sizes[-1]

    def unpack(self, theta):
        layers = []
        for n_in, n_out, w_off, b_off in self.layout:
            W = [theta[w_off + r * n_in:w_off + (r + 1) * n_in] for r in range(n_out)]
            b = theta[b_off:b_off + n_out] if b_off is not None else [0.0] * n_out
            layers.append((W, b))
        return layers

    def jacobian(self, layers, x):
        """Returns (f(x), J) with J the k x d Jacobian of the outputs w.r.t. theta."""
        # Forward pass, keeping every layer's input and the activation derivative.
        inputs, derivs = [], []
        a = list(x)
        L = len(layers)
        for l, (W, b) in enumerate(layers):
            inputs.append(a)
            z = [sum(w * v for w, v in zip(row, a)) + bb for row, bb in zip(W, b)]
            if l < L - 1:
                a, da = act_and_deriv(self.act, z)
                derivs.append(da)
            else:
                a = z
        out = a
        # Backward pass, one output at a time: delta = d f_c / d z_l.
        J = []
        for c in range(self.k):
            row = [0.0] * self.d
            delta = [0.0] * self.k
            delta[c] = 1.0
            for l in range(L - 1, -1, -1):
                n_in, n_out, w_off, b_off = self.layout[l]
                a_in = inputs[l]
                for r in range(n_out):
                    dr = delta[r]
                    if dr != 0.0:
                        base = w_off + r * n_in
                        for q in range(n_in):
                            row[base + q] = dr * a_in[q]
                    if b_off is not None:
                        row[b_off + r] = dr
                if l > 0:
                    W = layers[l][0]
                    da = derivs[l - 1]
                    delta = [sum(W[r][q] * delta[r] for r in range(n_out)) * da[q]
                             for q in range(n_in)]
            J.append(row)
        return out, J


def softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def dense_fisher(net, theta, X, task, out_noise):
    """F = (1/N) sum_i J_i^T Lambda_i J_i, d x d, as a list of rows."""
    d, k = net.d, net.k
    layers = net.unpack(theta)
    F = [[0.0] * d for _ in range(d)]
    for x in X:
        f, J = net.jacobian(layers, x)
        # LJ = Lambda J (k x d)
        if task == "classify":
            p = softmax(f)
            pJ = [sum(p[c] * J[c][q] for c in range(k)) for q in range(d)]
            LJ = [[p[c] * (J[c][q] - pJ[q]) for q in range(d)] for c in range(k)]
        else:
            s2 = out_noise * out_noise
            LJ = [[v / s2 for v in J[c]] for c in range(k)]
        for c in range(k):
            Jc, LJc = J[c], LJ[c]
            for pidx in range(d):
                jp = Jc[pidx]
                if jp != 0.0:
                    rowF = F[pidx]
                    F[pidx] = [fv + jp * lv for fv, lv in zip(rowF, LJc)]
    n = float(len(X))
    F = [[v / n for v in row] for row in F]
    # Symmetrise exactly (J^T Lambda J is symmetric; round-off is not).
    for i in range(d):
        for j in range(i + 1, d):
            m = 0.5 * (F[i][j] + F[j][i])
            F[i][j] = F[j][i] = m
    return F


# ----------------------------------------------------------------------------- Jacobi
def jacobi_eigenvalues(A, max_sweeps=100):
    """Eigenvalues of a symmetric matrix by the cyclic Jacobi method (A is copied)."""
    n = len(A)
    A = [list(r) for r in A]
    fro2 = sum(v * v for r in A for v in r)
    if fro2 == 0.0:
        return [0.0] * n
    for _ in range(max_sweeps):
        off2 = sum(A[i][j] * A[i][j] for i in range(n) for j in range(n) if i != j)
        if off2 <= 1e-40 * fro2:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = A[p][q]
                if apq == 0.0:
                    continue
                app, aqq = A[p][p], A[q][q]
                if abs(apq) < 1e-300:
                    A[p][q] = A[q][p] = 0.0
                    continue
                th = (aqq - app) / (2.0 * apq)
                if abs(th) > 1e150:
                    t = 0.5 / th
                else:
                    t = (1.0 if th >= 0.0 else -1.0) / (abs(th) + math.sqrt(th * th + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                tau = s / (1.0 + c)
                Ap, Aq = A[p], A[q]
                newp = [g - s * (h + g * tau) for g, h in zip(Ap, Aq)]
                newq = [h + s * (g - h * tau) for g, h in zip(Ap, Aq)]
                newp[p] = app - t * apq
                newq[q] = aqq + t * apq
                newp[q] = 0.0
                newq[p] = 0.0
                A[p], A[q] = newp, newq
                for r in range(n):
                    A[r][p] = newp[r]
                    A[r][q] = newq[r]
    return [A[i][i] for i in range(n)]


# ----------------------------------------------------------------------------- estimator
def lse(vals):
    m = max(vals)
    if m == -math.inf:
        return m
    return m + math.log(sum(math.exp(v - m) for v in vals))


def parse_list(text):
    return [float(v) for v in text.split(",") if v.strip()] if text else []


def parse_eps(text):
    if ":" in text:
        lo, hi, cnt = text.split(":")
        lo, hi, cnt = float(lo), float(hi), int(cnt)
        if cnt == 1:
            return [lo]
        a, b = math.log10(lo), math.log10(hi)
        return [10.0 ** (a + i * (b - a) / (cnt - 1)) for i in range(cnt)]
    return parse_list(text)


class Estimator:
    """Turns the kept raw eigenvalues and traces of the M samples into 2sED values."""

    def __init__(self, d, spectra, traces):
        self.d = d
        self.spectra = spectra  # per sample: kept raw (un-normalised) eigenvalues of F
        self.traces = traces

    def _lse_mean(self, idx, weights, per_sample):
        # log of the weighted mean of exp(per_sample[j]) over the resample (weights sum to 1).
        terms = [per_sample[j] + math.log(w) for j, w in zip(idx, weights)]
        return lse(terms)

    def _scale(self, idx, weights):
        t = sum(w * self.traces[j] for j, w in zip(idx, weights))
        return self.d / t

    def dzeta(self, zeta, eps, cover, idx, weights):
        scale = self._scale(idx, weights)
        a = eps ** (zeta - 1.0)
        S = {}
        for j in set(idx):
            lam = self.spectra[j]
            if cover == "box":
                S[j] = sum(math.log1p(a * math.sqrt(scale * v)) for v in lam)
            else:
                S[j] = sum(0.5 * math.log1p(a * a * scale * v) for v in lam)
        return zeta * self.d + self._lse_mean(idx, weights, S) / abs(math.log(eps))

    def ed(self, n, idx, weights):
        scale = self._scale(idx, weights)
        kappa = n / (2.0 * math.pi * math.log(n))
        S = {j: sum(0.5 * math.log1p(kappa * scale * v) for v in self.spectra[j])
             for j in set(idx)}
        return 2.0 * self._lse_mean(idx, weights, S) / math.log(kappa)


def multisets(M):
    """Every multiset of size M from range(M) as (distinct indices, probabilities)."""
    logfact = [math.lgamma(i + 1) for i in range(M + 1)]
    out = []

    def rec(start, left, counts):
        if start == M - 1:
            counts = counts + [left]
            logp = logfact[M] - sum(logfact[c] for c in counts) - M * math.log(M)
            idx = [j for j, c in enumerate(counts) if c > 0]
            out.append((idx, [counts[j] / M for j in idx], math.exp(logp)))
            return
        for c in range(left, -1, -1):
            rec(start + 1, left - c, counts + [c])

    rec(0, M, [])
    return out


def bootstrap_se(fn, M, B, seed, exact_limit):
    """Standard error of fn(idx, weights) under resampling of the M samples."""
    return bootstrap_se_vec(lambda idx, w: [fn(idx, w)], M, B, seed, exact_limit)[0]


# ----------------------------------------------------------------------------- Markov chain model
def local_jacobian(n_in, n_out, bias, a_in, dh):
    """C = d g / d theta_l (n_out x p_l) of g = act(W a_in + b) for one layer, with dh the
    activation derivative at W a_in + b (all ones for the output layer). Columns: weight
    (out x in, row-major), then bias. Formed as a full matrix, zeros included."""
    p = n_out * n_in + (n_out if bias else 0)
    C = []
    for u in range(n_out):
        row = [0.0] * p
        base = u * n_in
        for q in range(n_in):
            row[base + q] = dh[u] * a_in[q]
        if bias:
            row[n_out * n_in + u] = dh[u]
        C.append(row)
    return C


def accumulate_ct_lc(F, C, LC):
    """F += C^T LC (both n_out x p)."""
    p = len(F)
    for Cu, LCu in zip(C, LC):
        for a in range(p):
            ca = Cu[a]
            if ca != 0.0:
                F[a] = [fv + ca * lv for fv, lv in zip(F[a], LCu)]


def symmetrise(F):
    n = len(F)
    for i in range(n):
        for j in range(i + 1, n):
            m = 0.5 * (F[i][j] + F[j][i])
            F[i][j] = F[j][i] = m
    return F


def layer_params(net):
    return [n_out * n_in + (n_out if net.bias else 0) for n_in, n_out, _, _ in net.layout]


def hidden_offsets(net):
    """Column offset of every hidden layer's noise in a noise row, and H."""
    offs, off = [], 0
    for m in net.sizes[1:-1]:
        offs.append(off)
        off += m
    return offs, off


def markov_chain_rows(net, layers, X, noise_rows, R, sigma):
    """For every row (i, r), in order i*R + r: the inputs x_0, ..., x_{L-1} of the L layers along
    the noisy chain x_l = act(W_l x_{l-1} + b_l) + sigma * xi_l. noise_rows[i*R + r] is a list of H
    floats (or None when H = 0)."""
    offs, _ = hidden_offsets(net)
    L = len(layers)
    out = []
    for i, x in enumerate(X):
        for r in range(R):
            xi = noise_rows[i * R + r] if noise_rows is not None else None
            a = list(x)
            inputs = []
            for l in range(L):
                inputs.append(a)
                if l == L - 1:
                    break
                W, b = layers[l]
                z = [sum(w * v for w, v in zip(row, a)) + bb for row, bb in zip(W, b)]
                h, _ = act_and_deriv(net.act, z)
                o = offs[l]
                a = [hv + sigma * xi[o + u] for u, hv in enumerate(h)]
            out.append(inputs)
    return out


def markov_blocks(net, theta, X, noise_rows, R, sigma, task, out_noise):
    """The L dense Fisher blocks F_l (p_l x p_l) of M_sigma at theta, averaged over N*R rows."""
    layers = net.unpack(theta)
    L, k = len(layers), net.k
    ps = layer_params(net)
    Fs = [[[0.0] * p for _ in range(p)] for p in ps]
    rows = markov_chain_rows(net, layers, X, noise_rows, R, sigma)
    for inputs in rows:
        for l in range(L):
            n_in, n_out, _, _ = net.layout[l]
            W, b = layers[l]
            a = inputs[l]
            z = [sum(w * v for w, v in zip(row, a)) + bb for row, bb in zip(W, b)]
            if l < L - 1:
                _, dh = act_and_deriv(net.act, z)
                C = local_jacobian(n_in, n_out, net.bias, a, dh)
                accumulate_ct_lc(Fs[l], C, C)
            else:
                C = local_jacobian(n_in, n_out, net.bias, a, [1.0] * n_out)
                if task == "classify":
                    pr = softmax(z)
                    pC = [sum(pr[c] * C[c][q] for c in range(k)) for q in range(ps[l])]
                    LC = [[pr[c] * (C[c][q] - pC[q]) for q in range(ps[l])] for c in range(k)]
                else:
                    s2 = out_noise * out_noise
                    LC = [[v / s2 for v in C[c]] for c in range(k)]
                accumulate_ct_lc(Fs[l], C, LC)
    nrows = float(len(rows))
    for l in range(L):
        div = nrows * sigma * sigma if l < L - 1 else nrows
        Fs[l] = symmetrise([[v / div for v in row] for row in Fs[l]])
    return Fs


def kept_eigenvalues(F):
    """Eigenvalues of F above the zero cutoff (1e-12 x the largest; negatives dropped)."""
    if not F:
        return []
    ev = jacobi_eigenvalues(F)
    top = max(ev)
    return [v for v in ev if v > ZERO_CUTOFF * top] if top > 0.0 else []


class MarkovEstimator:
    """Lower and chain 2sED and the layer breakdown from the kept raw block eigenvalues
    spectra[j][l] and the block traces traces[j][l] of the M samples."""

    def __init__(self, d, spectra, traces):
        self.d = d
        self.spectra = spectra
        self.totals = [sum(t) for t in traces]
        self.L = len(spectra[0]) if spectra else 0

    def values(self, zeta, eps, cover, idx, weights):
        """[lower, chain, contribution_1, ..., contribution_L] on the (re)sample idx/weights."""
        t = sum(w * self.totals[j] for j, w in zip(idx, weights))
        scale = self.d / t
        a = eps ** (zeta - 1.0)
        per = {}
        for j in set(idx):
            if cover == "box":
                per[j] = [sum(math.log1p(a * math.sqrt(scale * v)) for v in lam)
                          for lam in self.spectra[j]]
            else:
                per[j] = [sum(0.5 * math.log1p(a * a * scale * v) for v in lam)
                          for lam in self.spectra[j]]
        S = {j: sum(v) for j, v in per.items()}
        le = abs(math.log(eps))
        contrib = [sum(w * per[j][l] for j, w in zip(idx, weights)) / le for l in range(self.L)]
        lower = zeta * self.d + sum(w * S[j] for j, w in zip(idx, weights)) / le
        chain = zeta * self.d + lse([S[j] + math.log(w) for j, w in zip(idx, weights)]) / le
        return [lower, chain] + contrib


def bootstrap_se_vec(fn, M, B, seed, exact_limit):
    """bootstrap_se for a vector-valued fn (the same resamples for every component)."""
    if math.comb(2 * M - 1, M) <= exact_limit:
        vals = [(fn(idx, w), prob) for idx, w, prob in multisets(M)]
        n = len(vals[0][0])
        mean = [sum(v[c] * p for v, p in vals) for c in range(n)]
        return [math.sqrt(max(sum(p * (v[c] - mean[c]) ** 2 for v, p in vals), 0.0))
                for c in range(n)]
    rng = random.Random(seed)
    vals = []
    for _ in range(B):
        counts = [0] * M
        for _ in range(M):
            counts[rng.randrange(M)] += 1
        idx = [j for j in range(M) if counts[j]]
        vals.append(fn(idx, [counts[j] / M for j in idx]))
    n = len(vals[0])
    out = []
    for c in range(n):
        m = sum(v[c] for v in vals) / B
        out.append(math.sqrt(sum((v[c] - m) ** 2 for v in vals) / (B - 1)))
    return out


def usage_error(msg):
    sys.stderr.write(f"reference_2sed.py: {msg}\n")
    raise SystemExit(2)


def load_noise(path, net, M, N, R):
    """Per sample j: a list of N*R noise rows (lists of H floats), or None when H = 0 and no
    file is given. Shape errors are usage errors (exit 2)."""
    _, H = hidden_offsets(net)
    if path is None:
        if H > 0:
            usage_error(f"--markov needs --noise (M x N*R x H with H = {H})")
        return [None] * M
    try:
        shape, vals = read_npy(path)
    except (OSError, ValueError, SyntaxError) as e:
        usage_error(f"--noise: {e}")
    want3, want4 = (M, N * R, H), (M, N, R, H)
    if tuple(shape) not in (want3, want4):
        usage_error(f"--noise {path}: shape {tuple(shape)}, expected (M, N*R, H) = {want3} or "
                    f"(M, N, R, H) = {want4} (M --thetas rows, N --inputs-file rows, "
                    f"R --noise-draws, H hidden units)")
    per_sample = []
    for j in range(M):
        base = j * N * R * H
        per_sample.append([vals[base + row * H:base + (row + 1) * H] for row in range(N * R)])
    return per_sample


def layer_name(l):
    return str(2 * l)


def markov_main(args):
    if args.ed_n or args.n:
        usage_error("--ed-n and --n are not supported with --markov")
    if args.sigma is None or not args.sigma > 0.0 or not math.isfinite(args.sigma):
        usage_error("--markov needs --sigma S with S > 0")
    if args.noise_draws < 1:
        usage_error("--noise-draws must be >= 1")
    try:
        net = MLP(args.model, args.act, not args.no_bias)
    except ValueError as e:
        usage_error(f"--model: {e}")
    try:
        thetas = as_matrix(*read_npy(args.thetas), args.thetas)
    except (OSError, ValueError, SyntaxError) as e:
        usage_error(f"--thetas: {e}")
    try:
        X = as_matrix(*read_npy(args.inputs_file), args.inputs_file)
    except (OSError, ValueError, SyntaxError) as e:
        usage_error(f"--inputs-file: {e}")
    if any(len(t) != net.d for t in thetas):
        usage_error(f"--thetas: expected shape (M, {net.d})")
    if any(len(x) != net.sizes[0] for x in X):
        usage_error(f"--inputs-file: expected {net.sizes[0]} features")
    M, N, d, R = len(thetas), len(X), net.d, args.noise_draws
    noise = load_noise(args.noise, net, M, N, R)

    spectra, traces = [], []
    for theta, nz in zip(thetas, noise):
        Fs = markov_blocks(net, theta, X, nz, R, args.sigma, args.task, args.out_noise)
        traces.append([sum(F[i][i] for i in range(len(F))) for F in Fs])
        spectra.append([kept_eigenvalues(F) for F in Fs])

    est = MarkovEstimator(d, spectra, traces)
    full_idx, full_w = list(range(M)), [1.0 / M] * M
    eps_grid = parse_eps(args.eps)
    zetas = parse_list(args.zeta)
    ps = layer_params(net)
    L = len(ps)

    curves = []
    for z in zetas:
        vals = [est.values(z, e, args.cover, full_idx, full_w) for e in eps_grid]
        if args.no_stderr:
            ses = [[None] * (2 + L) for _ in eps_grid]
        else:
            ses = [bootstrap_se_vec(lambda i, w, z=z, e=e: est.values(z, e, args.cover, i, w),
                                    M, args.bootstrap, args.seed, args.exact_bootstrap_limit)
                   for e in eps_grid]
        curves.append({
            "zeta": z, "eps": eps_grid,
            "lower": [v[0] for v in vals], "lower_stderr": [s[0] for s in ses],
            "chain": [v[1] for v in vals], "chain_stderr": [s[1] for s in ses],
            "layers": [{"name": layer_name(l), "params": ps[l],
                        "contribution": [v[2 + l] for v in vals],
                        "contribution_stderr": [s[2 + l] for s in ses]} for l in range(L)]})
    result = {"d": d, "M": M, "N": N, "k": net.k,
              "mean_trace": sum(sum(t) for t in traces) / M, "cover": args.cover,
              "markov": {"sigma": args.sigma, "noise_draws": R},
              "curves": curves, "sample_traces": traces}
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--act", default="relu")
    ap.add_argument("--no-bias", action="store_true")
    ap.add_argument("--task", default="classify", choices=["classify", "regress"])
    ap.add_argument("--out-noise", type=float, default=1.0)
    ap.add_argument("--thetas", required=True)
    ap.add_argument("--inputs-file", required=True)
    ap.add_argument("--eps", default="1e-6:1e-1:25")
    ap.add_argument("--zeta", default="0,0.5")
    ap.add_argument("--cover", default="box", choices=["box", "ellipsoid"])
    ap.add_argument("--ed-n", default="")
    ap.add_argument("--n", default="")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exact-bootstrap-limit", type=int, default=500)
    ap.add_argument("--no-stderr", action="store_true")
    ap.add_argument("--markov", action="store_true",
                    help="Markov chain model M_sigma: lower and chain 2sED, layer breakdown")
    ap.add_argument("--sigma", type=float, default=None, help="--markov: hidden-layer noise")
    ap.add_argument("--noise", default=None,
                    help="--markov: noise .npy, (M, N*R, H) or (M, N, R, H), float64")
    ap.add_argument("--noise-draws", type=int, default=1, help="--markov: R noise draws per input")
    args = ap.parse_args(argv)
    if args.markov:
        return markov_main(args)
    if args.sigma is not None or args.noise is not None or args.noise_draws != 1:
        ap.error("--sigma, --noise and --noise-draws need --markov")

    net = MLP(args.model, args.act, not args.no_bias)
    thetas = as_matrix(*read_npy(args.thetas), args.thetas)
    X = as_matrix(*read_npy(args.inputs_file), args.inputs_file)
    if any(len(t) != net.d for t in thetas):
        raise SystemExit(f"thetas: expected shape (M, {net.d})")
    if any(len(x) != net.sizes[0] for x in X):
        raise SystemExit(f"inputs: expected {net.sizes[0]} features")
    M, N, d = len(thetas), len(X), net.d

    spectra, traces, cut = [], [], []
    for theta in thetas:
        F = dense_fisher(net, theta, X, args.task, args.out_noise)
        traces.append(sum(F[i][i] for i in range(d)))
        ev = jacobi_eigenvalues(F)
        top = max(ev)
        kept = [v for v in ev if v > ZERO_CUTOFF * top] if top > 0.0 else []
        spectra.append(kept)
        cut.append(d - len(kept))

    est = Estimator(d, spectra, traces)
    full_idx, full_w = list(range(M)), [1.0 / M] * M
    eps_grid = parse_eps(args.eps)
    zetas = parse_list(args.zeta)

    def se(fn):
        if args.no_stderr:
            return None
        return bootstrap_se(fn, M, args.bootstrap, args.seed, args.exact_bootstrap_limit)

    curves = []
    for z in zetas:
        vals = [est.dzeta(z, e, args.cover, full_idx, full_w) for e in eps_grid]
        ses = [se(lambda i, w, z=z, e=e: est.dzeta(z, e, args.cover, i, w)) for e in eps_grid]
        curves.append({"zeta": z, "eps": eps_grid, "value": vals, "stderr": ses})
    ed = []
    for n in parse_list(args.ed_n):
        kappa = n / (2.0 * math.pi * math.log(n))
        ed.append({"zeta": 0.0, "n": n, "eps": kappa ** -0.5,
                   "value": est.ed(n, full_idx, full_w),
                   "stderr": se(lambda i, w, n=n: est.ed(n, i, w))})
    at_n = []
    for z in zetas:
        for n in parse_list(args.n):
            e = (2.0 * math.pi * math.log(n) / n) ** (1.0 / (2.0 * (1.0 - z)))
            at_n.append({"zeta": z, "n": n, "eps": e,
                         "value": est.dzeta(z, e, args.cover, full_idx, full_w),
                         "stderr": se(lambda i, w, z=z, e=e: est.dzeta(z, e, args.cover, i, w))})
    result = {"d": d, "M": M, "N": N, "k": net.k, "mean_trace": sum(traces) / M,
              "cover": args.cover, "curves": curves, "ed": ed, "at_n": at_n,
              "samples": [{"trace": t, "kept": len(s), "cut": c}
                          for t, s, c in zip(traces, spectra, cut)]}
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
