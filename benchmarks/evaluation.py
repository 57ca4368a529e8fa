"""What evaluation costs a trial, and what each way of making it cheaper saves: the notebook's two seed
configurations over one epoch (where the target is crossed, so the cadence and the snapshot search do all their
work), each trained once per variant, variants interleaved over rounds so that drift on a shared machine hits
all of them. Prints untimed evaluation seconds and evaluations per trial, and the time to target each variant
reports (a variant may only change its resolution, never which crossing it finds).

Variants:
- whole passes:  every cadence evaluation reads the whole split, and the search reads it in its own order
                 (mnistbench before partial evaluations)
- the hit's order: a cadence evaluation before the target stops once it cannot meet it, reading first the
                 images the evaluations before it missed; the search reads every snapshot in the order of the
                 crossing's evaluation's margins (mnistbench before the search kept each snapshot's margins)
- stopped early: the same, the search reading each snapshot in the order of the last known margins, the
                 snapshot before it's for the images that one read (the default)
- stopped early, 1/N epoch: the default with a coarser snapshot grid (`--coarser N`: a coarser resolution)

    python benchmarks/evaluation.py --rounds 2 --precision fp32
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from unittest import mock

from mnistbench import load, make_spec, run_trial
from mnistbench.core import horizon as horizon_module
from mnistbench.core import trial as trial_module
from mnistbench.core.environment import describe

CONFIGS = {  # the notebook's first two configurations, as `seed` runs them
    "SimpleCNN + SGD": dict(model="seed-simple", optimizer="sgd", lr=0.01, optimizer_args={"momentum": 0.9}),
    "SimpleCNN + Adam": dict(model="seed-simple", optimizer="adam", lr=0.001),
}


@contextlib.contextmanager
def whole_passes():
    """mnistbench before partial evaluations: every pass reads the whole split, in its own order."""
    real = trial_module.evaluate_toward

    def whole(model, split, batch, autocast, target=None, margins=None, order=None):
        return real(model, split, batch, autocast, None, margins)

    with mock.patch.object(trial_module, "evaluate_toward", whole), \
            mock.patch.object(trial_module, "hardest_first", lambda margins: None):
        yield


@contextlib.contextmanager
def the_hits_order():
    """The search's order from the crossing's evaluation alone: no snapshot hands back the margins it read."""
    real = trial_module.meets_target

    def unrecorded(model, split, batch, autocast, target, order=None, margins=None):
        return real(model, split, batch, autocast, target, order)

    with mock.patch.object(trial_module, "meets_target", unrecorded):
        yield


@contextlib.contextmanager
def snapshots_per_epoch(n: int):
    with mock.patch.object(horizon_module, "SNAPSHOTS_PER_EPOCH", n):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "auto"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--coarser", type=int, nargs="*", default=[], help="snapshots per epoch to try")
    args = parser.parse_args()
    variants = {"whole passes": whole_passes, "the hit's order": the_hits_order,
                "stopped early": contextlib.nullcontext}
    variants.update({f"stopped early, 1/{n} epoch": (lambda n=n: snapshots_per_epoch(n)) for n in args.coarser})
    data = load("mnist")
    env = describe()
    print(f"# {env['cpu']}, {env['usable_cores']} cores, torch {env['torch']}, revision {env['git_revision']}; precision {args.precision}; {args.rounds} rounds; seed 0, 1 epoch, target 97%")
    rows: dict[tuple[str, str], list] = {}
    for round_ in range(args.rounds):
        for label, fields in CONFIGS.items():
            for name, variant in variants.items():
                spec = make_spec(**fields, epochs=1, target=0.97, precision=args.precision, threads=args.threads,
                                 seed=0)
                with variant():
                    r = run_trial(spec, data)
                rows.setdefault((label, name), []).append(r)
                print(f"round {round_ + 1} {label} [{name}]: eval {r.eval_seconds:.2f} s over {r.evaluations} "
                      f"evaluations, train {r.train_seconds:.1f} s, to target {r.time_to_target_s} s "
                      f"(resolution {r.target_resolution_steps} steps)", flush=True)
    print(f"\n{'configuration':<18} {'variant':<30} {'eval s (median)':>15} {'evaluations':>11} {'to target s':>11}")
    for (label, name), results in rows.items():
        print(f"{label:<18} {name:<30} {statistics.median(r.eval_seconds for r in results):>15.2f} "
              f"{statistics.median(r.evaluations for r in results):>11.0f} "
              f"{statistics.median(r.time_to_target_s or float('nan') for r in results):>11.2f}")


if __name__ == "__main__":
    main()
