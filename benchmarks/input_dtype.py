"""Images kept in fp32 or in bf16 for a bf16 trial: the time of a training step either way, per model.

Under bf16 autocast the first convolution rounds its fp32 input to bf16 itself, so images stored in bf16 give
the same values (tests/test_coverage.py checks it for every model); what changes is the bytes each batch's
gather reads and the cast each step no longer runs. The steps are the trial's own (`training_step`, the batch
gathered by `index_select` from the split `prepare_split` leaves), each model trained alternately with both
stores in one process, so drift on a shared machine hits both; the median over rounds is printed, and the ratio.

    python benchmarks/input_dtype.py --models speedrun-whitened,fast-mnist --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mnistbench import load
from mnistbench.core.hardware import keep_freed_memory, native_bf16
from mnistbench.core.models import MODELS, build_model
from mnistbench.core.recipes import make_optimizer
from mnistbench.core.trial import autocast_for, prepare_split, training_loss, training_step

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="speedrun-whitened,fast-mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round and store")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not native_bf16(CPU):
        print("this CPU computes bf16 by emulation: a bf16 trial would not run here (precision auto is fp32)")
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    data = load("mnist")
    stores = {dtype: prepare_split(data.train, CPU, True, dtype) for dtype in (torch.float32, torch.bfloat16)}
    autocast = autocast_for("bf16", CPU)
    loss_fn = training_loss(0.1)  # the trial's own loss, as the recipes smooth it
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    runs = {}
    for name in args.models.split(","):
        for dtype in stores:
            torch.manual_seed(0)
            model, entry = build_model(name), MODELS.get(name)
            if entry.fit is not None:
                entry.fit(model, data.train.images[:entry.fit_images])
            model = model.to(memory_format=torch.channels_last)
            runs[name, dtype] = model, make_optimizer("adam", model.parameters(), 1e-3, {"fused": True})

    def steps(key, start: int, count: int) -> float:
        (model, optimizer), split = runs[key], stores[key[1]]
        begin = time.perf_counter()
        for i in range(start, start + count):
            idx = order[(i * args.batch_size) % (len(order) - args.batch_size):][:args.batch_size]
            training_step(model, split.images.index_select(0, idx), split.labels.index_select(0, idx), loss_fn,
                          optimizer, autocast)
        return (time.perf_counter() - begin) / count

    for key in runs:  # oneDNN builds its kernels on first use: not a step's time
        steps(key, 0, 10)
    times = {key: [] for key in runs}
    for r in range(args.rounds):
        for key in runs:
            times[key].append(steps(key, 10 + r * args.steps, args.steps))
    print(f"batch {args.batch_size}, bf16 autocast, {args.threads} threads, {args.rounds} rounds of {args.steps} steps")
    for name in args.models.split(","):
        fp32, bf16 = (statistics.median(times[name, dtype]) for dtype in stores)
        print(f"{name:20s} images in fp32 {1000 * fp32:.3f} ms/step, in bf16 {1000 * bf16:.3f} ms/step: "
              f"{100 * (1 - bf16 / fp32):.1f}% less time")


if __name__ == "__main__":
    main()
