"""Run an experiment: plan its trials, skip those already stored, claim the rest, dispatch them to an
executor, and write each result to the store the moment it arrives."""

from __future__ import annotations

from functools import partial
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .executors import Executor
from .experiments import Experiment
from .jobs import Job, JobOutput
from ..core.spec import TrialSpec
from .store import ResultStore
from ..interop.models import forget_others as forget_other_models, keep as keep_model


@dataclass
class RunEvent:
    """Sent to the caller after planning (output None) and after each stored trial."""

    phase: str
    done: int
    total: int
    skipped: int
    held_elsewhere: int
    output: JobOutput | None = None


@dataclass
class RunSummary:
    ran: int = 0
    skipped: int = 0
    held_elsewhere: int = 0
    failed: list[str] = field(default_factory=list)


def _select_winners(experiment: Experiment, store: ResultStore, seeds: int) -> list[tuple[str, TrialSpec]]:
    """Per group, the configuration with the best final accuracy on the held-out split (the last
    evaluation, which is on `eval_on`), rerun with every seed."""
    select = experiment.select
    phase_one = {spec.id for _, spec in experiment.trials()}
    best: dict[tuple, tuple[float, TrialSpec]] = {}
    for stored in store.trials(experiment.name):
        r = stored.result
        if r.spec.id not in phase_one or not r.curve or r.status == "diverged":
            continue
        key = tuple(str(getattr(r.spec, f)) for f in select.group_by)
        score = r.curve[-1].eval_accuracy
        if key not in best or score > best[key][0]:
            best[key] = (score, r.spec)
    return [(select.label.format(group=" + ".join(key)), spec.model_copy(update={"seed": s}))
            for key, (_, spec) in sorted(best.items()) for s in range(seeds)]


def planned_trials(experiment: Experiment, store: ResultStore, seeds: int | None = None) -> list[tuple[str, TrialSpec]]:
    """Every trial the experiment's definition asks for: phase one, and for a two-phase study the winners
    rerun with every seed as chosen from what phase one stored so far (provisional until phase one is done)."""
    planned = experiment.trials(seeds)
    if experiment.tuning:
        from ..workloads.protocol import tuned_winners

        planned += tuned_winners(experiment, store, seeds)
    if experiment.select:
        winners = _select_winners(experiment, store, seeds or experiment.seeds)
        planned += [(label, spec) for label, spec in winners if spec.id not in {s.id for _, s in planned}]
    return planned


def run_experiment(experiment: Experiment, store: ResultStore, executor: Executor, seeds: int | None = None,
                   rerun: bool = False, on_event: Callable[[RunEvent], None] | None = None,
                   keep_models: bool = False) -> RunSummary:
    store.save_experiment(experiment.name, experiment.model_dump(mode="json"), seeds or experiment.seeds,
                          TrialSpec.field_defaults())
    summary = RunSummary()
    try:
        if experiment.tuning:  # a search per configuration, then its best point with every seed
            from ..workloads.protocol import run_tuned

            run_tuned(experiment, store, executor, seeds, rerun, on_event, summary,
                      partial(_run_phase, keep_models=keep_models))
            return summary
        _run_phase("train", experiment, experiment.trials(seeds), store, executor, rerun, on_event, summary,
                   keep_models)
        if experiment.select:
            winners = _select_winners(experiment, store, seeds or experiment.seeds)
            for label, spec in winners:  # a winner's first seed was run in phase one: give it its new name
                store.relabel(experiment.name, spec.id, label)
            _run_phase("rerun best", experiment, winners, store, executor, rerun, on_event, summary, keep_models)
    finally:
        store.release_claims()
    return summary


def _run_phase(phase: str, experiment: Experiment, planned: list[tuple[str, TrialSpec]], store: ResultStore,
               executor: Executor, rerun: bool, on_event, summary: RunSummary, keep_models: bool = False) -> None:
    name = experiment.name
    inference = {i.config: i for i in experiment.inference}
    finished = set() if rerun else store.finished_ids(name)
    todo = [(label, spec) for label, spec in planned if spec.id not in finished]
    skipped = len(planned) - len(todo)
    claimed = 0

    def jobs() -> Iterator[Job]:
        # Claimed one at a time, as the executor asks for work: an in-process run takes a trial just before
        # training it, so two processes on one folder share the experiment instead of the first taking all.
        nonlocal claimed
        for label, spec in todo:
            if store.claim(name, spec.id, force=rerun):
                claimed += 1
                yield Job(label, spec, inference.get(label), keep_model=keep_models)

    summary.skipped += skipped
    if on_event:
        on_event(RunEvent(phase, 0, len(todo), skipped, 0))
    for done, output in enumerate(executor.run(jobs()), start=1):
        model = None
        if output.model_file is not None:  # the file is whole on disk before the row that names it commits
            model = keep_model(store.folder, name, output.result.spec.id, output.model_file)
        store.add_trial(name, output.job.label, output.result, output.inference, model)
        if model is not None:
            forget_other_models(store.folder, model[0])
        summary.ran += 1
        if output.result.status == "failed":
            summary.failed.append(output.job.label)
        if on_event:
            on_event(RunEvent(phase, done, len(todo), skipped, 0, output))
    summary.held_elsewhere += len(todo) - claimed
