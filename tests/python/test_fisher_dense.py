"""Tiny models: twosed's non-zero Fisher spectra equal those of a dense d x d Fisher built here
with functorch Jacobians in float64 (docs/math.md section 2), to 1e-10 x lambda_max."""

import numpy as np
import pytest
import torch

import twosed

functorch = pytest.importorskip("functorch")


def dense_fisher(model, theta, x, task="classify", out_noise=1.0):
    """F_N(theta) = (1/N) sum_i J_i^T Lambda_i J_i with J_i the k x d Jacobian of f(x_i)."""
    fmodel, params = functorch.make_functional(model)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def f(t):
        return fmodel(tuple(piece.reshape(shape) for piece, shape in zip(torch.split(t, sizes), shapes)), x)

    theta = torch.as_tensor(theta, dtype=torch.float64)
    jac = functorch.jacrev(f)(theta)  # (N, k, d)
    logits = f(theta)
    if task == "classify":
        p = torch.softmax(logits, dim=1)
        lam = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    else:
        lam = torch.eye(logits.shape[1], dtype=torch.float64).expand(x.shape[0], -1, -1) / out_noise**2
    fisher = torch.einsum("nkd,nkl,nle->de", jac, lam, jac) / x.shape[0]
    return torch.linalg.eigvalsh(fisher).numpy()


def check_spectra(model, x, thetas, task="classify", out_noise=1.0, **options):
    r = twosed.measure(model, x, thetas=thetas, task=task, out_noise=out_noise, bootstrap=10, progress=False,
                       threads=1, **options)
    assert len(r.spectra) == len(thetas)
    for theta, spectrum in zip(thetas, r.spectra):
        dense = dense_fisher(model.double(), theta, x, task, out_noise)
        lam_max = dense.max()
        kept = np.sort(spectrum)[::-1]
        assert 0 < len(kept) < len(dense)
        top = np.sort(dense)[::-1]
        assert np.abs(kept - top[:len(kept)]).max() <= 1e-10 * lam_max
        # What twosed cut is zero in the dense Fisher too (round-off only).
        assert np.abs(top[len(kept):]).max() <= 1e-10 * lam_max


def tiny_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double().eval()


def test_classifier_spectra_equal_the_dense_fisher():
    model = tiny_mlp()
    x = torch.randn(6, 4, dtype=torch.float64)
    d = sum(p.numel() for p in model.parameters())
    thetas = np.random.default_rng(1).uniform(-1, 1, size=(3, d))
    check_spectra(model, x, thetas)
    check_spectra(model, x, thetas, side="parameters")


def test_regression_spectra_equal_the_dense_fisher():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 2)).double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    d = sum(p.numel() for p in model.parameters())
    thetas = np.random.default_rng(2).uniform(-1, 1, size=(2, d))
    check_spectra(model, x, thetas, task="regress", out_noise=0.5)


def test_conv_spectra_equal_the_dense_fisher():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 3 * 3, 3)).double().eval()
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    d = sum(p.numel() for p in model.parameters())
    thetas = np.random.default_rng(3).uniform(-1, 1, size=(2, d))
    check_spectra(model, x, thetas)
