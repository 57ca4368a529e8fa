"""The CPU speedrun: training to 99% mean test accuracy on MNIST, as fast as a 2-core CPU allows.

A run = model creation (with its data-dependent initialisation, where the model has one) + training + the final
test evaluation (what TrialResult.wall_seconds measures).
Loading the data into normalized tensors is excluded and printed on its own line. The recipes come from the
built-in `speedrun` experiment: the record recipe, the previous record (re-timed in every run: a new record
must beat it here, on this machine, not in an old log), and the plain port of tuomaso/train_mnist_fast (the
GPU record's model and optimizer settings, in the same precision, channels-last and in-memory tensors) as the
reference. One untimed warm-up run each (oneDNN builds its kernels on first use), then seeds alternate
between the recipes so that drift on a shared machine hits them all.

Choosing the budget (`--choose`): the record recipe trained on the training set less a 10,000-image validation
split, with the tuning seeds 0-9 only, for each candidate number of steps; the shortest whose mean *validation*
accuracy is at or above 99% with one-sided p < 0.05 is the budget, copied into the experiment (`steps = N` in
speedrun.toml). The test set and the held-out seeds play no part in it. Reporting: the figures come from
held-out seeds (1000 onwards by default), never used for a choice: mean test accuracy with its 95% Student-t
interval, the one-sided p-value that the mean is at or above 99% (the rule the NanoGPT speedrun applies to its
records: a record needs p < 0.01), and how many seeds reach 99%. Beside the seconds, the FLOPs of a run
(`run_flops`: forward and backward of every step, the final evaluation with its votes) and the physical limit
on this machine, those FLOPs at the matmul peak measured in the run: a figure that does not depend on the
machine, so records on different CPUs compare.
`--only speedrun` measures the record recipe alone (its accuracy claim) without the others. `--records FILE`
appends the run's row to the records table (docs/reference/speedrun-cpu/RECORDS.md), from a clean checkout only.
`--precision fp32` runs every recipe (and `--choose`) in fp32 where `auto` would pick bf16: the recipe both ways on
one CPU (no row is appended from such a run).

    python benchmarks/speedrun.py --choose --budgets 100,115,133,150
    python benchmarks/speedrun.py --seeds 50 --records docs/reference/speedrun-cpu/RECORDS.md --log NAME.log
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from peak import matmul_peak  # noqa: E402

from mnistbench import load, run_trial  # noqa: E402
from mnistbench.core.environment import describe  # noqa: E402
from mnistbench.run.experiments import load_experiment  # noqa: E402
from mnistbench.core.models import flops_per_image, step_flops_per_image  # noqa: E402


TUNING_SEEDS = range(10)  # the seeds the speedrun's budget is chosen on (`--choose`): never reported
CLAIM = 0.99  # the mean test accuracy a record claims, at p < RECORD_P
RECORD_P = 0.01
CHOOSE_P = 0.05  # the budget's claim on the tuning seeds' validation accuracy (`--choose`), the same test
N_TRAIN, N_TEST = 60_000, 10_000  # MNIST's: every run trains on the first and ends with one evaluation of the second
PREVIOUS = "speedrun of "  # the previous record's label in the speedrun experiment: "speedrun of <its date>"
RECORDS_HEADER = ("| date | commit | CPU | precision | time per run, mean s | FLOPs of a run | at peak s | "
                  "mean test accuracy | p (mean >= 99%) | held-out seeds | previous record, same run | log |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval."""
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / n ** 0.5 if n > 1 else float("nan")
    return statistics.fmean(values), half


def p_at_least(accuracies: list[float], claim: float = CLAIM) -> float:
    """One-sided p-value of the claim that the mean accuracy is at or above `claim` (H0: mean <= claim). Seeds
    that all agree leave no spread for the t-test (SciPy gives NaN): the claim then holds exactly when they are
    above it."""
    if len(set(accuracies)) == 1:
        return 0.0 if accuracies[0] > claim else 1.0
    return float(stats.ttest_1samp(accuracies, claim, alternative="greater").pvalue)


def run_flops(result) -> tuple[float, float]:
    """What a run computed, training and evaluation: forward and backward of every step (each layer's backward
    only for what needs a gradient: a frozen first conv has none), and the final test evaluation, where the
    images that translation votes read again count once more per translation (as many as the model says it voted
    on)."""
    spec, model = result.spec, result.model
    per_epoch = -(-N_TRAIN // spec.batch_size)  # the epoch's last batch is smaller
    images = result.steps // per_epoch * N_TRAIN + min(result.steps % per_epoch * spec.batch_size, N_TRAIN)
    trained = step_flops_per_image(model) * images
    views = getattr(model, "seen", 0) + len(getattr(model, "shifts", ())) * getattr(model, "revoted", 0)
    return trained, flops_per_image(model) * (views or N_TEST)


def mean_run_flops(results: list) -> float:
    return statistics.fmean(sum(run_flops(r)) for r in results)


def append_record(path: Path, label: str, results: list, peak: float, log: str, previous: str) -> None:
    """One row of the records table, from this run's held-out seeds; `previous` says how the previous record
    did when re-timed in the same run."""
    env = describe()
    if env.get("git_dirty") is not False:
        sys.exit("--records: the working tree is not a clean commit; a record names the code it ran")
    accs = [r.final_accuracy for r in results]
    acc, half = mean_ci95(accs)
    p = p_at_least(accs)
    flops = mean_run_flops(results)
    row = (f"| {datetime.date.today()} | {env['git_revision'][:7]} | {env['cpu']}, {env['usable_cores']} cores | "
           f"{results[0].environment['precision']} | {statistics.fmean(r.wall_seconds for r in results):.3f} | "
           f"{flops / 1e12:.3f} TFLOP | {flops / peak:.3f} | {acc:.3%} ± {100 * half:.2f} | {p:.2g}"
           f"{'' if p < RECORD_P else ' (not a record: p >= 0.01)'} | {len(results)} | {previous} | `{log}` |\n")
    text = path.read_text() if path.exists() else RECORDS_HEADER
    path.write_text(text + row)
    print(f"appended to {path}: {label}")


def choose_budget(spec, budgets: list[int], val_size: int) -> None:
    """The shortest budget (in steps) whose mean validation accuracy over the tuning seeds is at or above the
    target with one-sided p < CHOOSE_P: the record's own claim, at a level ten seeds can reach. A mean merely at
    or above the target (the rule before 2026-12-02) let through a budget whose held-out mean then missed the
    claim (99.010% on validation; p = 0.011 on the held-out seeds, RECORDS.md). The p is honest only for a
    recipe not picked on these same seeds: after an exploration on them it is optimistic (the second attempt's
    0.024 became 0.16 on held-out seeds)."""
    data = load("mnist", val_size=val_size)
    print(f"choosing on a validation split of {val_size} training images, tuning seeds "
          f"{TUNING_SEEDS.start}-{TUNING_SEEDS.stop - 1}; the test set is not read")
    chosen = None
    for steps in sorted(budgets):
        accs = []
        for seed in TUNING_SEEDS:
            trial = spec.model_copy(update={"steps": steps, "epochs": None, "seed": seed, "eval_on": "val",
                                            "val_size": val_size, "eval_every": 0})
            r = run_trial(trial, data)
            last = r.curve[-1]
            assert last.step == r.steps, "the last evaluation must be the end of training"
            accs.append(last.eval_accuracy)
            print(f"  {steps} steps seed {seed}: validation accuracy {last.eval_accuracy:.4f} "
                  f"({r.environment['precision']})", flush=True)
        acc, half = mean_ci95(accs)
        p = p_at_least(accs, spec.target)
        print(f"{steps} steps: mean validation accuracy {acc:.3%} ± {100 * half:.2f} (95% CI), p (mean >= "
              f"{spec.target:.0%}) = {p:.2g}, {sum(a >= spec.target for a in accs)}/{len(accs)} seeds at or above "
              f"{spec.target:.0%}", flush=True)
        if chosen is None and p < CHOOSE_P:
            chosen = steps
    print(f"chosen: steps = {chosen}" if chosen else
          f"no candidate's mean reached {spec.target:.0%} with p < {CHOOSE_P}: try longer budgets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="held-out seeds to report on")
    parser.add_argument("--first-seed", type=int, default=1000, help="the first held-out seed")
    parser.add_argument("--only", help="measure this recipe alone (e.g. speedrun), without the reference")
    parser.add_argument("--choose", action="store_true", help="choose the record recipe's budget (see above)")
    parser.add_argument("--budgets", default="100,115,133,150", help="--choose: candidate budgets in steps")
    parser.add_argument("--val-size", type=int, default=10_000, help="--choose: validation images")
    parser.add_argument("--records", type=Path, help="append the record recipe's row to this table")
    parser.add_argument("--log", default="", help="--records: the log file this run's output is kept in")
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="every recipe in this precision instead of "
                        "the experiment's `auto` (to measure a recipe both ways on a CPU with native bf16)")
    args = parser.parse_args()
    held_out = range(args.first_seed, args.first_seed + args.seeds)
    if set(held_out) & set(TUNING_SEEDS):
        parser.error(f"seeds {held_out.start}-{held_out.stop - 1} overlap the tuning seeds 0-9: pick --first-seed >= 10")

    recipes = dict(load_experiment("speedrun").trials(1))  # label -> spec (seed 0)
    if args.precision and args.records:
        parser.error("--records: a record runs the recipes as the experiment sets them (precision auto); "
                     "drop --precision")
    if args.precision:
        recipes = {label: spec.model_copy(update={"precision": args.precision}) for label, spec in recipes.items()}
    if args.choose:
        return choose_budget(recipes["speedrun"], [int(b) for b in args.budgets.split(",")], args.val_size)
    if args.only and args.records:
        parser.error("--records: a record is measured beside the previous record and the plain port; drop --only")
    previous = [label for label in recipes if label.startswith(PREVIOUS)]
    if args.records and len(previous) != 1:
        parser.error(f"--records: the speedrun experiment needs one config labelled '{PREVIOUS}<date>', the previous "
                     f"record, to time beside the new one (it has: {', '.join(recipes)})")
    previous = previous[0] if previous else None
    if args.only:
        if args.only not in recipes:
            parser.error(f"--only: no recipe '{args.only}' (recipes: {', '.join(recipes)})")
        recipes = {args.only: recipes[args.only]}
    data = load("mnist")
    print(f"data: {len(data.train)} + {len(data.test)} images loaded into tensors in {data.load_seconds:.2f} s "
          f"(excluded from every run)")
    for label, spec in recipes.items():
        warm = run_trial(spec.model_copy(update={"seed": 10_000}), data)
        print(f"warm-up {label}: {warm.wall_seconds:.2f} s (excluded)")

    runs: dict[str, list] = {label: [] for label in recipes}
    for seed in held_out:
        for label, spec in recipes.items():
            r = run_trial(spec.model_copy(update={"seed": seed}), data)
            runs[label].append(r)
            print(f"seed {seed:2d}  {label:32s} {r.wall_seconds:6.3f} s  test accuracy {r.final_accuracy:.4f}",
                  flush=True)

    device = next(iter(runs.values()))[0].device
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    peaks = {p: matmul_peak(dtypes[p], device) for p in {r[0].environment["precision"] for r in runs.values()}}
    print(f"\n{args.seeds} held-out seeds ({held_out.start}-{held_out.stop - 1}; the budget is chosen on seeds "
          f"{TUNING_SEEDS.start}-{TUNING_SEEDS.stop - 1}, not reported) on {device}, {torch.get_num_threads()} CPU "
          f"threads; matmul peak measured: " + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()))
    print(f"{'recipe':32s} {'prec.':>5s} {'mean s':>7s} {'min':>6s} {'max':>6s} {'mean acc ± 95% CI':>18s} "
          f"{'p(>=99%)':>9s} {'>= 99%':>7s} {'TFLOP':>6s} {'at peak s':>9s} {'% of peak':>9s}")
    for label, results in runs.items():
        precision = results[0].environment["precision"]
        peak = peaks[precision]
        times = [r.wall_seconds for r in results]
        accs = [r.final_accuracy for r in results]
        flops = mean_run_flops(results)
        share = statistics.fmean(run_flops(r)[0] / r.train_seconds for r in results) / peak  # while training
        acc, half = mean_ci95(accs)
        print(f"{label:32s} {precision:>5s} {statistics.fmean(times):7.3f} {min(times):6.3f} {max(times):6.3f} "
              f"{acc:9.2%} ± {100 * half:.2f} {p_at_least(accs):9.2g} {sum(a >= CLAIM for a in accs):4d}/"
              f"{len(accs):<3d}{flops / 1e12:6.3f} {flops / peak:9.3f} {share:9.1%}")
    first, *others = runs
    mean = {label: statistics.fmean(r.wall_seconds for r in results) for label, results in runs.items()}
    for other in others:  # the plain port is the reference; the previous record is what a new record must beat
        print(f"speed-up of {first} over {other}: {mean[other] / mean[first]:.2f}x")
    if args.records:
        append_record(args.records, first, runs[first], peaks[runs[first][0].environment["precision"]], args.log,
                      f"{mean[previous]:.3f} s ({mean[previous] / mean[first]:.2f}x)")


if __name__ == "__main__":
    main()
