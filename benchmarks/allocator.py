"""glibc's default allocator against `keep_freed_memory` (core/hardware.py), on the seed models' training
step: the same steps in fresh processes, one per setting and round (the setting is process-wide and cannot
be undone), rounds alternating the order. Prints images per second, the ratio, and the system-call seconds
that the default's page faults cost (getrusage), per model and batch size.

    python benchmarks/allocator.py                      # seed-simple and seed-bn, batches 128 and 512
    python benchmarks/allocator.py --models speedrun --batches 256 --rounds 5
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from mnistbench.core.hardware import keep_freed_memory
from mnistbench.core.models import build_model


def _measure(model_name: str, batch: int, kept: bool, steps: int, threads: int) -> tuple[float, float]:
    """(images per second, system seconds per step) of SGD training steps in channels-last, as trials run."""
    if kept:
        assert keep_freed_memory(), "mallopt is not available here (not glibc)"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last
    model = build_model(model_name).to(memory_format=fmt)
    x, y = torch.randn(batch, 1, 28, 28).contiguous(memory_format=fmt), torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def run(n: int) -> None:
        for _ in range(n):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(3)  # kernels created, allocator grown
    sys_before, start = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
    run(steps)
    elapsed = time.perf_counter() - start
    return steps * batch / elapsed, (resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_before) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["seed-simple", "seed-bn"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    got: dict = {}
    for r in range(args.rounds):
        for m in args.models:
            for b in args.batches:
                for kept in ((False, True) if r % 2 == 0 else (True, False)):
                    with ctx.Pool(1) as pool:
                        got.setdefault((m, b, kept), []).append(
                            pool.apply(_measure, (m, b, kept, args.steps, args.threads)))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    print(f"\nSGD training steps, fp32, channels-last, {args.threads} threads, {args.steps} steps x "
          f"{args.rounds} rounds, a fresh process each; medians")
    print(f"{'model':12s} {'batch':>5s} {'default img/s':>13s} {'kept img/s':>10s} {'kept/default':>12s} "
          f"{'sys ms/step: default':>20s} {'kept':>5s}")
    for m in args.models:
        for b in args.batches:
            d, k = got[(m, b, False)], got[(m, b, True)]
            di, ki = statistics.median(v[0] for v in d), statistics.median(v[0] for v in k)
            ds, ks = statistics.median(v[1] for v in d), statistics.median(v[1] for v in k)
            print(f"{m:12s} {b:5d} {di:13.0f} {ki:10.0f} {ki / di:11.2f}x {ds * 1e3:20.1f} {ks * 1e3:5.1f}")


if __name__ == "__main__":
    main()
