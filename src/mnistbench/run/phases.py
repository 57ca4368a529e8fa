"""One phase of an experiment: skip trials already stored, claim the rest one at a time, dispatch them to an
executor, and write each result to the store the moment it arrives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from .kept import forget_others as forget_other_models, keep as keep_model
from ..core.spec import TrialSpec
from .executors import Executor
from .experiments import Experiment
from .jobs import Job, JobOutput
from .store import ResultStore


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


def run_phase(phase: str, experiment: Experiment, planned: list[tuple[str, TrialSpec]], store: ResultStore,
               executor: Executor, rerun: bool, on_event, summary: RunSummary, keep_models: bool = False) -> None:
    name = experiment.name
    inference = {i.config: i for i in experiment.inference}
    finished = set() if rerun else store.finished_ids(name)
    todo = [(label, spec) for label, spec in planned if spec.id not in finished]
    skipped = len(planned) - len(todo)
    claimed = 0
    sharing: dict[str, int] = {}  # spec id -> other live claims when it was claimed

    def jobs() -> Iterator[Job]:
        # Claimed one at a time, as the executor asks for work: an in-process run takes a trial just before
        # training it, so two processes on one folder share the experiment instead of the first taking all.
        nonlocal claimed
        for label, spec in todo:
            if store.claim(name, spec.id, force=rerun):
                claimed += 1
                sharing[spec.id] = store.live_claims() - 1
                yield Job(label, spec, inference.get(label), keep_model=keep_models)

    summary.skipped += skipped
    if on_event:
        on_event(RunEvent(phase, 0, len(todo), skipped, 0))
    for done, output in enumerate(executor.run(jobs()), start=1):
        # Trials that ran beside this one on the store, at its start or its end (this process's other workers,
        # other `run`s on the folder): an environment factor, so a shared run is not compared with a solo one.
        output.result.environment["shared_with"] = max(sharing.pop(output.result.spec.id, 0),
                                                       store.live_claims() - 1, 0)
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
