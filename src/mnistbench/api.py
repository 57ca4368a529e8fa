"""The Python API for notebooks: run an experiment, read its results as a table, write its report."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean, stdev
from typing import Callable

from .report.analysis import ConfigSummary, ThroughputRow, mix_text, revision_text, summarize
from .errors import BadInput, ConfigError, ResultsMissing
from pydantic import ValidationError
from .run.executors import EXECUTORS
from .run.experiments import Experiment, load_experiment
from .core.inference import InferenceResult
from .core.spec import TrialSpec
from .data.datasets import Layout
from .run.runner import RunEvent, RunSummary, planned_trials, run_experiment
from .run.store import ResultStore, StoredTrial

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
    environment: str = ""  # "mixed: threads 1, 2" when the trials come from different environments
    revisions: str = ""  # the code revisions the trials ran, "6152a2c6db84, 5750aec13ed7+dirty"


def _row(s: ConfigSummary) -> SummaryRow:
    return SummaryRow(
        configuration=s.label, optimizer=s.optimizer_name, batchnorm=s.batchnorm,
        schedule=s.spec.schedule if s.spec.schedule != "constant" else "-", batch_size=s.spec.batch_size,
        n=s.n, reached=s.reached, accuracy_mean=s.accuracy.mean, accuracy_std=s.accuracy.std,
        accuracy_ci95=s.accuracy.ci95, time_to_target_mean_s=s.time_to_target.mean,
        time_to_target_std_s=s.time_to_target.std, time_to_target_ci95_s=s.time_to_target.ci95,
        epochs_to_target_mean=s.epochs_to_target.mean,
        statuses=", ".join(f"{k} {v}" for k, v in sorted(s.status_counts.items())),
        environment=f"mixed: {mix_text(s.environment_mix)}" if s.environment_mix else "",
        revisions=", ".join(s.revisions))


@dataclass
class AttemptRow:
    """One stored attempt of a trial, for the history (`results --all-attempts`)."""

    configuration: str
    seed: int
    attempt: int
    state: str  # current | superseded (a later attempt finished) | earlier (a later one is current, none finished)
    status: str
    final_accuracy: float | None
    time_to_target_s: float | None
    finished: float  # seconds since the epoch
    revision: str


def _attempt_row(s: StoredTrial) -> AttemptRow:
    r = s.result
    state = "current" if s.current else "superseded" if s.superseded else "not current"
    return AttemptRow(s.label, r.spec.seed, s.attempt, state, r.status, r.final_accuracy, r.time_to_target_s,
                      s.finished, revision_text(r))


@dataclass
class Results:
    """An experiment's stored trials, summarized per configuration."""

    experiment: str
    summaries: list[ConfigSummary]
    inference: list[tuple[str, InferenceResult]]
    planned: int  # trials the experiment's current definition asks for (both phases of a two-phase study)
    run_summary: RunSummary | None = None  # what the `run` that returned these results did
    missing: int | None = None  # planned trials with nothing stored (None: the definition is unknown)
    undefined: list[ConfigSummary] = field(default_factory=list)  # stored, no longer in the definition
    attempts: list[AttemptRow] = field(default_factory=list)  # every attempt, when asked for the history
    definition: Experiment | None = None  # the current definition (a tuned one feeds the report's profiles)

    @property
    def rows(self) -> list[SummaryRow]:
        return [_row(s) for s in self.summaries]

    @property
    def reported(self) -> list[ConfigSummary]:
        """The configurations compared: every one, or in a tuned study the search's choices rerun on held-out
        seeds (the search points are the tuning table's; workloads.tuning.beyond_search)."""
        from .workloads.tuning import beyond_search

        return beyond_search(self.summaries, self.definition)

    @property
    def reported_rows(self) -> list[SummaryRow]:
        return [_row(s) for s in self.reported]

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
        return bool(self.missing) if self.missing is not None else len(self.trials) < self.planned

    def to_pandas(self):
        import pandas as pd  # optional: only for those who want a DataFrame

        return pd.DataFrame([asdict(r) for r in self.rows])

    def to_json(self) -> str:
        return rows_as("json", [asdict(r) for r in self.rows])

    def to_csv(self) -> str:
        return rows_as("csv", [asdict(r) for r in self.rows])


def rows_as(fmt: str, rows: list[dict]) -> str:
    """Table rows as CSV (a header from the first row's keys) or indented JSON."""
    if fmt == "json":
        return json.dumps(rows, indent=1)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _current_definition(experiment: str | Experiment, store: ResultStore) -> tuple[str, Experiment | None, int | None]:
    """The experiment's name, its current definition and the seeds its last stored run asked for. An
    Experiment or a TOML file is its own current definition; a bare name means the definition its last
    `run` stored (a file edited since is read by passing the file)."""
    if isinstance(experiment, str) and (experiment.endswith(".toml") or Path(experiment).is_file()):
        experiment = load_experiment(experiment)
    name = experiment.name if isinstance(experiment, Experiment) else experiment
    stored, seeds, spec_defaults = store.last_run(name)
    if isinstance(experiment, Experiment):
        return name, experiment, seeds
    if not stored:
        return name, None, seeds
    today = TrialSpec.field_defaults()  # a default changed since the run: the run's own value still applies
    drift = {k: v for k, v in spec_defaults.items() if k in today and today[k] != v}
    return name, Experiment(**stored, spec_defaults=drift), seeds


def load_results(experiment: str | Experiment, results_dir: Path | str = DEFAULT_RESULTS, seeds: int | None = None,
                 all_attempts: bool = False) -> Results:
    """Stored results of an experiment, for its current definition: trials of configurations it no longer
    defines are set apart (`undefined`), and planned trials not yet stored make the result `partial`.
    Each trial counts by its latest finished attempt; `all_attempts` also lists every attempt."""
    store = ResultStore(results_dir, readonly=True)
    try:
        name, exp, seeds_run = _current_definition(experiment, store)
        stored = list(store.trials(name))
        if not stored:
            known = ", ".join(store.experiments()) or "none"
            raise ResultsMissing(f"no results for experiment '{name}' in {results_dir}",
                                 f"run `mnistbench run {name}` first (stored experiments: {known})")
        gone: list[StoredTrial] = []
        missing = None
        planned = len(stored)
        if exp is not None:
            plan = planned_trials(exp, store, seeds or seeds_run)
            defined = {spec.config_key() for _, spec in plan}
            gone = [s for s in stored if s.result.spec.config_key() not in defined]
            stored = [s for s in stored if s.result.spec.config_key() in defined]
            present = {s.result.spec.id for s in stored}
            missing, planned = sum(spec.id not in present for _, spec in plan), len(plan)
            # the experiment's own order, not the order trials happened to finish in
            order = {c.label: i for i, c in enumerate(exp.configs())}
            stored.sort(key=lambda s: (order.get(s.label, len(order)), s.result.spec.seed))
        summaries = _summaries(stored)
        labels = {s.label for s in summaries}
        inference = [(label, InferenceResult.from_dict(d)) for label, d in store.inference(name) if label in labels]
        attempts = [_attempt_row(s) for s in store.trials(name, all_attempts=True)] if all_attempts else []
        return Results(name, summaries, inference, planned, missing=missing, undefined=_summaries(gone),
                       attempts=attempts, definition=exp)
    finally:
        store.close()


def load_across(experiment: str | Experiment, results_dirs: list[Path | str]):
    """One experiment read from several stores, each trial kept with its machine (report/across.py): a
    configuration's trials pool across stores within one environment, and environments are set side by side.
    Each store is read for its own current definition, as `load_results` reads it."""
    from .report.across import group_across

    if len({Path(d).resolve() for d in results_dirs}) < len(results_dirs):
        raise BadInput("the same results folder was given twice", "give each --results folder once")
    loaded = [(str(d), load_results(experiment, d)) for d in results_dirs]
    across = group_across(loaded[0][1].experiment, [(name, [(s.key, s.label, r) for s in res.summaries
                                                             for r in s.results]) for name, res in loaded])
    across.partial_stores = [name for name, res in loaded if res.partial]
    return across


def _summaries(stored: list[StoredTrial]) -> list[ConfigSummary]:
    labels = {s.result.spec.config_key(): s.label for s in stored}
    return summarize([s.result for s in stored], labels)


def stored_experiments(results_dir: Path | str = DEFAULT_RESULTS) -> list[str]:
    """Names of the experiments with results in `results_dir` (none when the folder has no store)."""
    store = ResultStore(results_dir, readonly=True)
    try:
        return store.experiments()
    finally:
        store.close()


def check(specs: list[TrialSpec], outputs: list[Path | str | None] = (), fetch_data: bool = True
          ) -> dict[str, Layout]:
    """Everything the trials need, checked before the first starts (see run/preflight.py); BadInput if not.
    Returns each dataset's layout."""
    from .run.preflight import check_trials

    return check_trials(specs, [Path(o) for o in outputs if o is not None], fetch_data)


@dataclass
class Plan:
    """What `run` would do: the trials in order, each with an estimated duration on `device`."""

    experiment: Experiment
    trials: list[tuple[str, TrialSpec]]
    estimates_s: list[float]
    device: str
    reruns_s: list[float] = field(default_factory=list)  # a tuned study's reruns of its winners (stand-ins)


def plan(experiment: str | Experiment, seeds: int | None = None) -> Plan:
    """The trials of an experiment and their estimated time, measured on the device that will run them.
    Side-effect free: nothing is downloaded, cached or stored."""
    from .run.estimate import estimate_device, estimate_seconds

    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    trials = exp.trials(seeds)
    specs = [spec for _, spec in trials]
    check(specs, fetch_data=False)
    reruns = []
    if exp.protocol:  # the winners are not known yet, but the cost of their reruns is
        from .workloads.tuning import planned_reruns

        reruns = estimate_seconds([spec for _, spec in planned_reruns(exp, seeds)])
    return Plan(exp, trials, estimate_seconds(specs), estimate_device(specs), reruns)


def run(experiment: str | Experiment, seeds: int | None = None, results_dir: Path | str = DEFAULT_RESULTS,
        executor: str = "local", workers: int = 1, address: str | None = None, rerun: bool = False,
        on_event: Callable[[RunEvent], None] | None = None, progress=None, keep_models: bool = False,
        max_seeds: int | None = None) -> Results:
    """Run (or resume) an experiment and return its results table. `keep_models` keeps each trial run now
    in RESULTS/models/, with its spec, for `predict` and `export_model`. `max_seeds`: add seeds in rounds, only
    to configurations in an undecided comparison, until every comparison is decided or each has `max_seeds`
    (report/sequential.py; `run --until-decided`)."""
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    if max_seeds is not None:
        exp = until_decided(exp, max_seeds, seeds)
    trials = exp.trials(exp.sequential.max_seeds if exp.sequential else seeds)
    check([spec for _, spec in trials])  # bad input stops here, before a store or a trial
    _refuse_oversubscription([spec for _, spec in trials], executor, workers)
    store = ResultStore(results_dir)
    try:
        backend = EXECUTORS.get(executor).build(workers=workers, address=address, progress=progress)
        summary: RunSummary = run_experiment(exp, store, backend, seeds, rerun, on_event, keep_models=keep_models)
        if exp.sequential:
            _add_seeds_until_decided(exp, store, backend, on_event, summary, keep_models)
    finally:
        store.close()
    try:
        results = load_results(exp, results_dir, seeds)
    except ResultsMissing:  # nothing stored yet: every trial is being run by another process
        results = Results(exp.name, [], [], len(exp.trials(seeds)))
    results.run_summary = summary
    return results


def _refuse_oversubscription(specs: list[TrialSpec], executor: str, workers: int) -> None:
    """Local workers whose specs fix their threads must fit the cores: 2 workers x 2 threads on 2 cores time
    each other's trials, and the stored thread count would look like a solo run's."""
    from .core.hardware import usable_cores

    fixed = max((s.threads or 0 for s in specs), default=0)
    cores = usable_cores()
    if executor == "local" and workers > 1 and fixed * workers > cores:
        raise BadInput(f"--workers {workers} x threads {fixed} = {fixed * workers} threads on {cores} usable cores: "
                       "the trials would share cores and slow each other's clocks",
                       f"use --workers {max(1, cores // fixed)}, or leave threads unset so each worker gets a share")


def _redefined(exp: Experiment, source: str, **update) -> Experiment:
    """The experiment with top-level fields replaced, validated again as a file would be (ValidationError)."""
    return Experiment(**{**exp.model_dump(mode="json", exclude={"source"}), **update, "source": source})


def with_overrides(exp: Experiment, overrides: dict) -> Experiment:
    """The experiment with `overrides` (spec field -> value) over every configuration's fields (`run --set`),
    validated like the file: an unknown field or a bad value is one ConfigError before anything runs."""
    source = f"{exp.source or exp.name} with --set {', '.join(f'{k}={v}' for k, v in overrides.items())}"
    try:
        return _redefined(exp, source, overrides={**exp.overrides, **overrides})
    except ValidationError as exc:
        from .core.spec import describe_validation_error

        raise ConfigError(describe_validation_error(exc, where=f"{source}: ")) from None


def until_decided(exp: Experiment, max_seeds: int, seeds: int | None = None) -> Experiment:
    """The experiment with a sequential block: first look at `seeds` (or the file's), at most `max_seeds`."""
    if exp.protocol:
        raise BadInput(f"--until-decided compares fixed configurations; '{exp.name}' makes a choice first "
                       "([tuning] or [select])", "give its reruns more seeds with --seeds instead")
    sequential = {**(exp.sequential.model_dump() if exp.sequential else {}), "max_seeds": max_seeds,
                  "start": seeds or exp.seeds}
    try:
        return _redefined(exp, exp.source, sequential=sequential)
    except ValidationError as exc:
        raise BadInput(f"--max-seeds {max_seeds}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
                       "give a --max-seeds above the seeds of the first look") from None


def _add_seeds_until_decided(exp: Experiment, store: ResultStore, backend, on_event, summary: RunSummary,
                             keep_models: bool) -> None:
    """Looks after the first: replay the sequence on what is stored, run the seeds the next look needs for the
    configurations still in an open comparison, and again, until the replay ends (report/sequential.py)."""
    from .report.sequential import replay
    from .run.phases import run_phase

    seq = exp.sequential
    labels = {spec.config_key(): label for label, spec in exp.trials(1)}
    while True:
        stored = [s.result for s in store.trials(exp.name)]
        record = replay(stored, seq.start or exp.seeds, seq.max_seeds, seq.step, labels, exp.questions)
        if record.finished:
            return
        # The seeds this look adds (the earlier looks' are stored and counted already), for the open configurations.
        added = record.looks[-1][0] if record.looks else 0
        todo = [(label, spec) for label, spec in exp.trials(record.next_seeds)
                if spec.config_key() in record.next_configs and spec.seed >= added]
        ran = summary.ran
        run_phase(f"until decided: {record.next_seeds} seeds", exp, todo, store, backend, False, on_event, summary,
                  keep_models)
        if summary.ran == ran:  # another process holds them, or they keep failing: stop, a later run resumes
            return


def write_report(experiment: str | Experiment, results_dir: Path | str = DEFAULT_RESULTS,
                 out: Path | str | None = None, allow_mixed: bool = False):
    """Report of the stored results of `experiment` into `out` (default: RESULTS/EXPERIMENT-report).
    Time differences are not tested across mixed environments unless `allow_mixed`."""
    from .report.render import write_report as render

    res = load_results(experiment, results_dir)
    out = Path(out) if out else Path(results_dir) / f"{res.experiment}-report"
    return render(res.experiment, res.trials, out, {s.key: s.label for s in res.summaries}, res.throughput,
                  res.partial, undefined=res.undefined, allow_mixed=allow_mixed, definition=res.definition)


# Taking models and results out (interop/): predict, export a model, per-trial tables, MLflow / TensorBoard.

def predict(model: str | Path, images: list[Path | str], top: int = 1, results_dir: Path | str = DEFAULT_RESULTS,
            arch: str | None = None, dataset: str | None = None):
    """Class probabilities for PNG / JPEG / IDX images. `model` is a checkpoint path or EXPERIMENT:LABEL[:SEED]
    (kept by `run --keep-models`); `arch` names the model of a bare state_dict; `dataset` checks the match."""
    from .interop.lookup import resolve_model
    from .interop.predict import predict as run_predict

    saved = resolve_model(str(model), results_dir, arch, dataset)
    return run_predict(saved, [Path(p) for p in images], top, dataset)


def export_model(model: str | Path, fmt: str = "onnx", out: Path | str | None = None,
                 results_dir: Path | str = DEFAULT_RESULTS, arch: str | None = None) -> Path:
    """Write a trained model as ONNX or a torch.export .pt2 program (dynamic batch); returns the file."""
    from .interop.export import export_model as run_export
    from .interop.lookup import resolve_model

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
    return [experiment] if experiment is not None else stored_experiments(results_dir)
