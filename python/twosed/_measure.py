"""twosed.measure and twosed.markov: options checked and typed here, the work done by the engine."""

import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from . import _twosed
from ._errors import translated
from ._result import Result, null_standard_errors

_CHOICES = {
    "task": ("classify", "regress"),
    "fisher": ("exact", "sampled"),
    "side": ("auto", "samples", "parameters"),
    "cover": ("box", "ellipsoid"),
    "jacobian": ("auto", "autograd", "structured"),
    "act": ("relu", "tanh", "sigmoid", "gelu"),
}


def logspace(lo, hi, count):
    """``count`` values log-spaced from ``lo`` to ``hi``, both included, as a list of floats: the
    same numbers as the CLI's ``--eps LO:HI:COUNT``."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"logspace: lo and hi must be finite numbers > 0, got {lo}, {hi}")
    if int(count) != count or count < 1:
        raise ValueError(f"logspace: count must be an integer >= 1, got {count}")
    if count == 1:
        return [float(lo)]
    # The library's formula, operation for operation, so that a grid equals the CLI's LO:HI:COUNT.
    l0, l1 = math.log10(lo), math.log10(hi)
    grid = [math.pow(10.0, l0 + i * (l1 - l0) / (count - 1)) for i in range(int(count))]
    grid[0], grid[-1] = float(lo), float(hi)
    return grid


def _floats(name, values):
    if values is None:
        return []
    if isinstance(values, (int, float)):
        values = [values]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number or a list of numbers, got {values!r}") from None
    return out


def _integer(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return int(value)


def _choice(name, value):
    if value not in _CHOICES[name]:
        raise ValueError(f"{name} {value!r}: expected one of {', '.join(_CHOICES[name])}")
    return value


def _float64_array(x, name):
    """A float64 C-contiguous numpy array over x's memory when x already is one (a CPU float64
    contiguous tensor or array), else over one converted copy."""
    try:
        import torch
    except ImportError:  # numpy arrays need no torch
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach()
        if x.device.type != "cpu" or x.dtype != torch.float64 or not x.is_contiguous():
            x = x.to(device="cpu", dtype=torch.float64, memory_format=torch.contiguous_format)
        return x.numpy()
    if isinstance(x, np.ndarray) or isinstance(x, (list, tuple)):
        a = np.ascontiguousarray(x, dtype=np.float64)
        return a
    raise ValueError(f"{name}: expected a torch.Tensor or a numpy array, got {type(x).__name__}")


def _is_module(model):
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


def _training_module(model):
    for name, m in model.named_modules():
        if m.training:
            return name or "(the model itself)", type(m).__name__
    return None


def _save_torchscript(model, example, path):
    """Writes the user's model as a float64 TorchScript file at ``path``: a ScriptModule as it
    is, an nn.Module scripted (else traced on ``example``) from a deep copy, so that the user's
    module, its parameters, dtype and training flag, are never changed."""
    import torch

    found = _training_module(model)
    if found:
        raise _twosed.DataError(f"model: module '{found[0]}' ({found[1]}) is in training mode; call model.eval() "
                                "first (the 2sED is measured on a fixed function)")
    if isinstance(model, torch.jit.ScriptModule):
        torch.jit.save(model, path)
        return
    m = copy.deepcopy(model).double()
    try:
        scripted = torch.jit.script(m)
    except Exception:
        if example is None:
            raise ValueError("model: this nn.Module cannot be scripted, and tracing it needs the inputs as a "
                             "tensor or array") from None
        with torch.no_grad():
            scripted = torch.jit.trace(m, torch.from_numpy(example[:1]))
    torch.jit.save(scripted, path)


class _ProgressBar:
    """Parameter samples done, on stderr when it is a terminal."""

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self, done, total):
        elapsed = time.monotonic() - self.start
        eta = elapsed * (total - done) / done if done > 0 else 0.0
        filled = min(30, max(0, int(30 * done / max(total, 1))))
        sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done:.1f}/{total} parameter samples  "
                         f"{elapsed:.1f}s elapsed  ETA {eta:.1f}s   ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _progress_callback(progress):
    if callable(progress):
        return progress
    if progress is True or progress is None:
        try:
            if sys.stderr.isatty():
                return _ProgressBar()
        except (AttributeError, ValueError):
            pass
        return None
    if progress is False:
        return None
    raise ValueError(f"progress: expected True, False or a callable(done, total), got {progress!r}")


def _stored_npy(array, db, what):
    """For a run recorded in a results store, arrays are kept as .npy files beside the database,
    named after their contents, so that the run's configuration names exactly these numbers and
    resume=True recognises them."""
    digest = hashlib.sha256(array.tobytes()).hexdigest()[:32]
    folder = os.path.abspath(db) + ".arrays"
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{what}-{'x'.join(map(str, array.shape))}-{digest}.npy")
    if not os.path.exists(path):
        tmp = path + f".{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    return path


def _options(model_text, *, samples, zetas, eps, space, task, out_noise, fisher, side, cover, ed_n, n, bootstrap,
             seed, markov, noise_draws, noise, jacobian, input_shape, act, bias, num_inputs, standardize,
             memory_budget_mb):
    o = {"model": model_text, "space": str(space), "task": _choice("task", task), "fisher": _choice("fisher", fisher),
         "side": _choice("side", side), "cover": _choice("cover", cover), "jacobian": _choice("jacobian", jacobian),
         "act": _choice("act", act), "bias": bool(bias), "standardize": bool(standardize),
         "samples": _integer("samples", samples, 1), "num_inputs": _integer("num_inputs", num_inputs, 1),
         "bootstrap": _integer("bootstrap", bootstrap, 0), "seed": _integer("seed", seed, 0, 2**64 - 1),
         "noise_draws": _integer("noise_draws", noise_draws, 1, 1000000),
         "memory_budget": _integer("memory_budget_mb", memory_budget_mb, 1, 1 << 20) << 20,
         "zetas": _floats("zetas", zetas), "ed_n": _floats("ed_n", ed_n), "n": _floats("n", n)}
    try:
        o["out_noise"] = float(out_noise)
    except (TypeError, ValueError):
        raise ValueError(f"out_noise: expected a number, got {out_noise!r}") from None
    if eps is not None:
        o["eps"] = _floats("eps", eps)
        if not o["eps"]:
            raise ValueError("eps: expected at least one value")
    if input_shape is not None:
        o["input_shape"] = "x".join(str(int(s)) for s in input_shape) if not isinstance(input_shape, str) \
            else input_shape
    if markov is not None and markov is not False:
        try:
            o["sigma"] = float(markov)
        except (TypeError, ValueError):
            raise ValueError(f"markov: expected the noise standard deviation sigma (> 0), got {markov!r}") from None
        if not (o["sigma"] > 0 and math.isfinite(o["sigma"])):
            raise ValueError(f"markov: sigma must be a finite number > 0, got {markov!r}")
        o["markov"] = True
    if noise is not None:
        if not isinstance(noise, (str, os.PathLike)):
            raise ValueError("noise: expected the path of an .npy file of standard normals")
        o["noise_file"] = os.fspath(noise)
    return o


def measure(model, inputs=None, *, samples=100, zetas=(0.0, 0.5), eps=None, space="init", thetas=None,
            task="classify", out_noise=1.0, fisher="exact", side="auto", cover="box", ed_n=(), n=(), bootstrap=1000,
            seed=0, threads=None, markov=None, noise_draws=1, noise=None, jacobian="auto", input_shape=None,
            act="relu", bias=True, num_inputs=100, standardize=False, memory_budget_mb=256, db=None, resume=False,
            progress=True):
    """Measures the two-scale effective dimension d_zeta(eps) of a model on inputs.

    model   a model spec string ("mlp:784-64-10", "cnn:1x28x28-c8k3-relu-p2-f10"), a TorchScript
            file (.pt), a torch.jit.ScriptModule, or a torch.nn.Module (scripted, else traced, from
            a deep copy in float64: the module you pass is never changed). Modules must be in eval
            mode.
    inputs  a torch.Tensor or numpy array (N x features or N x C x H x W), used in place when it
            is float64 and contiguous (else converted once); or a data source string as the
            CLI's --data takes it ("idx:/usr/share/datasets/fashion-mnist", "synthetic:blobs:10:784")
            with ``num_inputs`` of them drawn; None: the CLI's default data.

    Keywords mirror the options of ``twosed measure``:
      samples      M, parameter samples (ignored with ``thetas``)
      zetas, eps   the zeta values in [0, 1) and the eps grid (default: logspace(1e-6, 1e-1, 25))
      space        "init" | "box:A" | "local:R" (imported models: the model's weights +- R) |
                   "local:CKPT.npy:R" (spec strings)
      thetas       parameter samples to evaluate at: an (M, d) array or tensor, or a .npy path
      task, out_noise, fisher, side, cover, bootstrap, seed, input_shape, act, bias,
      standardize, memory_budget_mb   as the CLI's --task, --out-noise, ... flags
      ed_n         also Abbas et al.'s effective dimension at these n (Result.ed(n))
      n            also d_zeta at eps_zeta(n) for these training-set sizes (Result.at_n(n))
      markov       sigma > 0: the Markov chain model (lower and chain 2sED, layer breakdown);
                   noise_draws (R) and noise (an .npy path) as --noise-draws and --noise
      jacobian     imported models: "auto" | "autograd"
      threads      BLAS/LibTorch threads for the call (default: every core)
      db, resume   record the run in this results database, every sample committed as it is
                   done; resume=True continues the newest unfinished run of this configuration
                   (or resume=RUN_ID that run). Spec-string models only.
      progress     True: a progress bar on stderr when it is a terminal; False: none; or a
                   callable(done, total) called after each sample (and each Markov layer)

    Returns a Result: ``r.curve(zeta).value`` / ``.stderr`` (numpy arrays over ``r.curve(zeta).eps``),
    ``r.ed(n)``, ``r.at_n(n)``, ``r.spectra``, ``r.to_dict()`` / ``r.to_json()`` (the CLI's JSON),
    ``r.plot()``. The GIL is released while the engine works; Ctrl-C stops the measurement after
    the sample (or Markov layer) in progress and raises KeyboardInterrupt (with ``db``, finished
    samples stay committed and ``resume=True`` continues).

    Raises ValueError for a bad option, twosed.DataError (a ValueError) for data that do not fit
    the model or a malformed file, FileNotFoundError for a missing file.
    """
    if threads is None:
        threads = _twosed.hardware_threads() or 1
    threads = _integer("threads", threads, 1, 4 * max(1, _twosed.hardware_threads()))
    if resume is not False and db is None:
        raise ValueError("resume needs db (the results database holding the run to continue)")
    resume_run = -1 if resume is False else (0 if resume is True else _integer("resume", resume, 1))
    callback = _progress_callback(progress)
    with contextlib.ExitStack() as stack:
        example = None
        given = None
        data = {}
        if isinstance(inputs, (str, os.PathLike)):
            text = os.fspath(inputs)
            if text.endswith(".npy"):
                data["inputs_file"] = text
            else:
                data["data"] = text
        elif inputs is not None:
            given = _float64_array(inputs, "inputs")
            example = given
        if _is_module(model):
            if db is not None:
                # The store names a model file by path and content hash; a module saved afresh per
                # call has neither a stable path nor (across PyTorch versions) stable bytes.
                raise ValueError("db: an nn.Module or ScriptModule is not recorded in a results database; save it "
                                 "with torch.jit.save(...) and pass the file's path as model")
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="twosed-"))
            model_text = os.path.join(folder, "model.pt")
            _save_torchscript(model, example, model_text)
            hidden = model_text
        elif isinstance(model, (str, os.PathLike)):
            model_text, hidden = os.fspath(model), None
        else:
            raise ValueError(f"model: expected a spec string, a TorchScript file, a ScriptModule or an nn.Module, "
                             f"got {type(model).__name__}")
        opts = _options(model_text, samples=samples, zetas=zetas, eps=eps, space=space, task=task,
                        out_noise=out_noise, fisher=fisher, side=side, cover=cover, ed_n=ed_n, n=n,
                        bootstrap=bootstrap, seed=seed, markov=markov, noise_draws=noise_draws, noise=noise,
                        jacobian=jacobian, input_shape=input_shape, act=act, bias=bias, num_inputs=num_inputs,
                        standardize=standardize, memory_budget_mb=memory_budget_mb)
        opts.update(data)
        theta_array = None
        if isinstance(thetas, (str, os.PathLike)):
            opts["thetas_file"] = os.fspath(thetas)
        elif thetas is not None:
            theta_array = _float64_array(thetas, "thetas")
            if theta_array.ndim == 1:
                theta_array = theta_array.reshape(1, -1)
            if theta_array.ndim == 2 and theta_array.shape[0] >= 1:
                opts["samples"] = theta_array.shape[0]  # M, for what is sized by it (Markov noise)
        if db is not None:
            # The store keeps a run's configuration as files and options: arrays become .npy files.
            if given is not None:
                opts["inputs_file"], given = _stored_npy(given, db, "inputs"), None
            if theta_array is not None:
                opts["thetas_file"], theta_array = _stored_npy(theta_array, db, "thetas"), None
        with translated(hidden):
            text, spectra, run = _twosed.measure(opts, given, theta_array, "" if db is None else os.fspath(db),
                                                 resume_run, callback, threads)
    doc = json.loads(text)
    if hidden:
        doc = _renamed(doc, hidden, f"{type(model).__name__} (Python module)")
    if doc["M"] < 2:
        null_standard_errors(doc)
    return Result(doc, spectra, run)


def _renamed(doc, path, name):
    """The document with the temporary TorchScript file's path replaced by the module's name."""
    if isinstance(doc, str):
        return doc.replace(path, name)
    if isinstance(doc, dict):
        return {k: _renamed(v, path, name) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_renamed(v, path, name) for v in doc]
    return doc


def markov(model, inputs=None, sigma=None, **options):
    """The Markov chain model M_sigma: ``measure(model, inputs, markov=sigma, **options)``.

    Returns a Result whose ``curves`` are the chain 2sED, ``lower`` the lower 2sED, and
    ``layers`` a dict layer name -> list of Curves (one per zeta) of that layer's contribution to
    the lower 2sED. ``sigma`` (> 0) is the standard deviation of the Gaussian noise added after
    every hidden layer. Spec-string models only.
    """
    if sigma is None:
        raise ValueError("markov needs sigma (the noise standard deviation, > 0)")
    return measure(model, inputs, markov=sigma, **options)
