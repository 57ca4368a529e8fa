"""Print the README's reference table from the stored results, so its numbers are never copied by hand.

    python docs/reference/recap.py            # from the repository root, in the project's environment
    python docs/reference/recap.py --reports  # and regenerate each store's report.html / report.md beside it
    python docs/reference/recap.py --optimizers [--reports]   # the `optimizers` study's table and profiles
    python docs/reference/recap.py --optimizers-2026 [--reports]   # the same for `optimizers-2026`

Columns: the notebook's own (approximate, single-run) accuracies, then mean ± std over seeds of each store
under docs/reference/ (the 2-core CPU and the H200), as `mnistbench results` computes them.
"""

from __future__ import annotations

from pathlib import Path

import sys

from mnistbench.api import load_results, write_report
from mnistbench.report.analysis import ConfigSummary, describe_stat
from mnistbench.run.experiments import load_experiment

HERE = Path(__file__).parent
STORES = {"2-core CPU": HERE / "seed-cpu", "H200": HERE / "seed-h200"}
CURRENT = {"2-core CPU"}  # stores measured with today's `seed` definition; the others with the one they ran under
STUDIES = {"optimizers": HERE / "optimizers-cpu", "optimizers-2026": HERE / "optimizers-2026-cpu"}  # tuned studies


def measured_definition(name: str):
    """The `seed` experiment as the store `name` ran it. The H200 store predates the speed defaults: its trials
    trained NCHW and evaluated in batches of 2,000, where today's `seed` leaves both to the measured defaults
    (channels-last, 250 on a CPU), which makes a configuration of its own; so it is read with the definition it
    was measured under. The CPU store was regenerated with today's definition."""
    seed = load_experiment("seed")
    if name in CURRENT:
        return seed
    return seed.model_copy(update={"defaults": {**seed.defaults, "channels_last": False, "eval_batch_size": 2000}})

# The notebook's summary table, as it prints it ("~" values; its "SGD + BN" row is never run by its code).
NOTEBOOK = {
    "SimpleCNN + SGD": ("Baseline: SimpleCNN + SGD", "~98.5%"),
    "OptimizedCNN + SGD": ("SGD + BN: OptimizedCNN + SGD", "~99.0%"),
    "SimpleCNN + Adam": ("Adam: SimpleCNN + Adam", "~99.2%"),
    "OptimizedCNN + Adam": ("Adam + BN: OptimizedCNN + Adam", "~99.3%"),
    "OptimizedCNN + Adam + LR Scheduler": ("Adam + BN + LR: + StepLR(3, 0.5), lr 0.002", "~99.4%"),
}


def _cells(s: ConfigSummary | None, with_epochs: bool) -> list[str]:
    if s is None:
        return ["", "", ""] if with_epochs else ["", ""]
    cells = [describe_stat(s.accuracy, "accuracy"), describe_stat(s.time_to_target, "time_to_target")]
    return cells + [f"{s.epochs_to_target.mean:.2f}"] if with_epochs else cells


def tuned_study(name: str) -> None:
    """A tuned study's techniques (as the report's table) and each one's performance profile at a few factors."""
    from mnistbench.report.profiles import performance_profile, tuned_configs, tuning_row

    store = STUDIES[name]
    if "--reports" in sys.argv:
        write_report(name, store, out=store)
    res = load_results(name, store)
    configs = tuned_configs(res.definition, res.trials)
    header = ["Technique", "Workload (target)", "Chosen", "Validation accuracy (search)", "Test accuracy (± 95% CI)",
              "Median time to target", "Reached", "Tuning trials", "Tuning cost"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    table = [tuning_row(c) for c in configs]
    for row in table:
        print("| " + " | ".join(vars(row).values()) + " |")
    # The README's summary: one row per technique, each workload's rate, test accuracy and median time side by side.
    rows: dict[str, dict[str, object]] = {}
    shown: dict[str, str] = {}  # workload -> its name with its target, "mnist (97%)"
    for c, row in zip(configs, table):
        rows.setdefault(c.technique, {})[c.workload] = row
        shown.setdefault(c.workload, row.workload)
    print("\n| Technique | " + " | ".join(f"{w}: lr, test accuracy (± 95% CI), median time to target" for w in shown.values())
          + " |")
    print("|" + "---|" * (len(shown) + 1))
    for technique, by_workload in rows.items():
        cells = [f"{r.chosen.removeprefix('lr ')}, {r.accuracy}, {r.time}" if (r := by_workload.get(w)) else ""
                 for w in shown]
        print(f"| {technique} | " + " | ".join(cells) + " |")
    times: dict[str, dict[str, float]] = {}
    for c in configs:
        times.setdefault(c.technique, {})[c.workload] = c.time
    taus = [1.0, 1.25, 1.5, 2.0, 4.0]
    print("\n| Technique | " + " | ".join(f"τ = {t:g}" for t in taus) + " |")
    print("|" + "---|" * (len(taus) + 1))
    for technique, rho in performance_profile(times, taus).items():
        print(f"| {technique} | " + " | ".join(f"{r:.0%}" for r in rho) + " |")


def main() -> None:
    for name in STUDIES:
        if f"--{name}" in sys.argv:
            return tuned_study(name)
    if "--reports" in sys.argv:  # regenerate each store's report (the statistics of this code) beside it
        for name, path in STORES.items():
            write_report(measured_definition(name), path, out=path)
    stores = {name: {s.label: s for s in load_results(measured_definition(name), path).summaries}
              for name, path in STORES.items()}
    first = next(iter(stores.values()))
    header = ["Configuration", "notebook: test accuracy"]
    for i, (name, by_label) in enumerate(stores.items()):
        seeds = max(s.n for s in by_label.values())
        header += [f"{name} ({seeds} seed{'s' * (seeds > 1)}): accuracy", "time to 97%"]
        header += ["epochs to 97%"] if i == 0 else []
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, summary in first.items():
        name, notebook = NOTEBOOK.get(label, (f"{label} ({summary.spec.epochs:g} epochs)", ""))
        cells = [name, notebook]
        for i, by_label in enumerate(stores.values()):
            cells += _cells(by_label.get(label), with_epochs=i == 0)
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
