"""Where the seed models' time goes on this CPU, and which fp32 choices make it smaller: memory layout
(NCHW against channels-last), training batch size, evaluation batch size, and torch.compile (with its
warm-up). Every variant runs the same steps on the same data; rounds interleave the variants so that drift
on a shared machine hits all of them. The medians over rounds decide the defaults in core/models.py
(`ModelEntry.channels_last`) and core/trial.py (the evaluation batch).

    python benchmarks/layout.py --rounds 3 --steps 8            # training steps, every model and batch size
    python benchmarks/layout.py --part eval --rounds 3         # evaluation of the 10,000 test images
    python benchmarks/layout.py --part compile --steps 30      # torch.compile against eager, warm-up included
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from peak import matmul_peak  # noqa: E402

from mnistbench.core.hardware import keep_freed_memory  # noqa: E402
from mnistbench.core.models import build_model, step_flops_per_image  # noqa: E402

LAYOUTS = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}


def _setup(model_name: str, batch: int, layout: str, seed: int = 0):
    torch.manual_seed(seed)
    fmt = LAYOUTS[layout]
    model = build_model(model_name).to(memory_format=fmt)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, x, y, opt


def _steps(model, x, y, opt, steps: int) -> float:
    """Seconds per training step, the same step as run_trial's (zero_grad(set_to_none), backward, step)."""
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return (time.perf_counter() - start) / steps


def train_part(models, batches, rounds: int, steps: int) -> None:
    variants = [(m, b, lay) for m in models for b in batches for lay in LAYOUTS]
    prepared = {v: _setup(*v) for v in variants}
    for v in variants:  # warm-up: oneDNN creates its kernels on first use of each shape
        _steps(*prepared[v], 2)
    times: dict = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants:
            times[v].append(_steps(*prepared[v], steps))
        print(f"round {r + 1}/{rounds} done", flush=True)
    peak = matmul_peak(torch.float32)
    print(f"\ntraining step, fp32, Adam, {steps} steps x {rounds} rounds, {torch.get_num_threads()} threads; "
          f"medians; fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'model':12s} {'batch':>5s} {'NCHW img/s':>11s} {'CL img/s':>9s} {'CL/NCHW':>8s} {'% peak (best)':>14s}")
    for m in models:
        flops = step_flops_per_image(build_model(m))
        for b in batches:
            nchw = b / statistics.median(times[(m, b, "nchw")])
            cl = b / statistics.median(times[(m, b, "channels-last")])
            print(f"{m:12s} {b:5d} {nchw:11.0f} {cl:9.0f} {cl / nchw:7.2f}x {max(cl, nchw) * flops / peak:13.1%}")


@torch.inference_mode()
def _evaluate(model, images, labels, batch: int) -> float:
    start = time.perf_counter()
    correct = torch.zeros((), dtype=torch.long)
    for i in range(0, len(images), batch):
        out = model(images[i:i + batch])
        correct += (out.argmax(1) == labels[i:i + batch]).sum()
    correct.item()
    return time.perf_counter() - start


def eval_part(models, batches, rounds: int, n: int) -> None:
    images, labels = torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))
    variants = [(m, b, lay) for m in models for b in batches for lay in LAYOUTS]
    nets = {}
    for m in models:
        for lay, fmt in LAYOUTS.items():
            torch.manual_seed(0)
            nets[(m, lay)] = build_model(m).to(memory_format=fmt).eval()
    inputs = {lay: images.contiguous(memory_format=fmt) for lay, fmt in LAYOUTS.items()}
    for m, b, lay in variants:
        _evaluate(nets[(m, lay)], inputs[lay][:2 * b], labels[:2 * b], b)
    times: dict = {v: [] for v in variants}
    for r in range(rounds):
        for m, b, lay in variants:
            times[(m, b, lay)].append(_evaluate(nets[(m, lay)], inputs[lay], labels, b))
        print(f"round {r + 1}/{rounds} done", flush=True)
    print(f"\nevaluation of {n:,} images, fp32, {rounds} rounds, {torch.get_num_threads()} threads; median seconds")
    print(f"{'model':12s} {'batch':>5s} {'NCHW s':>7s} {'CL s':>7s}")
    for m in models:
        for b in batches:
            print(f"{m:12s} {b:5d} {statistics.median(times[(m, b, 'nchw')]):7.2f} "
                  f"{statistics.median(times[(m, b, 'channels-last')]):7.2f}")


def compile_part(models, batch: int, steps: int, layout: str) -> None:
    """Eager against torch.compile for `steps` steps, the compile's first steps (its warm-up) included."""
    for m in models:
        eager = _setup(m, batch, layout)
        _steps(*eager, 2)
        t_eager = _steps(*eager, steps) * steps
        model, x, y, opt = _setup(m, batch, layout)
        compiled = torch.compile(model)
        start = time.perf_counter()
        _steps(compiled, x, y, opt, 2)
        warm = time.perf_counter() - start
        t_comp = _steps(compiled, x, y, opt, steps) * steps
        print(f"{m:12s} batch {batch} {layout}: eager {t_eager:.2f} s, compiled {t_comp:.2f} s + warm-up "
              f"{warm:.1f} s for {steps} steps ({t_eager / t_comp:.2f}x per step)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["train", "eval", "compile"], default="train")
    parser.add_argument("--models", nargs="+", default=["seed-simple", "seed-bn"])
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--images", type=int, default=10000, help="evaluation: images per pass")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="channels-last")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    keep_freed_memory()  # the allocator setting every trial runs with (benchmarks/allocator.py measures it)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "train":
        train_part(args.models, args.batches or [64, 128, 256, 512], args.rounds, args.steps)
    elif args.part == "eval":
        eval_part(args.models, args.batches or [100, 250, 500, 1000, 2000], args.rounds, args.images)
    else:
        compile_part(args.models, (args.batches or [128])[0], args.steps, args.layout)


if __name__ == "__main__":
    main()
