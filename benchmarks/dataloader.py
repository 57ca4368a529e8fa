"""The notebook's input pipeline against mnistbench's trainer: same model, same recipe, same steps.

(a) the notebook's way: a torchvision-style Dataset that turns each image into a PIL image, then a
    normalized tensor (ToTensor + Normalize), through a DataLoader (batch 128, shuffle, num_workers=0);
(b) mnistbench's run_trial: tensors normalized once, in memory, a fresh permutation each epoch;
(c) the same with channels-last memory layout (still fp32; oneDNN's pooling and convolutions prefer it).

Both train seed-simple with SGD (lr 0.01, momentum 0.9) in fp32 for the same number of steps; only the
training steps are timed (no evaluation on either side). Rounds alternate (a) and (b) so drift on a shared
machine hits both. Prints images/s for each, their ratio, and the share of the measured fp32 matmul peak.
Both sides run with the allocator setting every trial makes (core.hardware.keep_freed_memory, set up front:
it is process-wide), so the comparison is of the input pipelines alone; `benchmarks/allocator.py` measures
the setting, and `benchmarks/mainjob.py` the notebook's code as a notebook runs it.

    python benchmarks/dataloader.py --steps 100 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from mainjob import NotebookMNIST  # noqa: E402  the notebook's per-sample pipeline, one copy
from peak import matmul_peak  # noqa: E402

from mnistbench import load, make_spec, run_trial  # noqa: E402
from mnistbench.core.hardware import keep_freed_memory  # noqa: E402
from mnistbench.data import fetch, read_pair  # noqa: E402
from mnistbench.data.sources import find_in_folder  # noqa: E402
from mnistbench.core.models import build_model, step_flops_per_image  # noqa: E402


def notebook_way(dataset: Dataset, steps: int, seed: int) -> float:
    """Timed seconds for `steps` training steps, the notebook's loop verbatim (minus its evaluation)."""
    torch.manual_seed(seed)
    model = build_model("seed-simple")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=0)
    model.train()
    done, start = 0, time.perf_counter()
    while done < steps:
        for data, target in loader:
            optimizer.zero_grad()
            loss = criterion(model(data), target)
            loss.backward()
            optimizer.step()
            loss.item()  # the notebook's running_loss += loss.item()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start


def mnistbench_way(data, steps: int, seed: int, channels_last: bool = False) -> float:
    spec = make_spec(model="seed-simple", optimizer="sgd", lr=0.01, optimizer_args={"momentum": 0.9},
                     batch_size=128, steps=steps, eval_every=0, seed=seed, channels_last=channels_last)
    return run_trial(spec, data).train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # for both sides from the first round on (run_trial would set it after round 1)

    paths = find_in_folder(fetch("mnist").folder)
    dataset = NotebookMNIST(*read_pair(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"]))
    data = load("mnist")
    images = args.steps * 128
    ways = {"notebook": lambda seed: notebook_way(dataset, args.steps, seed),
            "mnistbench": lambda seed: mnistbench_way(data, args.steps, seed),
            "mnistbench channels-last": lambda seed: mnistbench_way(data, args.steps, seed, channels_last=True)}
    speeds: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(args.rounds):
        for name, way in ways.items():
            speeds[name].append(images / way(r))
        print(f"round {r + 1}: " + "   ".join(f"{name} {v[-1]:6.0f} img/s" for name, v in speeds.items()), flush=True)

    peak = matmul_peak(torch.float32)
    train_flops = step_flops_per_image(build_model("seed-simple"))  # forward + backward (inputs, weights)
    base = statistics.median(speeds["notebook"])
    print(f"\nseed-simple, SGD lr 0.01 momentum 0.9, batch 128, fp32, {args.steps} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads; medians over rounds")
    print(f"{'':26s} {'images/s':>9s} {'vs notebook':>12s} {'share of fp32 matmul peak':>27s}")
    for name, v in speeds.items():
        m = statistics.median(v)
        print(f"{name:26s} {m:9.0f} {m / base:11.2f}x {m * train_flops / peak:26.1%}")
    print(f"(fp32 matmul peak measured: {peak / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
