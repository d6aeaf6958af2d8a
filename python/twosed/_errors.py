"""Library errors as Python exceptions, with the library's option names as keywords."""

import contextlib
import os

from . import _twosed

# Library option "Struct.field" -> the keyword of twosed.measure / Store that sets it.
KEYWORDS = {
    "ModelOptions.activation": "act",
    "ModelOptions.bias": "bias",
    "MeasureOptions.model": "model",
    "MeasureOptions.input_shape": "input_shape",
    "MeasureOptions.jacobian": "jacobian",
    "MeasureOptions.data": "inputs",
    "MeasureOptions.inputs_file": "inputs",
    "MeasureOptions.standardize": "standardize",
    "MeasureOptions.num_inputs": "num_inputs",
    "MeasureOptions.space": "space",
    "MeasureOptions.thetas_file": "thetas",
    "MeasureOptions.num_param_samples": "samples",
    "MeasureOptions.seed": "seed",
    "MeasureOptions.markov": "markov",
    "MeasureOptions.sigma": "markov",
    "MeasureOptions.noise_draws": "noise_draws",
    "MeasureOptions.noise_file": "noise",
    "MarkovOptions.sigma": "markov",
    "MarkovOptions.noise_draws": "noise_draws",
    "FisherOptions.task": "task",
    "FisherOptions.out_noise": "out_noise",
    "FisherOptions.kind": "fisher",
    "FisherOptions.side": "side",
    "FisherOptions.memory_budget": "memory_budget_mb",
    "EstimatorOptions.eps": "eps",
    "EstimatorOptions.zetas": "zetas",
    "EstimatorOptions.cover": "cover",
    "EstimatorOptions.ed_n": "ed_n",
    "EstimatorOptions.at_n": "n",
    "EstimatorOptions.bootstrap": "bootstrap",
    "ExecutionContext.threads": "threads",
    "BoundOptions.loss_bound": "loss_bound",
    "BoundOptions.lipschitz": "lipschitz",
    "BoundOptions.delta": "delta",
}


def not_found(message, path):
    """A FileNotFoundError whose text is the library's one line naming ``path`` (OSError's own
    errno/filename form would print the path twice)."""
    return FileNotFoundError(message)


def _missing_file(message):
    """The path of a "PATH: no such file" / "PATH: cannot open file" message when PATH is absent."""
    for marker in (": no such file", ": cannot open file", ": cannot open results database"):
        if marker in message:
            path = message.split(marker, 1)[0]
            if path and not os.path.exists(path):
                return path
    return None


@contextlib.contextmanager
def translated(hidden_path=None):
    """Re-raises the engine's errors as the documented types: OptionError -> ValueError naming
    the keyword, DataError for a missing file -> FileNotFoundError. A temporary file the package
    wrote (an nn.Module saved as TorchScript) is called "model" in messages."""

    def text(message):
        return message.replace(hidden_path, "model") if hidden_path else message

    try:
        yield
    except _twosed.OptionError as e:
        message, option, rule = e.args if len(e.args) == 3 else (str(e), "", "")
        keyword = KEYWORDS.get(option)
        raise ValueError(text(f"{keyword} {rule}" if keyword else message)) from None
    except _twosed.DataError as e:
        message = str(e)
        path = _missing_file(message)
        if path is not None:
            raise not_found(text(message), path) from None
        if hidden_path and hidden_path in message:
            raise _twosed.DataError(text(message)) from None
        raise
    except ValueError as e:
        if hidden_path and hidden_path in str(e):
            raise ValueError(text(str(e))) from None
        raise
