"""What a speedrun training step costs with the dense layer reading channels-last maps as they lie
(`MapsLinear`: model speedrun-nhwc) or through nn.Flatten, which copies them into (channels, rows, columns)
order and their gradient back (speedrun-lean: the same function for a seed), and with the label-smoothed loss
as torch computes it or as one soft-target cross-entropy (`SmoothedCrossEntropy`). The trial's own step
(`training_step`: autocast, fused Adam over the trainable weights) on the trial's in-memory images, at the
record's two batch sizes (256, and 512 once its batch grows); variants alternate within each round so that drift
on a shared machine hits them all.

    python benchmarks/speedrun_step.py --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from mnistbench import load
from mnistbench.core.environment import describe
from mnistbench.core.hardware import keep_freed_memory, resolve_precision
from mnistbench.core.models import build_model
from mnistbench.core.recipes import make_optimizer
from mnistbench.core.trial import autocast_for, input_dtype, prepare_split, training_loss, training_step

CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant and round")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    data = load("mnist")
    images = prepare_split(data.train, CPU, True, input_dtype(args.precision, CPU))
    autocast = autocast_for(args.precision, CPU)
    torch_smoothing, ours = nn.CrossEntropyLoss(label_smoothing=0.1), training_loss(0.1)
    variants = {}
    for name, loss in (("speedrun-lean", torch_smoothing), ("speedrun-nhwc", torch_smoothing),
                       ("speedrun-nhwc", ours)):
        torch.manual_seed(0)  # the same function for a seed (tested)
        model = build_model(name).to(memory_format=torch.channels_last)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer("adam", trainable, 0.001, {"betas": [0.7, 0.9], "fused": True})
        variants[f"{name} ({'nn.Flatten + Linear' if name == 'speedrun-lean' else 'MapsLinear'}), "
                 f"{'SmoothedCrossEntropy' if loss is ours else 'torch label smoothing'}"] = (model, optimizer, loss)
    sizes = (256, 512)
    times = {(name, size): [] for name in variants for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            x, y = images.images[:size], images.labels[:size]
            for name, (model, optimizer, loss) in variants.items():
                for _ in range(5):  # untimed: this shape's kernels and buffers
                    training_step(model, x, y, loss, optimizer, autocast)
                start = time.perf_counter()
                for _ in range(args.steps):
                    training_step(model, x, y, loss, optimizer, autocast)
                times[name, size].append((time.perf_counter() - start) / args.steps)
    print(f"# {describe()['cpu']}, {args.threads} threads, torch {torch.__version__}, "
          f"{resolve_precision(args.precision, CPU)}; medians of {args.rounds} interleaved rounds of "
          f"{args.steps} steps")
    first = next(iter(variants))
    for size in sizes:
        base = statistics.median(times[first, size])
        for name in variants:
            median = statistics.median(times[name, size])
            print(f"batch {size:4d}  {name:62s} {median * 1e3:6.3f} ms a step ({base / median:.3f}x the first)")


if __name__ == "__main__":
    main()
