"""Where the time of a training step goes: torch.profiler over steps of one model, after unprofiled ones, each
operator with its input shapes and its share of the profiled time.

The steps are the trial's own (`training_step`: autocast for the precision, fp32 loss, backward, the optimizer's
update, the batch gathered from in-memory tensors kept in the trial's dtype, as the loop does), with the
allocator setting a trial runs under. Only the optimizer's trainable weights are given to it, as in a trial; a
model's data-dependent `fit` is left out (it changes the frozen weights' values, not what a step computes).

    python benchmarks/profile_step.py --model speedrun-whitened --precision auto --optimizer adam
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from mnistbench import load
from mnistbench.core.hardware import keep_freed_memory, resolve_precision
from mnistbench.core.models import build_model
from mnistbench.core.recipes import make_optimizer
from mnistbench.core.trial import autocast_for, input_dtype, prepare_split, training_loss, training_step

CPU = torch.device("cpu")
COLD = 10  # the first steps, untimed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="speedrun-whitened")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warm", type=int, default=50, help="unprofiled steps first (timed after the first 10)")
    parser.add_argument("--steps", type=int, default=30, help="profiled steps")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="the model through torch.compile (its compilation "
                        "happens in the untimed first steps)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    data = load("mnist")
    images = prepare_split(data.train, CPU, True, input_dtype(args.precision, CPU)).images  # as a trial keeps them
    torch.manual_seed(0)
    model = build_model(args.model).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(args.optimizer, model.parameters(), 1e-3, {"fused": True} if args.optimizer in
                               ("adam", "adamw") else {})
    forward = torch.compile(model) if args.compile else model
    loss_fn = training_loss(0.1)  # the trial's own loss, as the recipes smooth it
    autocast = autocast_for(args.precision, CPU)
    order = torch.randperm(len(images))

    def step(i: int) -> None:
        idx = order[i * args.batch_size:(i + 1) * args.batch_size]
        training_step(forward, images.index_select(0, idx), data.train.labels.index_select(0, idx), loss_fn, optimizer,
                      autocast)

    for i in range(COLD):  # oneDNN builds its kernels on first use: not a step's time
        step(i)
    start = time.perf_counter()
    for i in range(COLD, args.warm):
        step(i)
    per_step = (time.perf_counter() - start) / (args.warm - COLD)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(args.warm, args.warm + args.steps):
            step(i)
    print(f"{args.model}{' compiled' if args.compile else ''}, batch {args.batch_size}, "
          f"{resolve_precision(args.precision, CPU)}, {args.threads} threads: "
          f"{1000 * per_step:.2f} ms per step unprofiled (steps {COLD}-{args.warm}); profiled over {args.steps} steps:")
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.rows]:
        shapes = ", ".join(str(list(s)) for s in e.input_shapes if s)[:60]
        print(f"{100 * e.self_cpu_time_total / total:5.1f}%  {e.self_cpu_time_total / args.steps / 1000:6.3f} ms/step  "
              f"{e.key:42s} {shapes}")


if __name__ == "__main__":
    main()
