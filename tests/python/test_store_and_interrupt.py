"""Runs recorded in a results database: interrupted (a callback raising KeyboardInterrupt, or a
real SIGINT), resumed, read back through twosed.Store."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

import twosed

OPTIONS = dict(bootstrap=20, eps=twosed.logspace(1e-5, 1e-1, 5), zetas=[0.0, 0.5], n=[1e4], seed=5, threads=1)
VOLATILE = {"context", "seconds", "data", "space", "resumed_samples", "stored", "twosed_version"}


def numbers(doc):
    return {k: v for k, v in doc.items() if k not in VOLATILE}


@pytest.fixture()
def x():
    return torch.randn(15, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_interrupt_then_resume_gives_the_uninterrupted_result(tmp_path, x):
    db = str(tmp_path / "runs.db")

    def stop_after_three(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        twosed.measure("mlp:8-6-3", x, samples=6, db=db, progress=stop_after_three, **OPTIONS)
    store = twosed.Store(db)
    [run] = store.runs()
    assert run["status"] == "failed" and run["num_samples"] == 3
    assert len(store.spectra(run["id"])) == 3
    partial = store.result(run["id"])  # a stopped run: curves from its committed samples
    assert partial.M == 3

    resumed = twosed.measure("mlp:8-6-3", x, samples=6, db=db, resume=True, progress=False, **OPTIONS)
    assert resumed.to_dict()["resumed_samples"] == 3 and resumed.run == run["id"]
    fresh = twosed.measure("mlp:8-6-3", x, samples=6, progress=False, **OPTIONS)
    assert numbers(resumed.to_dict()) == numbers(fresh.to_dict())
    assert all(np.array_equal(a, b) for a, b in zip(resumed.spectra, fresh.spectra))

    [done] = store.runs()
    assert done["status"] == "done" and done["num_samples"] == 6
    stored = store.result(done["id"])
    assert numbers(stored.to_dict()) == numbers(resumed.to_dict())
    with pytest.raises(twosed.DataError, match="already finished"):
        twosed.measure("mlp:8-6-3", x, samples=6, db=db, resume=True, progress=False, **OPTIONS)


def test_sigint_stops_a_measurement_within_a_second(tmp_path):
    x = torch.randn(60, 32, dtype=torch.float64)
    db = str(tmp_path / "sigint.db")
    sent = []

    def interrupt():
        time.sleep(0.5)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        twosed.measure("mlp:32-64-64-10", x, samples=100000, db=db, progress=False, bootstrap=10, threads=1)
    assert time.monotonic() - sent[0] < 1.0
    [run] = twosed.Store(db).runs()
    assert run["status"] == "failed" and run["num_samples"] >= 1


def test_store_recompute_and_bound(tmp_path, x):
    db = str(tmp_path / "store.db")
    r = twosed.measure("mlp:8-6-3", x, samples=4, db=db, progress=False, **OPTIONS)
    store = twosed.Store(db)
    again = store.recompute(r.run, eps=[1e-3], zetas=[0.25])
    assert again.curve(0.25).eps.tolist() == [1e-3]
    direct = twosed.measure("mlp:8-6-3", x, samples=4, progress=False, **dict(OPTIONS, eps=[1e-3], zetas=[0.25]))
    assert again.curve(0.25).value.tolist() == direct.curve(0.25).value.tolist()
    rows = store.bound(r.run, n=[1e4, 1e6])
    assert [(row["zeta"], row["n"]) for row in rows] == [(0.0, 1e4), (0.0, 1e6), (0.5, 1e4), (0.5, 1e6)]
    assert all(row["gap"] == pytest.approx(row["lipschitz_term"] + row["complexity_term"]) for row in rows)
    assert rows[1]["gap"] < rows[0]["gap"]  # more data, a smaller estimate
    with pytest.raises(ValueError, match="^delta "):
        store.bound(r.run, n=[1e4], delta=2.0)


def test_a_torchscript_file_is_recorded_and_a_module_is_refused(tmp_path, x):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double().eval()
    path = str(tmp_path / "net.pt")
    torch.jit.script(net).save(path)
    db = str(tmp_path / "ts.db")
    recorded = twosed.measure(path, x, samples=3, db=db, progress=False, **OPTIONS)
    [run] = twosed.Store(db).runs()
    assert run["status"] == "done" and run["num_samples"] == 3 and recorded.run == run["id"]
    fresh = twosed.measure(path, x, samples=3, progress=False, **OPTIONS)
    assert numbers(recorded.to_dict()) == numbers(fresh.to_dict())
    with pytest.raises(ValueError, match="torch.jit.save"):
        twosed.measure(net, x, samples=3, db=db, progress=False, **OPTIONS)
