"""The main job, both ways, side by side: for every configuration of the `seed` experiment, the seed
notebook's own pipeline and loop against mnistbench's trial, for the same number of epochs; the notebook in fp32,
as it runs, mnistbench in fp32 or, with --precision auto, in bf16 where the CPU computes it natively.

(a) the notebook's way, as its code runs it: a torchvision-style MNIST Dataset that makes a PIL image of each
    sample, then ToTensor and Normalize((0.1307,), (0.3081,)), through a DataLoader (shuffle, num_workers=0,
    the configuration's batch size; the test set in batches of 1,000); its train_and_evaluate loop verbatim:
    an epoch of training (loss.item() every step), scheduler.step(), then one evaluation of the test set.
    torchvision is not a dependency of mnistbench, so its MNIST dataset and two transforms are reproduced
    here with PIL, numpy and torch, operation for operation (`NotebookMNIST`);
(b) mnistbench's run_trial on the same spec (data in memory as normalized tensors, its layout and evaluation
    defaults, evaluation on its cadence until the target), plus the dry-run estimate of that trial.

The notebook side runs in a fresh child process per configuration, with glibc's default allocator as the
notebook gets it; mnistbench's trial sets its own (`core.hardware.keep_freed_memory`, process-wide and
irreversible, so it must not leak into the notebook's side). `benchmarks/allocator.py` measures that setting
alone; the notebook's code gets it too when started with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647.

Per configuration: seconds of training, of evaluation and of wall (model creation to last evaluation),
the wall ratio notebook / mnistbench, and the share of the measured fp32 matmul peak that each side's training
reaches (3 x forward FLOPs per image). Loading is excluded from both and printed once. The two sides
alternate which goes first from one configuration to the next, so drift on a shared machine hits both.

    python benchmarks/mainjob.py                             # the whole experiment, its own epochs (hours)
    python benchmarks/mainjob.py --epochs 1                  # every configuration cut to one epoch
    python benchmarks/mainjob.py --epochs 0.2 --configs 2    # a few minutes: the first two, a fifth of an epoch
    python benchmarks/mainjob.py --epochs 1 --precision auto # mnistbench in bf16 on AVX-512 BF16 / AMX CPUs
    python benchmarks/mainjob.py --only 6 7 8 --precision auto  # the batch-size study at its own 5 epochs
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from peak import matmul_peak  # noqa: E402

from mnistbench import load, run_trial  # noqa: E402
from mnistbench.core.hardware import resolve_precision  # noqa: E402
from mnistbench.core.models import build_model, step_flops_per_image  # noqa: E402
from mnistbench.core.spec import TrialSpec  # noqa: E402
from mnistbench.data import fetch, read_pair  # noqa: E402
from mnistbench.data.sources import find_in_folder  # noqa: E402
from mnistbench.run.estimate import estimate_seconds  # noqa: E402
from mnistbench.run.experiments import load_experiment  # noqa: E402


class NotebookMNIST(Dataset):
    """torchvision's MNIST with transform=Compose([ToTensor(), Normalize((0.1307,), (0.3081,))]), per sample:
    uint8 tensor -> PIL image (mode L) -> float tensor in [0, 1] (C, H, W) -> (x - mean) / std in fp32."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.data, self.targets = torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
        self.mean, self.std = torch.as_tensor([0.1307]), torch.as_tensor([0.3081])

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img, target = self.data[i], int(self.targets[i])
        with warnings.catch_warnings():  # Pillow deprecates mode=; torchvision still passes it
            warnings.simplefilter("ignore", DeprecationWarning)
            img = Image.fromarray(img.numpy(), mode="L")
        # ToTensor: HWC uint8 array -> CHW float / 255
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(img.size[1], img.size[0], 1)
        x = x.permute((2, 0, 1)).contiguous().to(dtype=torch.get_default_dtype()).div(255)
        # Normalize (not in place): clone, then subtract the mean and divide by the std per channel
        x = x.clone().sub_(self.mean.view(-1, 1, 1)).div_(self.std.view(-1, 1, 1))
        return x, target


def notebook_datasets() -> tuple[NotebookMNIST, NotebookMNIST]:
    paths = find_in_folder(fetch("mnist").folder)
    return (NotebookMNIST(*read_pair(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])),
            NotebookMNIST(*read_pair(paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])))


@dataclass
class Side:
    train_s: float
    eval_s: float
    wall_s: float
    images: int  # images trained on
    accuracy: float


def notebook_way(spec: TrialSpec, train_set: Dataset, test_set: Dataset, epochs: float) -> Side:
    """The notebook's train_and_evaluate for `epochs` (a fraction cuts the last epoch short; the evaluation
    still follows it), with training and evaluation timed apart."""
    wall = time.perf_counter()
    torch.manual_seed(spec.seed)
    model = build_model(spec.model)
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    optimizer = optimizers[spec.optimizer](model.parameters(), lr=spec.lr, **spec.optimizer_args)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, **spec.schedule_args) if spec.schedule == "step"
                 else None)
    criterion = torch.nn.CrossEntropyLoss()
    train_loader = DataLoader(train_set, batch_size=spec.batch_size, shuffle=True, num_workers=0)
    test_loader = DataLoader(test_set, batch_size=1000, shuffle=False, num_workers=0)
    total_steps = round(epochs * len(train_loader))
    train_s = eval_s = 0.0
    step = images = 0
    test_acc = float("nan")
    while step < total_steps:
        start = time.perf_counter()
        model.train()
        running_loss = 0.0
        for data, target in train_loader:
            optimizer.zero_grad()
            output = model(data)
            loss = criterion(output, target)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            step, images = step + 1, images + len(target)
            if step == total_steps:
                break
        if scheduler:
            scheduler.step()
        mid = time.perf_counter()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for data, target in test_loader:
                output = model(data)
                _, predicted = torch.max(output.data, 1)
                total += target.size(0)
                correct += (predicted == target).sum().item()
        test_acc = correct / total
        train_s += mid - start
        eval_s += time.perf_counter() - mid
    return Side(train_s, eval_s, time.perf_counter() - wall, images, test_acc)


def _notebook_child(spec: TrialSpec, epochs: float, threads: int) -> Side:
    torch.set_num_threads(threads)
    return notebook_way(spec, *notebook_datasets(), epochs)


def notebook_way_fresh(spec: TrialSpec, epochs: float) -> Side:
    """notebook_way in a new process: the allocator and oneDNN's caches as a notebook's kernel starts them."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_notebook_child, (spec, epochs, torch.get_num_threads()))


def mnistbench_way(spec: TrialSpec, data) -> Side:
    r = run_trial(spec, data)
    return Side(r.train_seconds, r.eval_seconds, r.wall_seconds, r.steps * spec.batch_size, r.final_accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=None, help="epochs for every configuration "
                        "(default: each configuration's own, as the experiment defines it)")
    parser.add_argument("--configs", type=int, default=None, help="run only the first N configurations")
    parser.add_argument("--only", type=int, nargs="+", default=None, metavar="K",
                        help="run only these configurations, numbered from 1 in the experiment's order "
                        "(6 7 8: the batch-size study)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="fp32", help="mnistbench's side only (fp32, bf16, auto: bf16 where "
                        "the CPU computes it natively); the notebook's side stays fp32, as the notebook runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    trials = load_experiment("seed").trials(1)
    if args.only and not set(args.only) <= set(range(1, len(trials) + 1)):
        parser.error(f"--only takes configuration numbers from 1 to {len(trials)}")
    trials = [t for k, t in enumerate(trials, 1) if not args.only or k in args.only][:args.configs]
    specs = {label: TrialSpec(**{**spec.model_dump(), "seed": args.seed, "threads": args.threads,
                                 "precision": args.precision, **({"epochs": args.epochs} if args.epochs else {})})
             for label, spec in trials}
    notebook_specs = {label: spec.model_copy(update={"precision": "fp32"}) for label, spec in specs.items()}
    start = time.perf_counter()
    notebook_datasets()  # timed once here for the loading line; each child process builds its own
    notebook_load = time.perf_counter() - start
    data = load("mnist")
    print(f"loading (excluded from both): notebook datasets {notebook_load:.2f} s, "
          f"mnistbench tensors {data.load_seconds:.2f} s", flush=True)
    estimates = dict(zip(specs, estimate_seconds(list(specs.values()))))

    rows = {}
    for i, (label, spec) in enumerate(specs.items()):
        ways = [("notebook", lambda: notebook_way_fresh(notebook_specs[label], spec.epochs)),
                ("mnistbench", lambda: mnistbench_way(spec, data))]
        got = {name: way() for name, way in (ways if i % 2 == 0 else ways[::-1])}
        rows[label] = got
        nb, mb = got["notebook"], got["mnistbench"]
        print(f"{label}: notebook {nb.wall_s:.1f} s (train {nb.train_s:.1f}, eval {nb.eval_s:.1f}, "
              f"acc {nb.accuracy:.4f}); mnistbench {mb.wall_s:.1f} s (train {mb.train_s:.1f}, eval {mb.eval_s:.1f}, "
              f"acc {mb.accuracy:.4f}; estimated {estimates[label]:.1f} s)", flush=True)

    peak = matmul_peak(torch.float32)
    resolved = resolve_precision(args.precision, torch.device("cpu"))
    bf16 = f", bf16 {matmul_peak(torch.bfloat16) / 1e9:.0f}" if resolved == "bf16" else ""
    print(f"\nseed experiment, notebook fp32, mnistbench {args.precision}"
          + (f" (resolved to {resolved})" if args.precision == "auto" else "")
          + f", seed {args.seed}, {torch.get_num_threads()} threads, epochs: {args.epochs or 'as defined'}; "
          f"matmul peak measured: fp32 {peak / 1e9:.0f} GFLOP/s{bf16} (% peak below: of fp32)")
    head = (f"{'configuration':40s} {'notebook s: train':>17s} {'eval':>6s} {'wall':>7s} | {'mnistbench s: train':>19s} "
            f"{'eval':>6s} {'wall':>7s} {'est.':>7s} | {'wall ratio':>10s} | {'% peak nb':>9s} {'mb':>6s}")
    print(head)
    totals = np.zeros(6)
    for label, got in rows.items():
        nb, mb = got["notebook"], got["mnistbench"]
        flops = step_flops_per_image(build_model(specs[label].model))
        share = [s.images * flops / s.train_s / peak for s in (nb, mb)]
        print(f"{label:40s} {nb.train_s:17.1f} {nb.eval_s:6.1f} {nb.wall_s:7.1f} | {mb.train_s:19.1f} "
              f"{mb.eval_s:6.1f} {mb.wall_s:7.1f} {estimates[label]:7.1f} | {nb.wall_s / mb.wall_s:9.2f}x | "
              f"{share[0]:9.1%} {share[1]:6.1%}")
        totals += [nb.train_s, nb.eval_s, nb.wall_s, mb.train_s, mb.eval_s, mb.wall_s]
    est = sum(estimates.values())
    print(f"{'total':40s} {totals[0]:17.1f} {totals[1]:6.1f} {totals[2]:7.1f} | {totals[3]:19.1f} "
          f"{totals[4]:6.1f} {totals[5]:7.1f} {est:7.1f} | {totals[2] / totals[5]:9.2f}x |")
    print(f"dry-run estimate / measured mnistbench wall: {est / totals[5]:.2f}")


if __name__ == "__main__":
    main()
