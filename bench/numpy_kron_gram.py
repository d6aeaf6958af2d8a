#!/usr/bin/python3
"""Our own straightforward numpy implementation of the exact Kronecker Gram, for comparison.

The exact Fisher of a softmax MLP classifier (ReLU) at one parameter sample theta and N inputs,
in float64, the textbook way (docs/math.md section 7):
  forward pass; p = softmax(f); R_i = diag(sqrt p_i) - sqrt(p_i) p_i^T (k rows, R^T R = Lambda);
  backpropagate the k rows of R_i through the network; per Linear layer
  K += (B B^T) * (A A^T + 1) (x) 1 1^T, B the (N k) x out backpropagated rows, A the N x in inputs;
  K /= N; numpy.linalg.eigvalsh(K); eigenvalues <= 1e-12 * max are zeros (docs/math.md section 5).
K is N k square (twosed uses a rank-(k-1) factor of Lambda, N (k-1) square); the non-zero
spectra are the same.

Times M parameter samples (theta uniform in PyTorch's init box) after warm-up samples, split
into forward/backprop, Gram and eigen, and with --theta/--inputs checks the kept eigenvalues at
a given theta against twosed's (bench_fisher --export-dir).

With --thetas (an M x d .npy) it is instead a whole-process stand-in for `twosed measure
--thetas`: the spectrum at every row, then the effective dimension of Abbas et al. at --ed-n
(docs/math.md section 4: Fhat = (d/t) F with t the mean trace over the rows), printed as one
JSON line; bench/vs_numpy.sh times the two processes against each other.

Run with Debian's python3 (python3-numpy):
  /usr/bin/python3 bench/numpy_kron_gram.py --threads 2 --samples 5 \
      --theta DIR/theta.npy --inputs DIR/inputs.npy --reference DIR/twosed_eigs.npy
  /usr/bin/python3 bench/numpy_kron_gram.py --sizes 784,4096,10 --inputs x.npy --thetas thetas.npy --ed-n 1e5
"""
import argparse
import json
import os
import resource
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="784,1024,10", help="layer widths IN,H1,...,K (default 784,1024,10)")
    ap.add_argument("--samples", type=int, default=5, help="timed parameter samples (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up samples (default 1)")
    ap.add_argument("--inputs-n", type=int, default=100, help="N when --inputs is not given (default 100)")
    ap.add_argument("--threads", type=int, default=2, help="OpenBLAS threads (set before numpy loads; default 2)")
    ap.add_argument("--theta", help=".npy with one parameter vector (PyTorch named_parameters order)")
    ap.add_argument("--inputs", help=".npy of N x IN inputs (used for timing too)")
    ap.add_argument("--reference", help=".npy of twosed's kept eigenvalues at --theta/--inputs (ascending)")
    ap.add_argument("--thetas", help=".npy of M x d parameter samples: compute ED(--ed-n) over them and exit")
    ap.add_argument("--ed-n", type=float, default=1e5, help="n of the effective dimension with --thetas (default 1e5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results as JSON to this file")
    return ap.parse_args()


args = parse_args()
# OpenBLAS reads its thread count when the library loads: set it before importing numpy.
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
os.environ["OMP_NUM_THREADS"] = str(args.threads)
import numpy as np  # noqa: E402

CUTOFF = 1e-12


def blas_info():
    try:
        import ctypes

        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_num_threads.restype = ctypes.c_int
        return {"core": lib.openblas_get_corename().decode(), "threads": lib.openblas_get_num_threads()}
    except (OSError, AttributeError):
        return {"core": "unknown", "threads": None}


def unpack(theta, sizes):
    """theta -> [(W (out, in), b (out))] in PyTorch's named_parameters() order."""
    layers, off = [], 0
    for fan_in, out in zip(sizes[:-1], sizes[1:]):
        w = theta[off:off + out * fan_in].reshape(out, fan_in)
        off += out * fan_in
        b = theta[off:off + out]
        off += out
        layers.append((w, b))
    assert off == theta.size, (off, theta.size)
    return layers


def num_params(sizes):
    return sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))


def draw_theta(rng, sizes):
    """Uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] per layer (PyTorch's default init support)."""
    parts = []
    for fan_in, out in zip(sizes[:-1], sizes[1:]):
        a = 1.0 / np.sqrt(fan_in)
        parts.append(rng.uniform(-a, a, size=out * fan_in + out))
    return np.concatenate(parts)


def fisher_spectrum(theta, x, sizes):
    """Eigenvalues (ascending) of K = (1/N) Jh Jh^T, N k square, and stage times."""
    t0 = time.perf_counter()
    layers = unpack(theta, sizes)
    n, k = x.shape[0], sizes[-1]
    # Forward pass, keeping each layer's input and pre-activation.
    inputs, pre = [], []
    h = x
    for l, (w, b) in enumerate(layers):
        inputs.append(h)
        z = h @ w.T + b
        pre.append(z)
        h = np.maximum(z, 0.0) if l < len(layers) - 1 else z
    f = h
    e = np.exp(f - f.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    s = np.sqrt(p)
    # R_i = diag(sqrt p_i) - sqrt(p_i) p_i^T: g[i, c, :] is row c of R_i, a covector on the outputs.
    g = s[:, :, None] * (np.eye(k)[None, :, :] - p[:, None, :])
    ones = np.ones((k, k))
    gram = np.zeros((n * k, n * k))
    t_gram = 0.0
    for l in range(len(layers) - 1, -1, -1):
        tg = time.perf_counter()
        a = inputs[l]
        bm = g.reshape(n * k, -1)
        gram += (bm @ bm.T) * np.kron(a @ a.T + 1.0, ones)
        t_gram += time.perf_counter() - tg
        if l > 0:  # backprop the rows through layer l and the ReLU before it
            g = (g @ layers[l][0]) * (pre[l - 1] > 0)[:, None, :]
    tg = time.perf_counter()
    gram /= n
    t_gram += time.perf_counter() - tg
    built = time.perf_counter() - t0
    te = time.perf_counter()
    ev = np.linalg.eigvalsh(gram)
    t_eigen = time.perf_counter() - te
    return ev, {"forward_backward": built - t_gram, "gram": t_gram, "eigen": t_eigen}


def kept(ev):
    top = ev[-1]
    return ev[(ev > CUTOFF * max(top, 0.0)) & (ev > 0)]


def effective_dimension(spectra, d, n):
    """Abbas et al.'s ED(n) (gamma = 1) from each sample's kept eigenvalues, in log space."""
    t = np.mean([ev.sum() for ev in spectra])
    kappa = n / (2.0 * np.pi * np.log(n))
    logs = np.array([0.5 * np.log1p(kappa * (d / t) * ev).sum() for ev in spectra])
    top = logs.max()
    return 2.0 * (top + np.log(np.mean(np.exp(logs - top)))) / np.log(kappa)


def whole_process(sizes, x):
    t0 = time.perf_counter()
    thetas = np.load(args.thetas, mmap_mode="r")
    d = num_params(sizes)
    if thetas.ndim != 2 or thetas.shape[1] != d:
        sys.exit(f"{args.thetas}: shape {thetas.shape}, sizes {sizes} need (M, {d})")
    spectra = [kept(fisher_spectrum(np.asarray(row, dtype=np.float64), x, sizes)[0]) for row in thetas]
    ed = effective_dimension(spectra, d, args.ed_n)
    print(json.dumps({"d": d, "M": len(spectra), "N": x.shape[0], "ed_n": args.ed_n, "ed": ed,
                      "seconds": time.perf_counter() - t0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def main():
    sizes = [int(v) for v in args.sizes.split(",")]
    d = num_params(sizes)
    out = {"sizes": sizes, "d": d, "numpy": np.__version__, "blas": blas_info(), "threads": args.threads}
    if args.inputs:
        x = np.load(args.inputs).astype(np.float64).reshape(-1, sizes[0])
    else:
        x = np.random.default_rng(args.seed + 1).random((args.inputs_n, sizes[0]))
    out["N"] = x.shape[0]
    if args.thetas:
        return whole_process(sizes, x)

    # Agreement with twosed at a fixed theta.
    if args.theta:
        theta = np.load(args.theta).astype(np.float64).ravel()
        if theta.size != d:
            sys.exit(f"{args.theta}: {theta.size} parameters, sizes {sizes} need {d}")
        ev = kept(fisher_spectrum(theta, x, sizes)[0])
        chk = {"kept": int(ev.size), "sum": float(ev.sum()), "max": float(ev[-1])}
        print(f"numpy at {args.theta}: kept {ev.size} of {x.shape[0] * sizes[-1]}, "
              f"sum {ev.sum():.17g}, max {ev[-1]:.17g}")
        if args.reference:
            ref = np.sort(np.load(args.reference).astype(np.float64).ravel())
            chk.update({"twosed_kept": int(ref.size), "twosed_sum": float(ref.sum()), "twosed_max": float(ref[-1]),
                        "rel_diff_sum": float(abs(ev.sum() - ref.sum()) / abs(ref.sum())),
                        "rel_diff_max": float(abs(ev[-1] - ref[-1]) / abs(ref[-1]))})
            if ref.size == ev.size:
                chk["max_abs_diff_over_max"] = float(np.max(np.abs(ev - ref)) / ref[-1])
            print(f"twosed:            kept {ref.size}, sum {ref.sum():.17g}, max {ref[-1]:.17g}")
            print(f"relative difference: sum {chk['rel_diff_sum']:.2e}, max {chk['rel_diff_max']:.2e}"
                  + (f", max |lambda_numpy - lambda_twosed| / lambda_max {chk['max_abs_diff_over_max']:.2e}"
                     if "max_abs_diff_over_max" in chk else ", kept counts differ"))
        out["check"] = chk

    # Timing: warm-up + M samples, fresh theta each.
    rng = np.random.default_rng(args.seed)
    rows = []
    for j in range(args.warmup + args.samples):
        theta = draw_theta(rng, sizes)
        t0 = time.perf_counter()
        ev, st = fisher_spectrum(theta, x, sizes)
        st["total"] = time.perf_counter() - t0
        if j >= args.warmup:
            rows.append(st)
    stats = {}
    for key in ("forward_backward", "gram", "eigen", "total"):
        v = np.array([r[key] for r in rows])
        stats[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                      "min": float(v.min()), "max": float(v.max())}
    out["stats"] = stats
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"numpy {np.__version__} (OpenBLAS core {out['blas']['core']}, {args.threads} thread(s)), "
          f"MLP {'-'.join(map(str, sizes))} (d = {d}), N = {x.shape[0]}, Gram {x.shape[0] * sizes[-1]} square, "
          f"{args.samples} samples after {args.warmup} warm-up:")
    print("  per sample (ms, mean ± sd): " + ", ".join(
        f"{key} {stats[key]['mean'] * 1e3:.1f} ± {stats[key]['sd'] * 1e3:.1f}"
        for key in ("forward_backward", "gram", "eigen", "total"))
          + f"; min total {stats['total']['min'] * 1e3:.1f}; peak RSS {out['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
