"""twosed: the two-scale effective dimension (2sED) of neural networks, from Python.

The engine is twosed's C++ library (the one behind the ``twosed`` command); this package hands
it PyTorch models and tensors without copying them. Typical use::

    import torch, torchvision, twosed
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(100, 3, 32, 32)
    r = twosed.measure(net, x, samples=20, zetas=[0, 0.5], eps=twosed.logspace(1e-6, 1e-1, 25))
    r.curve(zeta=0.5).value, r.curve(zeta=0.5).stderr, r.spectra[0]

Functions: measure, markov, logspace. Classes: Result, Curve, Point, Store. Errors:
ValueError (a bad option), DataError (a ValueError: data that do not fit the model, a bad
file), FileNotFoundError (a missing file), KeyboardInterrupt (Ctrl-C during a measurement).
The mathematics is in the repository's docs/math.md.
"""

from . import _twosed
from ._measure import logspace, markov, measure
from ._result import Curve, Point, Result
from ._store import Store

DataError = _twosed.DataError
DataError.__doc__ = "Data that do not fit the model, or a malformed file (a ValueError)."
DataError.__module__ = "twosed"

__version__ = _twosed.version
__all__ = ["measure", "markov", "logspace", "Result", "Curve", "Point", "Store", "DataError"]
