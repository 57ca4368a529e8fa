"""mnistbench: train small CNNs on MNIST-family data and compare training techniques by honest measurements.

The Python API for notebooks:

    import mnistbench as mb
    data = mb.load("mnist")
    result = mb.run_trial(mb.make_spec(model="seed-bn", optimizer="adam", lr=1e-3), data)
"""

__version__ = "0.1.0"

from .data import fetch, load  # noqa: E402
from .result import TrialResult  # noqa: E402
from .spec import TrialSpec, make_spec  # noqa: E402
from .trial import run_trial  # noqa: E402

__all__ = ["TrialResult", "TrialSpec", "fetch", "load", "make_spec", "run_trial", "__version__"]
