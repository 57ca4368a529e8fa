"""The Python API for notebooks: run an experiment, read its results as a table, write its report."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import Callable

from .report.analysis import ConfigSummary, ThroughputRow, summarize
from .errors import ResultsMissing
from .run.executors import EXECUTORS
from .run.experiments import Experiment, load_experiment
from .core.inference import InferenceResult
from .run.runner import RunEvent, RunSummary, run_experiment
from .run.store import ResultStore

DEFAULT_RESULTS = Path("mnistbench-results")


@dataclass
class SummaryRow:
    """One line of the recap table, in the notebook's columns plus the spread over seeds."""

    configuration: str
    optimizer: str
    batchnorm: bool
    schedule: str
    batch_size: int
    n: int
    reached: int
    accuracy_mean: float | None
    accuracy_std: float | None
    accuracy_ci95: float | None
    time_to_target_mean_s: float | None
    time_to_target_std_s: float | None
    time_to_target_ci95_s: float | None
    epochs_to_target_mean: float | None
    statuses: str


def _row(s: ConfigSummary) -> SummaryRow:
    return SummaryRow(
        configuration=s.label, optimizer=s.optimizer_name, batchnorm=s.batchnorm,
        schedule=s.spec.schedule if s.spec.schedule != "constant" else "-", batch_size=s.spec.batch_size,
        n=s.n, reached=s.reached, accuracy_mean=s.accuracy.mean, accuracy_std=s.accuracy.std,
        accuracy_ci95=s.accuracy.ci95, time_to_target_mean_s=s.time_to_target.mean,
        time_to_target_std_s=s.time_to_target.std, time_to_target_ci95_s=s.time_to_target.ci95,
        epochs_to_target_mean=s.epochs_to_target.mean,
        statuses=", ".join(f"{k} {v}" for k, v in sorted(s.status_counts.items())))


@dataclass
class Results:
    """An experiment's stored trials, summarized per configuration."""

    experiment: str
    summaries: list[ConfigSummary]
    inference: list[tuple[str, InferenceResult]]
    planned: int  # trials the experiment defines (phase one, stored seeds), to tell a partial result
    run_summary: RunSummary | None = None  # what the `run` that returned these results did

    @property
    def rows(self) -> list[SummaryRow]:
        return [_row(s) for s in self.summaries]

    @property
    def throughput(self) -> list[ThroughputRow]:
        """Inference per configuration and batch size: mean (and std) over the seeds' trained models."""
        groups: dict[tuple[str, int], list[InferenceResult]] = {}
        for label, inf in self.inference:
            groups.setdefault((label, inf.batch_size), []).append(inf)
        return [ThroughputRow(label, bs, fmean(i.images_per_second for i in infs), fmean(i.ms_per_image for i in infs),
                              len(infs), stdev(i.images_per_second for i in infs) if len(infs) > 1 else None)
                for (label, bs), infs in groups.items()]

    @property
    def trials(self):
        return [r for s in self.summaries for r in s.results]

    @property
    def partial(self) -> bool:
        return len(self.trials) < self.planned

    def to_pandas(self):
        import pandas as pd  # optional: only for those who want a DataFrame

        return pd.DataFrame([asdict(r) for r in self.rows])

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.rows], indent=1)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        rows = [asdict(r) for r in self.rows]
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def load_results(experiment: str, results_dir: Path | str = DEFAULT_RESULTS) -> Results:
    store = ResultStore(results_dir, readonly=True)
    try:
        stored = list(store.trials(experiment))
        if not stored:
            known = ", ".join(store.experiments()) or "none"
            raise ResultsMissing(f"no results for experiment '{experiment}' in {results_dir}",
                                 f"run `mnistbench run {experiment}` first (stored experiments: {known})")
        definition = store.definition(experiment)
        exp = Experiment(**{k: v for k, v in definition.items() if k != "seeds_requested"}) if definition else None
        if exp is not None:  # the experiment's own order, not the order trials happened to finish in
            order = {c.label: i for i, c in enumerate(exp.configs())}
            stored.sort(key=lambda s: (order.get(s.label, len(order)), s.result.spec.seed))
        labels = {s.result.spec.config_key(): s.label for s in stored}
        summaries = summarize([s.result for s in stored], labels)
        inference = [(label, InferenceResult.from_dict(d)) for label, d in store.inference(experiment)]
        return Results(experiment, summaries, inference, _planned(exp, definition, len(stored)))
    finally:
        store.close()


def _planned(exp: Experiment | None, definition: dict | None, stored: int) -> int:
    """How many trials the last run asked for (phase one of a two-phase study counts as its whole)."""
    if exp is None or exp.select:
        return stored
    return len(exp.trials(definition.get("seeds_requested")))


def run(experiment: str | Experiment, seeds: int | None = None, results_dir: Path | str = DEFAULT_RESULTS,
        executor: str = "local", workers: int = 1, address: str | None = None, rerun: bool = False,
        on_event: Callable[[RunEvent], None] | None = None, progress=None, keep_models: bool = False) -> Results:
    """Run (or resume) an experiment and return its results table. `keep_models` keeps each trial run now
    in RESULTS/models/, with its spec, for `predict` and `export_model`."""
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    store = ResultStore(results_dir)
    try:
        backend = EXECUTORS.get(executor).build(workers=workers, address=address, progress=progress)
        summary: RunSummary = run_experiment(exp, store, backend, seeds, rerun, on_event, keep_models=keep_models)
    finally:
        store.close()
    try:
        results = load_results(exp.name, results_dir)
    except ResultsMissing:  # nothing stored yet: every trial is being run by another process
        results = Results(exp.name, [], [], len(exp.trials(seeds)))
    results.run_summary = summary
    return results


def write_report(experiment: str, results_dir: Path | str = DEFAULT_RESULTS, out: Path | str | None = None):
    """Report of the stored results of `experiment` into `out` (default: RESULTS/EXPERIMENT-report)."""
    from .report.render import write_report as render

    res = load_results(experiment, results_dir)
    out = Path(out) if out else Path(results_dir) / f"{experiment}-report"
    return render(experiment, res.trials, out, {s.key: s.label for s in res.summaries}, res.throughput, res.partial)


# Taking models and results out (interop/): predict, export a model, per-trial tables, MLflow / TensorBoard.

def predict(model: str | Path, images: list[Path | str], top: int = 1, results_dir: Path | str = DEFAULT_RESULTS,
            arch: str | None = None, dataset: str | None = None):
    """Class probabilities for PNG / JPEG / IDX images. `model` is a checkpoint path or EXPERIMENT:LABEL[:SEED]
    (kept by `run --keep-models`); `arch` names the model of a bare state_dict; `dataset` checks the match."""
    from .interop.models import resolve_model
    from .interop.predict import predict as run_predict

    saved = resolve_model(str(model), results_dir, arch, dataset)
    return run_predict(saved, [Path(p) for p in images], top, dataset)


def export_model(model: str | Path, fmt: str = "onnx", out: Path | str | None = None,
                 results_dir: Path | str = DEFAULT_RESULTS, arch: str | None = None) -> Path:
    """Write a trained model as ONNX or a torch.export .pt2 program (dynamic batch); returns the file."""
    from .interop.export import export_model as run_export
    from .interop.models import resolve_model

    return run_export(resolve_model(str(model), results_dir, arch), fmt, Path(out) if out else None)


def trial_rows(experiment: str | None = None, results_dir: Path | str = DEFAULT_RESULTS) -> list[dict]:
    """One row per stored trial (all experiments when None), spec and environment flattened into columns."""
    from .interop.tables import trial_row

    return [trial_row(name, label, r) for name in _names(experiment, results_dir)
            for label, r in _labelled(load_results(name, results_dir))]


def export_results(experiment: str, to: str, target=None, results_dir: Path | str = DEFAULT_RESULTS):
    """Every stored trial of `experiment` into MLflow (target: tracking URI) or TensorBoard (target: folder,
    default RESULTS/tensorboard). Exporting again adds nothing that is already there."""
    from .interop.destinations import DESTINATIONS, default_target

    destination = DESTINATIONS.get(to)
    target = target if target is not None else default_target(to, results_dir)
    return destination.export(experiment, _labelled(load_results(experiment, results_dir)), target)


def _labelled(results: Results) -> list[tuple[str, object]]:
    return [(s.label, r) for s in results.summaries for r in s.results]


def _names(experiment: str | None, results_dir: Path | str) -> list[str]:
    if experiment is not None:
        return [experiment]
    store = ResultStore(results_dir, readonly=True)
    try:
        return store.experiments()
    finally:
        store.close()
