"""Inference on the CPU, side by side in one run: PyTorch eager, torch.compile and onnxruntime, at batch 1 and
batch 1000, in images/s and ms/image. Rounds interleave the backends, so a machine that slows down (other
work, thermal limits) slows all of them alike; the median round is reported, with each backend's ratio to eager.

    python benchmarks/inference.py                          # a fresh model of the default architecture
    python benchmarks/inference.py --model speedrun --threads 2
    python benchmarks/inference.py --from EXPERIMENT:LABEL --results mnistbench-results   # a kept model

The weights don't change the speed of these dense CNNs, so a fresh model measures the same as a trained one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mnistbench.core.spec import TrialSpec
from mnistbench.interop.export import export_model
from mnistbench.core.checkpoint import SavedModel
from mnistbench.interop.lookup import resolve_model


def backends(saved: SavedModel, folder: Path) -> dict[str, Callable[[np.ndarray], object]]:
    """name -> a function running one batch (a float32 array), each warmed up by the caller."""
    model = saved.build()
    compiled = torch.compile(model)

    def eager(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    def compiled_run(x):
        with torch.inference_mode():
            return compiled(torch.from_numpy(x))

    out = {"eager": eager, "torch.compile": compiled_run}
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed (pip install 'mnistbench[export]'): its column is left out")
        return out
    path = export_model(saved, "onnx", folder / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as PyTorch, for a fair race
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out["onnxruntime"] = lambda x: session.run(None, {"images": x})
    return out


def measure(run: Callable, x: np.ndarray, min_seconds: float) -> float:
    """Seconds per batch: repeat until `min_seconds` have passed (at least 3 calls)."""
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < min_seconds:
        run(x)
        calls += 1
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seed-simple", help="architecture of a fresh model")
    parser.add_argument("--from", dest="ref", default=None, help="a kept model (EXPERIMENT:LABEL[:SEED] or .pt)")
    parser.add_argument("--results", default="mnistbench-results")
    parser.add_argument("--batches", default="1,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="minimum time per measurement")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.ref:
        saved = resolve_model(args.ref, args.results)
    else:
        from mnistbench.core.models import build_model

        spec = TrialSpec(model=args.model)
        saved = SavedModel(spec, 0.1307, 0.3081, build_model(spec.model).state_dict(), f"fresh {spec.model}")
    sizes = [int(b) for b in args.batches.split(",")]
    inputs = {b: np.random.default_rng(0).standard_normal((b, 1, 28, 28)).astype(np.float32) for b in sizes}
    with tempfile.TemporaryDirectory() as folder:
        runs = backends(saved, Path(folder))
        for run in runs.values():  # warm-up: compilation for every batch shape, allocator growth, thread pools
            for x in inputs.values():
                run(x)
                run(x)
        seconds: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for b, x in inputs.items():
                for name, run in runs.items():
                    seconds.setdefault((name, b), []).append(measure(run, x, args.seconds))
    print(f"{saved.spec.model} ({saved.origin}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'backend':15s} {'batch':>6s} {'images/s':>12s} {'ms/image':>10s} {'vs eager':>9s}")
    for b in sizes:
        eager = statistics.median(seconds[("eager", b)])
        for name in runs:
            s = statistics.median(seconds[(name, b)])
            print(f"{name:15s} {b:6d} {b / s:12.0f} {1000 * s / b:10.4f} {eager / s:8.2f}x")


if __name__ == "__main__":
    main()
