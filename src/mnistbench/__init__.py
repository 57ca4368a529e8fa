"""mnistbench: train small CNNs on MNIST-family data and compare training techniques by honest measurements.

The Python API for notebooks:

    import mnistbench as mb
    data = mb.load("mnist")
    result = mb.run_trial(mb.make_spec(model="seed-bn", optimizer="adam", lr=1e-3), data)
    table = mb.run("smoke", seeds=2)          # an experiment, stored and resumable
    table.rows                                # or table.to_pandas()
    mb.write_report("smoke")
"""

__version__ = "0.1.0"

# Names resolve on first use, so `mnistbench --help` or `data fetch` don't wait for torch to import.
_API = {
    "fetch": "data", "load": "data", "TrialResult": "core.result", "TrialSpec": "core.spec", "make_spec": "core.spec",
    "run_trial": "core.trial", "run": "api", "load_results": "api", "load_across": "api", "write_report": "api",
    "predict": "api", "export_model": "api", "export_results": "api", "trial_rows": "api",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'mnistbench' has no attribute '{name}'")
