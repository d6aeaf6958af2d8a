"""Measurement results as plain Python objects over the result JSON (the CLI's --format json)."""

import copy
import json

import numpy as np


def null_standard_errors(j):
    """With one parameter sample there is no standard error: every "stderr" / "*_stderr" value
    becomes None (0 would claim an exact value), as the CLI prints it."""
    if isinstance(j, dict):
        for key, value in j.items():
            if key == "stderr" or key.endswith("_stderr"):
                j[key] = [None] * len(value) if isinstance(value, list) else None
            else:
                null_standard_errors(value)
    elif isinstance(j, list):
        for value in j:
            null_standard_errors(value)


def _array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class Curve:
    """One curve over the eps grid at one zeta: ``eps``, ``value`` and ``stderr`` are numpy
    arrays (``stderr`` is NaN with a single parameter sample)."""

    def __init__(self, zeta, eps, value, stderr):
        self.zeta = float(zeta)
        self.eps = _array(eps)
        self.value = _array(value)
        self.stderr = _array(stderr)

    def __repr__(self):
        return f"Curve(zeta={self.zeta}, {len(self.eps)} eps values)"


class Point:
    """One estimate: ``value`` and ``stderr`` at (``zeta``, ``n``, ``eps``)."""

    def __init__(self, d, value_key="value", stderr_key="stderr"):
        self.zeta = float(d["zeta"])
        self.n = float(d["n"])
        self.eps = float(d["eps"])
        self.value = float(d[value_key])
        self.stderr = float("nan") if d[stderr_key] is None else float(d[stderr_key])

    def __repr__(self):
        return f"Point(zeta={self.zeta}, n={self.n:g}, eps={self.eps:g}, value={self.value}, stderr={self.stderr})"


class Result:
    """A measurement.

    Attributes: ``d`` (parameters), ``M`` (parameter samples), ``N`` (inputs), ``k`` (outputs),
    ``curves`` (list of Curve, one per zeta: the 2sED, or for the Markov chain model the chain
    2sED), ``spectra`` (one numpy array of kept Fisher eigenvalues per parameter sample; Markov:
    one list of per-layer arrays per sample), ``run`` (the results store's run id, 0 without
    ``db``). Markov results also have ``lower`` (curves of the lower 2sED) and ``layers``
    (layer name -> Curve of that layer's contribution to the lower 2sED, per zeta).
    ``to_dict()`` / ``to_json()`` give exactly the CLI's ``--format json`` document.
    """

    def __init__(self, doc, spectra, run=0):
        self._doc = doc
        self.spectra = spectra
        self.run = run
        self.d, self.M, self.N, self.k = doc["d"], doc["M"], doc["N"], doc["k"]
        self.markov = doc.get("model_kind") == "markov"
        if self.markov:
            self.curves = [Curve(c["zeta"], c["eps"], c["chain"], c["chain_stderr"]) for c in doc["curves"]]
            self.lower = [Curve(c["zeta"], c["eps"], c["lower"], c["lower_stderr"]) for c in doc["curves"]]
            self.layers = {}
            for c in doc["curves"]:
                for layer in c["layers"]:
                    curve = Curve(c["zeta"], c["eps"], layer["contribution"], layer["contribution_stderr"])
                    self.layers.setdefault(layer["name"], []).append(curve)
        else:
            self.curves = [Curve(c["zeta"], c["eps"], c["value"], c["stderr"]) for c in doc["curves"]]

    def curve(self, zeta=0.0):
        """The curve at ``zeta`` (one of the zetas measured): ``.eps``, ``.value``, ``.stderr``."""
        for c in self.curves:
            if c.zeta == zeta:
                return c
        raise KeyError(f"zeta {zeta} was not measured (measured: {[c.zeta for c in self.curves]})")

    def ed(self, n):
        """The effective dimension of Abbas et al. at training-set size ``n`` (a Point); ``n``
        must be among the ``ed_n`` values measured."""
        return self._point(self._doc["ed"], n, "ed_n")

    def at_n(self, n, zeta=None):
        """d_zeta at eps_zeta(n) for training-set size ``n`` (a Point; ``n`` among the ``n``
        values measured). With several zetas pass ``zeta`` (default: the first)."""
        rows = self._doc["at_n"]
        if zeta is None and rows:
            zeta = rows[0]["zeta"]
        rows = [r for r in rows if r["zeta"] == zeta]
        if self.markov:
            return self._point(rows, n, "n", "chain", "chain_stderr")
        return self._point(rows, n, "n")

    def _point(self, rows, n, keyword, value_key="value", stderr_key="stderr"):
        for r in rows:
            if r["n"] == n:
                return Point(r, value_key, stderr_key)
        raise KeyError(f"n = {n:g} was not measured: pass {keyword}=[{n:g}, ...] (measured: {[r['n'] for r in rows]})")

    def to_dict(self):
        """The CLI's --format json document as a dict (a copy)."""
        return copy.deepcopy(self._doc)

    def to_json(self, indent=2):
        """The CLI's --format json document as text."""
        return json.dumps(self._doc, indent=indent) + "\n"

    def plot(self, ax=None, path=None):
        """Draws the curves against eps (log scale) with standard-error bands on ``ax`` (a new
        figure if None), saving to ``path`` if given; returns the Axes. Needs matplotlib."""
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        name = "chain 2sED" if self.markov else "2sED"
        for c in self.curves:
            ax.plot(c.eps, c.value, label=f"{name}, zeta = {c.zeta:g}")
            if np.isfinite(c.stderr).all():
                ax.fill_between(c.eps, c.value - c.stderr, c.value + c.stderr, alpha=0.25)
        ax.set_xscale("log")
        ax.set_xlabel("eps")
        ax.set_ylabel("d_zeta(eps)")
        ax.set_title(f"{self._doc['model']} (d = {self.d}, M = {self.M}, N = {self.N})")
        ax.legend()
        if path is not None:
            ax.figure.savefig(path, bbox_inches="tight")
        return ax

    def __repr__(self):
        return f"Result(model={self._doc['model']!r}, d={self.d}, M={self.M}, N={self.N}, zetas={[c.zeta for c in self.curves]})"
