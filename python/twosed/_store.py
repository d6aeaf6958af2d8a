"""twosed.Store: the results database that ``twosed measure`` and ``measure(..., db=...)`` write."""

import json
import os

from . import _twosed
from ._errors import not_found, translated
from ._measure import _floats, _integer
from ._result import Result, null_standard_errors


class Store:
    """A results database (SQLite), opened read-only.

    Example::

        s = twosed.Store("twosed.db")
        for run in s.runs(): print(run["id"], run["status"], run["label"])
        r = s.result(3)                                   # a Result, as measured
        r2 = s.recompute(3, eps=twosed.logspace(1e-8, 1e-2, 40), zetas=[0.25])
        s.bound(3, n=[1e4, 6e4])                          # docs/math.md section 6
    """

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise not_found(f"{path}: no such results database", path)
        self.path = path
        with translated():
            _twosed.store_runs(path)  # a file that is not a results database is refused here

    def runs(self, kind=None):
        """The runs, oldest first, as dicts: id, kind ("measure", "train", "study"), status
        ("running", "done", "failed"), label, config (a dict), created, updated, parent,
        num_samples, message. ``kind`` keeps only runs of that kind."""
        with translated():
            rows = _twosed.store_runs(self.path)
        out = []
        for r in rows:
            if kind is not None and r["kind"] != kind:
                continue
            r = dict(r)
            r["config"] = json.loads(r["config"]) if r["config"] else {}
            r.pop("result")
            out.append(r)
        return out

    def result(self, run):
        """A measurement's Result: the result stored when it finished, else (a stopped run) its
        curves recomputed from the samples committed so far with the run's own options."""
        run = _integer("run", run, 1)
        with translated():
            rows = {r["id"]: r for r in _twosed.store_runs(self.path)}
            if run not in rows:
                raise _twosed.DataError(f"{self.path}: no run {run}")
            text = rows[run]["result"] or _twosed.store_recompute(self.path, run, {})
            spectra, _ = _twosed.store_spectra(self.path, run)
        doc = json.loads(text)
        if doc["M"] < 2:
            null_standard_errors(doc)
        return Result(doc, spectra, run)

    def spectra(self, run):
        """The stored spectra of a measurement: one numpy array of kept Fisher eigenvalues per
        committed parameter sample, in sample order (Markov: a list of per-layer arrays)."""
        with translated():
            spectra, _ = _twosed.store_spectra(self.path, _integer("run", run, 1))
        return spectra

    def recompute(self, run, eps=None, zetas=None, n=None, ed_n=None, bootstrap=None):
        """The curves of a stored measurement recomputed from its spectra for other eps, zetas,
        n, ed_n or bootstrap (the rest as the run was measured), without the network."""
        opts = {}
        for name, values in (("eps", eps), ("zetas", zetas), ("n", n), ("ed_n", ed_n)):
            if values is not None:
                opts[name] = _floats(name, values)
        if bootstrap is not None:
            opts["bootstrap"] = _integer("bootstrap", bootstrap, 0)
        run = _integer("run", run, 1)
        with translated():
            text = _twosed.store_recompute(self.path, run, opts)
            spectra, _ = _twosed.store_spectra(self.path, run)
        doc = json.loads(text)
        if doc["M"] < 2:
            null_standard_errors(doc)
        return Result(doc, spectra, run)

    def bound(self, run, n, zetas=None, loss_bound=1.0, lipschitz=1.0, delta=0.05, eps_range=(1e-12, 0.99),
              use="chain"):
        """The generalisation estimate of docs/math.md section 6 for a stored measurement (as
        ``twosed bound``): for each zeta and training-set size n, the minimum over eps in
        ``eps_range`` of 2 L eps + B sqrt((d_zeta(eps) |log eps| + log(2/delta)) / (2n)). Returns
        a list of dicts (zeta, n, eps, dimension, lipschitz_term, complexity_term, gap,
        at_grid_edge). Markov runs use the chain 2sED, or the lower one with use="lower". It is an
        estimate, not a certified bound: covering constants are set to one and log vol(Theta) is
        dropped."""
        ns = _floats("n", n)
        for value in ns:
            if not value > 1:
                raise ValueError(f"n: every n must be a number > 1, got {value}")
        if use not in ("chain", "lower"):
            raise ValueError(f"use {use!r}: expected chain or lower")
        lo, hi = (float(v) for v in eps_range)
        with translated():
            return _twosed.store_bound(self.path, _integer("run", run, 1), ns, _floats("zetas", zetas),
                                       float(loss_bound), float(lipschitz), float(delta), lo, hi, use == "lower")

    def __repr__(self):
        return f"Store({self.path!r})"
