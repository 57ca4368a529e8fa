"""`mnistbench run`, `results` and `report`: experiments, their stored results, and the report."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import BadInput
from .console import console, table

ResultsDir = typer.Option(Path("mnistbench-results"), "--results", help="Results folder (one SQLite store).")


def _fmt(mean, spread, scale=1.0, unit="", digits=2):
    if mean is None:
        return "-"
    text = f"{mean * scale:.{digits}f}{unit}"
    return text if spread is None or math.isnan(spread) else f"{text} ± {spread * scale:.{digits}f}"


def _time_header(targets: set[float]) -> str:
    """"Time to 97%" over one target; "Time to target" when workloads bring targets of their own."""
    from ..report.analysis import targets_text

    return f"Time to {targets_text(targets)}"


def print_results(results) -> None:
    reported = results.reported
    probes = len(results.summaries) - len(reported)
    time_header = _time_header({s.spec.target for s in reported})
    rows = [(r.configuration, r.optimizer, "✓" if r.batchnorm else "✗", r.schedule, r.batch_size,
             _fmt(r.accuracy_mean, r.accuracy_std, 100, "%"), _fmt(r.time_to_target_mean_s, r.time_to_target_std_s,
                                                                    unit=" s"),
             _fmt(r.epochs_to_target_mean, None), f"{r.reached}/{r.n}", r.statuses) for r in results.reported_rows]
    title = (f"{results.experiment}: mean ± std over seeds" + (", the search's choices rerun on held-out seeds"
                                                              if probes else "")
             + (" (PARTIAL: some trials missing)" if results.partial else ""))
    console.print(table(title, ["Configuration", "Optimizer", "BatchNorm", "LR schedule", "Batch", "Test accuracy",
                                time_header, "Epochs to target", "Reached", "Status"], rows))
    if probes:
        console.print(f"{probes} search points (one seed each, judged on the validation split) are left out: "
                      f"`mnistbench report {results.experiment}` has them in its tuning table", highlight=False)
    print_provenance(results)
    if results.inference:
        console.print(table("inference (test set): mean ± std over the trained models",
                            ["Configuration", "Batch", "Models", "images / s", "ms / image"],
                            [(r.label, r.batch_size, r.seeds, r.images_per_second_text, f"{r.ms_per_image:.4f}")
                             for r in results.throughput]))


def print_provenance(results) -> None:
    """Code revisions per configuration, the mixed-environment mark, and stored configurations the
    experiment no longer defines (kept apart from the table above)."""
    console.print(table("code and environment per configuration", ["Configuration", "Code revisions", "Environment"],
                        [(r.configuration, r.revisions, f"[yellow]{r.environment}[/yellow]" if r.environment
                          else "one environment") for r in results.reported_rows]))
    if any(r.environment for r in results.reported_rows):
        console.print("mixed environment: times from different machines, thread counts, torch versions, "
                      "precisions or allocator settings; the report does not test them against each other unless "
                      "--allow-mixed",
                      highlight=False)
    if results.undefined:
        console.print(table("stored but no longer defined (left out above)", ["Configuration", "Trials"],
                            [(s.label, s.n) for s in results.undefined]))


def print_attempts(results) -> None:
    fmt_time = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t))  # noqa: E731
    console.print(table(f"{results.experiment}: every attempt", ["Configuration", "Seed", "Attempt", "State",
                                                                 "Status", "Test accuracy", "Time to target",
                                                                 "Stored", "Revision"],
                        [(a.configuration, a.seed, a.attempt, a.state, a.status, _fmt(a.final_accuracy, None, 100, "%"),
                          _fmt(a.time_to_target_s, None, unit=" s"), fmt_time(a.finished), a.revision)
                         for a in results.attempts]))


def run(
    experiment: str = typer.Argument(..., help="a built-in name (`mnistbench list experiments`) or a TOML file"),
    seeds: Optional[int] = typer.Option(None, min=1, help="seeds per configuration (default: the file's)"),
    results_dir: Path = ResultsDir,
    dry_run: bool = typer.Option(False, "--dry-run", help="list the trials and an estimated time; run nothing"),
    rerun: bool = typer.Option(False, "--rerun", help="run again trials that are already stored"),
    executor: str = typer.Option("local", help="local or ray"),
    workers: int = typer.Option(1, min=1, help="local process pool size (CPU threads are shared among workers)"),
    address: Optional[str] = typer.Option(None, help="address of an existing Ray cluster"),
    keep_models: bool = typer.Option(False, "--keep-models", help="keep each trained model (with its spec) in "
                                     "RESULTS/models/ for predict and export; stored trials are not rerun for it"),
    until_decided: bool = typer.Option(False, "--until-decided", help="after the first --seeds, add a seed at a "
                                       "time to configurations in an undecided comparison, keeping the report's "
                                       "5% family-wise error, until all are decided or --max-seeds"),
    max_seeds: Optional[int] = typer.Option(None, "--max-seeds", min=2, help="with --until-decided: the most "
                                            "seeds a configuration gets"),
    overrides: list[str] = typer.Option([], "--set", metavar="FIELD=VALUE", help="a trial field for every "
                                        "configuration, over the file's (repeatable): --set precision=auto"),
    live_tensorboard: Optional[Path] = typer.Option(None, "--live-tensorboard", metavar="DIR", help="write each "
                                                    "trial's curve to TensorBoard as it trains (watch with "
                                                    "`tensorboard --logdir DIR`; in-process runs)"),
):
    """Run an experiment, resuming: trials already stored are skipped."""
    from .. import api
    from .progress import TrialBar, live_bars

    if overrides:
        from .train import parse_assignments

        experiment = api.with_overrides(api.load_experiment(experiment), parse_assignments(overrides, "--set"))
    if dry_run:
        plan = api.plan(experiment, seeds)  # three measured steps per distinct model/batch/precision
        exp, trials, estimates = plan.experiment, plan.trials, plan.estimates_s
        console.print(table(f"{exp.name}: {len(trials)} trials" + (" (phase one; the best are then rerun with "
                                                                   "held-out seeds)" if exp.protocol else ""),
                            ["#", "configuration", "seed", "model", "optimizer", "lr", "schedule", "batch",
                             "budget", "est. time"],
                            [(i + 1, label, s.seed, s.model, s.optimizer, s.lr, s.schedule, s.batch_size,
                              f"{s.steps} steps" if s.steps else f"{s.epochs:g} epochs", f"{est / 60:.1f} min")
                             for i, ((label, s), est) in enumerate(zip(trials, estimates))]))
        if plan.reruns_s:
            console.print(f"then each group's winner is rerun with every held-out seed on the test set: "
                          f"{len(plan.reruns_s)} trials, about {sum(plan.reruns_s) / 60:.1f} min", highlight=False)
        total = sum(estimates) + sum(plan.reruns_s)
        console.print(f"estimated total: {total / 60:.1f} min on {plan.device} "
                      "(from 3 measured steps per model; evaluation included)", highlight=False)
        return
    if live_tensorboard is not None and (executor != "local" or workers > 1):
        raise BadInput("--live-tensorboard follows trials run in this process", "leave out --workers and --executor")
    if until_decided != (max_seeds is not None):
        raise BadInput("--until-decided and --max-seeds go together", "give both, e.g. --until-decided --max-seeds 8")
    exp = experiment if not isinstance(experiment, str) else api.load_experiment(experiment)
    if until_decided:
        exp = api.until_decided(exp, max_seeds, seeds)
    started = time.perf_counter()
    with live_bars() as bars:
        overall = {}

        def on_event(event):
            if event.output is None:
                msg = (f"{exp.name} ({event.phase}): {event.total} trials to run, {event.skipped} already stored"
                       + (f", {event.held_elsewhere} being run by another process" if event.held_elsewhere else ""))
                console.print(msg, highlight=False)
                if bars is not None:
                    overall["task"] = bars.add_task(f"{exp.name} trials", total=event.total, info="")
                return
            r = event.output.result
            line = (f"[{event.done}/{event.total}] {event.output.job.label} seed {r.spec.seed}: {r.status}, "
                    f"accuracy {r.final_accuracy if r.final_accuracy is not None else float('nan'):.4f}, "
                    f"time to target {'-' if r.time_to_target_s is None else f'{r.time_to_target_s:.1f} s'}")
            console.print(line, highlight=False)
            if r.error and r.status != "failed":  # trained fine, but a step after training did not
                console.print(f"  [yellow]note:[/yellow] {r.error}", highlight=False)
            if bars is not None:
                bars.update(overall["task"], completed=event.done)

        bar_for = (lambda job: TrialBar(bars, f"{job.label} (seed {job.spec.seed})")) if executor == "local" else None
        with contextlib.ExitStack() as stack:
            if live_tensorboard is not None:
                from ..interop.live import LiveTensorBoard

                live = stack.enter_context(LiveTensorBoard(live_tensorboard, exp.name))
                bar_for = _both(bar_for, live.for_job)
            results = api.run(exp, seeds, results_dir, executor, workers, address, rerun, on_event, bar_for,
                              keep_models=keep_models)
    summary = results.run_summary
    console.print(f"ran {summary.ran} trials in {time.perf_counter() - started:.0f} s; "
                  f"{summary.skipped} were already stored", highlight=False)
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} failed[/red] (stored with their error; rerun to retry): "
                      + escape(", ".join(summary.failed)))
    if summary.held_elsewhere:
        console.print(f"{summary.held_elsewhere} trials are being run by another process; "
                      "run again later to pick up any it leaves")
    print_results(results)


def _both(first, second):
    """Two progress-callback factories as one: each job's callbacks both see every evaluation."""
    def factory(job):
        callbacks = [c for c in (first(job) if first else None, second(job)) if c is not None]

        def each(progress) -> None:
            for callback in callbacks:
                callback(progress)

        return each

    return factory


def results(
    experiment: Optional[str] = typer.Argument(None, help="experiment name (its last run's definition) or TOML "
                                               "file (its current one); all stored experiments when omitted"),
    results_dirs: list[Path] = typer.Option([Path("mnistbench-results")], "--results",
                                            help="Results folder; repeat it to read several stores side by side, "
                                            "each trial kept with its machine"),
    fmt: str = typer.Option("table", "--format", help="table, csv, json or parquet (one row per trial)"),
    per_trial: bool = typer.Option(False, "--per-trial", help="csv / json: one row per trial, spec flattened"),
    out: Optional[Path] = typer.Option(None, "--out", help="parquet: the file (default RESULTS/EXPERIMENT.parquet)"),
    all_attempts: bool = typer.Option(False, "--all-attempts", help="also list every stored attempt of each "
                                      "trial (reruns and retries), not only the latest finished one"),
):
    """The recap table (mean and spread over seeds), or a CSV / JSON / Parquet export."""
    from .. import api
    from ..errors import BadInput

    if fmt not in ("table", "csv", "json", "parquet"):
        raise BadInput(f"unknown format '{fmt}'", "use table, csv, json or parquet")
    if len(results_dirs) > 1:
        return _results_across(experiment, results_dirs, fmt, per_trial or fmt == "parquet" or all_attempts)
    results_dir = results_dirs[0]
    if per_trial or fmt == "parquet":
        from ..interop import tables

        if fmt == "table":
            raise BadInput("--per-trial needs --format csv, json or parquet", "add --format csv")
        rows = api.trial_rows(experiment, results_dir)
        if fmt == "parquet":
            path = tables.write_parquet(rows, out or Path(results_dir) / f"{experiment or 'results'}.parquet")
            console.print(f"{len(rows)} trials written to {path}", highlight=False)
        else:
            typer.echo(tables.to_csv(rows) if fmt == "csv" else tables.to_json(rows))
        return
    names = api.stored_experiments(results_dir) if experiment is None else [experiment]
    for name in names:
        res = api.load_results(name, results_dir, all_attempts=all_attempts)
        if fmt == "table":
            print_results(res)
            if all_attempts:
                print_attempts(res)
        else:
            typer.echo(res.to_csv() if fmt == "csv" else res.to_json())


def _results_across(experiment: str | None, results_dirs: list[Path], fmt: str, per_trial: bool) -> None:
    """`results --results A --results B`: one experiment over several stores, one row per configuration and
    environment (report/across.py)."""
    from dataclasses import asdict

    from .. import api
    from ..errors import BadInput

    if experiment is None:
        raise BadInput("several --results folders need an experiment name", "add the experiment, e.g. "
                       "`mnistbench results seed --results A --results B`")
    if per_trial:
        raise BadInput("--per-trial, parquet and --all-attempts read one store at a time",
                       "give a single --results folder")
    across = api.load_across(experiment, results_dirs)
    rows = across.rows
    if fmt != "table":
        typer.echo(api.rows_as(fmt, [asdict(r) for r in rows]))
        return
    time_header = _time_header({g.results[0].spec.target for g in across.groups})
    console.print(table(f"{across.experiment} across {len(across.stores)} stores: mean ± std over seeds, one row "
                        "per configuration and environment",
                        ["Configuration", "Environment", "From", "Seeds", "Test accuracy", time_header,
                         "Reached", "ms / step", "vs first"],
                        [(r.configuration, r.environment, r.stores, r.n, _fmt(r.accuracy_mean, r.accuracy_std, 100,
                                                                                "%"),
                          _fmt(r.time_to_target_mean_s, r.time_to_target_std_s, unit=" s"), f"{r.reached}/{r.n}",
                          _fmt(r.ms_per_step, None, digits=1), _fmt(r.step_time_ratio, None, unit="x"))
                         for r in rows]))
    console.print("Trials of one configuration pool across stores only within one environment (machine, threads, "
                  "torch, allocator); 'vs first' is ms per step against the configuration's first environment.",
                  highlight=False)
    if across.duplicates:
        console.print(f"{across.duplicates} trials found in more than one store were counted once", highlight=False)
    if across.partial_stores:
        console.print(f"PARTIAL: {', '.join(across.partial_stores)} miss trials of their definition", highlight=False)


def report(
    experiment: str = typer.Argument(..., help="experiment name"),
    results_dir: Path = ResultsDir,
    out: Optional[Path] = typer.Option(None, help="output folder (default: RESULTS/EXPERIMENT-report)"),
    allow_mixed: bool = typer.Option(False, "--allow-mixed", help="test time differences even between trials "
                                     "from different machines, thread counts, torch versions, precisions or "
                                     "allocator settings"),
):
    """Write report.html (self-contained), report.md and the figures."""
    from ..api import write_report

    paths = write_report(experiment, results_dir, out, allow_mixed)
    console.print(f"report written: {paths.html}")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("results")(results)
    app.command("report")(report)
