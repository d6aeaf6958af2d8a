"""The same inputs, parameter samples and options through Python and through the CLI give the
same JSON numbers."""

import json
import subprocess

import numpy as np
import pytest

import twosed

# Keys that describe where and when a run happened, or where its inputs came from: they differ
# by construction (a file for the CLI, an array for Python).
VOLATILE = {"context", "seconds", "data", "space", "twosed_version"}


def numbers(doc):
    """The document without VOLATILE keys and timings (any key naming seconds), at any depth."""
    if isinstance(doc, dict):
        return {k: numbers(v) for k, v in doc.items() if k not in VOLATILE and "seconds" not in k}
    if isinstance(doc, list):
        return [numbers(v) for v in doc]
    return doc


def run_cli(cli, args):
    out = subprocess.run([cli, "measure", "--format", "json", "--no-db", "-q", "--threads", "1"] + args,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, 8))
    thetas = rng.uniform(-0.6, 0.6, size=(4, 8 * 6 + 6 + 6 * 3 + 3))
    np.save(folder / "x.npy", x)
    np.save(folder / "thetas.npy", thetas)
    return folder, x, thetas


OPTIONS = dict(zetas=[0.0, 0.5], eps=twosed.logspace(1e-5, 1e-1, 7), ed_n=[1000.0], n=[500.0, 5000.0],
               bootstrap=50, seed=3, threads=1, progress=False)
CLI_OPTIONS = ["--zeta", "0,0.5", "--eps", "1e-5:1e-1:7", "--ed-n", "1000", "--n", "500,5000", "--bootstrap", "50",
               "--seed", "3"]


def test_given_thetas_match_the_cli(cli, files):
    folder, x, thetas = files
    expected = run_cli(cli, ["--model", "mlp:8-6-3", "--act", "tanh", "--inputs-file", str(folder / "x.npy"),
                             "--thetas", str(folder / "thetas.npy")] + CLI_OPTIONS)
    got = twosed.measure("mlp:8-6-3", x, thetas=thetas, act="tanh", **OPTIONS).to_dict()
    assert numbers(got) == numbers(expected)
    assert got["M"] == 4 and len(got["curves"]) == 2


def test_drawn_thetas_match_the_cli(cli, files):
    folder, x, _ = files
    expected = run_cli(cli, ["--model", "mlp:8-6-3", "--inputs-file", str(folder / "x.npy"), "--samples", "5",
                             "--space", "box:0.5", "--fisher", "sampled", "--side", "parameters"] + CLI_OPTIONS)
    got = twosed.measure("mlp:8-6-3", x, samples=5, space="box:0.5", fisher="sampled", side="parameters",
                         **OPTIONS).to_dict()
    assert numbers(got) == numbers(expected)
    assert got["gram_side"] == "parameters"


def test_markov_matches_the_cli(cli, files):
    folder, x, thetas = files
    expected = run_cli(cli, ["--model", "mlp:8-6-3", "--inputs-file", str(folder / "x.npy"), "--thetas",
                             str(folder / "thetas.npy"), "--markov", "--sigma", "0.2", "--noise-draws", "2"]
                       + CLI_OPTIONS)
    r = twosed.markov("mlp:8-6-3", x, sigma=0.2, thetas=thetas, noise_draws=2, **OPTIONS)
    assert numbers(r.to_dict()) == numbers(expected)
    # The layer breakdown: one entry per parametric layer, contributions summing to the lower 2sED
    # (docs/math.md section 4: the lower 2sED is a sum over layers plus zeta*d).
    assert sorted(r.layers) == sorted(layer["name"] for layer in expected["layers"])
    lower = r.lower[1]
    total = sum(curves[1].value for curves in r.layers.values())
    assert np.allclose(total + 0.5 * r.d, lower.value, rtol=1e-10, atol=1e-9)
    assert len(r.spectra) == 4 and len(r.spectra[0]) == 2


def test_one_sample_has_no_standard_errors(cli, files):
    folder, x, thetas = files
    np.save(folder / "one.npy", thetas[:1])
    expected = run_cli(cli, ["--model", "mlp:8-6-3", "--inputs-file", str(folder / "x.npy"), "--thetas",
                             str(folder / "one.npy")] + CLI_OPTIONS)
    r = twosed.measure("mlp:8-6-3", x, thetas=thetas[0], **OPTIONS)
    assert numbers(r.to_dict()) == numbers(expected)
    assert r.curve(0.5).stderr.size == 7 and np.isnan(r.curve(0.5).stderr).all()


def test_two_threads_make_the_same_choices_and_numbers_as_the_cli(cli, files):
    # On more than one thread the engine may run samples in parallel (one BLAS thread each):
    # the Python call must choose as the CLI does, or the curves differ in the last bits.
    folder, x, thetas = files
    args = ["--model", "mlp:8-6-3", "--inputs-file", str(folder / "x.npy"), "--thetas", str(folder / "thetas.npy")]
    out = subprocess.run([cli, "measure", "--format", "json", "--no-db", "-q", "--threads", "2"] + args + CLI_OPTIONS,
                         check=True, capture_output=True, text=True)
    expected = json.loads(out.stdout)
    got = twosed.measure("mlp:8-6-3", x, thetas=thetas, **dict(OPTIONS, threads=2)).to_dict()
    assert got["context"]["parallel_samples"] == expected["context"]["parallel_samples"]
    assert numbers(got) == numbers(expected)
