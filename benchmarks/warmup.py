"""Does the first trial of a process pay for the kernels? The same spec run 5 times in one process.

Every trial warms up untimed on a throwaway copy of its model before the clock starts (core/trial.py), so
the first run's per-step time should not stand out from the others beyond their spread. `--cold` turns the
warm-up off (in this process only) to show what it removes: the first run then carries oneDNN/cuDNN kernel
creation and allocator growth inside its clock.

    PYTHONPATH=src python benchmarks/warmup.py [--model seed-simple] [--steps 60] [--runs 5] [--cold]
"""

from __future__ import annotations

import argparse
import statistics

from mnistbench import load, make_spec, run_trial
from mnistbench.core import trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", default="seed-simple")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cold", action="store_true", help="skip the warm-up, to see what it removes")
    args = parser.parse_args()

    if args.cold:
        trial._warm_up = lambda *a, **k: 0.0
    data = load(args.dataset)  # once, before anything is timed
    spec = make_spec(dataset=args.dataset, model=args.model, optimizer=args.optimizer, lr=args.lr,
                     batch_size=args.batch_size, steps=args.steps, eval_every=0, threads=args.threads,
                     device=args.device, target=1.0)
    print(f"{args.model} + {args.optimizer}, batch {args.batch_size}, {args.steps} steps, "
          f"warm-up {'off' if args.cold else 'on'}", flush=True)
    per_step = []
    for run in range(1, args.runs + 1):
        result = run_trial(spec, data)
        per_step.append(result.train_seconds / result.steps)
        print(f"run {run}: {1000 * per_step[-1]:8.2f} ms/step   warm-up {result.warmup_seconds:6.3f} s   "
              f"({result.device}, {result.environment.get('torch_threads')} threads)", flush=True)
    rest = per_step[1:]
    mean, spread = statistics.mean(rest), (statistics.stdev(rest) if len(rest) > 1 else 0.0)
    low, high = min(rest), max(rest)
    first = per_step[0]
    verdict = "within" if low - spread <= first <= high + spread else "OUTSIDE"
    print(f"runs 2-{args.runs}: {1000 * mean:.2f} ms/step ± {1000 * spread:.2f} (range {1000 * low:.2f}-"
          f"{1000 * high:.2f}); run 1: {1000 * first:.2f} ms/step = {first / mean:.3f}x, {verdict} their spread")


if __name__ == "__main__":
    main()
