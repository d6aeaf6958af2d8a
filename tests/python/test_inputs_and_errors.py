"""What measure() does to the user's objects and inputs, and the exception types it raises."""

import numpy as np
import pytest
import torch

import twosed
from twosed import _measure, _twosed

FAST = dict(samples=3, bootstrap=10, eps=[1e-3, 1e-2], zetas=[0.5], progress=False, threads=1)


def model_and_inputs():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).eval()
    return net, torch.randn(10, 6)


def test_the_users_module_is_unchanged():
    net, x = model_and_inputs()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    r = twosed.measure(net, x, **FAST)
    assert r.d == 6 * 5 + 5 + 5 * 3 + 3
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert not net.training and not any(m.training for m in net.modules())


def test_a_module_in_training_mode_is_refused_and_left_in_it():
    net, x = model_and_inputs()
    net.train()
    with pytest.raises(twosed.DataError, match="training mode"):
        twosed.measure(net, x, **FAST)
    assert net.training


def test_script_module_nn_module_and_traced_module_agree():
    net, x = model_and_inputs()

    class Unscriptable(torch.nn.Module):  # **kwargs cannot be scripted: traced instead
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, **kwargs):
            return self.inner(x)

    a = twosed.measure(net, x, **FAST).to_dict()
    b = twosed.measure(torch.jit.script(net), x, **FAST).to_dict()
    c = twosed.measure(Unscriptable(net).eval(), x, **FAST).to_dict()
    assert a["curves"] == b["curves"] == c["curves"]


def test_float32_numpy_inputs_equal_float64_ones():
    _, x = model_and_inputs()
    a = twosed.measure("mlp:6-5-3", x.numpy(), **FAST)
    b = twosed.measure("mlp:6-5-3", x.double().numpy(), **FAST)
    assert x.numpy().dtype == np.float32
    assert a.to_dict()["curves"] == b.to_dict()["curves"]


def test_non_contiguous_tensor_equals_its_contiguous_copy():
    _, x = model_and_inputs()
    strided = x.double().t().contiguous().t()  # same values, column-major
    assert not strided.is_contiguous()
    a = twosed.measure("mlp:6-5-3", strided, **FAST)
    b = twosed.measure("mlp:6-5-3", x.double().contiguous(), **FAST)
    assert a.to_dict()["curves"] == b.to_dict()["curves"]


def test_float64_contiguous_inputs_are_not_copied():
    x = torch.randn(10, 6, dtype=torch.float64)
    a = _measure._float64_array(x, "inputs")
    assert a.ctypes.data == x.data_ptr()
    assert _twosed._address(a) == x.data_ptr()  # the engine's tensor reads this memory
    a32 = _measure._float64_array(x.float(), "inputs")  # one converted copy
    assert a32.dtype == np.float64 and a32.flags.c_contiguous


def test_no_cuda_needed():
    # A CPU-only torch (Debian's) is what the module is built for; CUDA tensors would be copied
    # to the CPU once (documented in measure's docstring).
    if torch.cuda.is_available():
        x = torch.randn(10, 6, device="cuda")
        a = twosed.measure("mlp:6-5-3", x, **FAST)
        b = twosed.measure("mlp:6-5-3", x.cpu(), **FAST)
        assert a.to_dict()["curves"] == b.to_dict()["curves"]
    else:
        assert twosed.measure("mlp:6-5-3", torch.randn(10, 6), **FAST).M == 3


def test_bad_options_are_value_errors_naming_the_keyword():
    _, x = model_and_inputs()
    with pytest.raises(ValueError, match="^samples must be"):
        twosed.measure("mlp:6-5-3", x, samples=0)
    with pytest.raises(ValueError, match="^zetas "):  # checked by the library, renamed here
        twosed.measure("mlp:6-5-3", x, **dict(FAST, zetas=[1.5]))
    with pytest.raises(ValueError, match="^eps "):
        twosed.measure("mlp:6-5-3", x, **dict(FAST, eps=[2.0]))
    with pytest.raises(ValueError, match="^task 'x'"):
        twosed.measure("mlp:6-5-3", x, task="x")
    with pytest.raises(ValueError, match="mlp:6-5"):
        twosed.measure("mlp:6-5-", x, **FAST)
    with pytest.raises(ValueError, match="resume needs db"):
        twosed.measure("mlp:6-5-3", x, resume=True)


def test_data_that_do_not_fit_are_data_errors():
    _, x = model_and_inputs()
    with pytest.raises(twosed.DataError) as e:
        twosed.measure("mlp:7-5-3", x, **FAST)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    bad = x.clone()
    bad[2, 3] = float("nan")
    with pytest.raises(twosed.DataError):
        twosed.measure("mlp:6-5-3", bad, **FAST)
    with pytest.raises(twosed.DataError):
        twosed.measure("mlp:6-5-3", x, thetas=np.zeros((2, 5)), **FAST)


def test_missing_files_are_file_not_found_errors(tmp_path):
    _, x = model_and_inputs()
    with pytest.raises(FileNotFoundError, match="nothing.npy"):
        twosed.measure("mlp:6-5-3", x, thetas=str(tmp_path / "nothing.npy"), **FAST)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        twosed.measure(str(tmp_path / "nothing.pt"), x, **FAST)
    with pytest.raises(FileNotFoundError):
        twosed.Store(tmp_path / "nothing.db")


def test_logspace_and_help():
    grid = twosed.logspace(1e-6, 1e-1, 25)
    assert len(grid) == 25 and grid[0] == 1e-6 and grid[-1] == 1e-1
    assert grid == _twosed.default_eps_grid()
    assert "Returns a Result" in twosed.measure.__doc__


def test_plot_draws_the_curves(tmp_path):
    pytest.importorskip("matplotlib")
    _, x = model_and_inputs()
    r = twosed.measure("mlp:6-5-3", x, **FAST)
    ax = r.plot(path=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    [line] = ax.get_lines()
    assert np.array_equal(line.get_ydata(), r.curve(0.5).value)
