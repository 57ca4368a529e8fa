"""Run an experiment that chooses ([tuning] or [select]): its candidates (on the validation split, hopeless
search trials optionally pruned), then each group's winner, once all its candidates have finished, rerun with
the held-out seeds and evaluated on the test set. The rules are workloads/tuning.py's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ..core.clock import now
from ..core.environment import describe
from ..core.result import FINISHED, CurvePoint, TrialResult
from ..core.spec import TrialSpec
from ..core.trial import Progress, resolve_device
from ..workloads.tuning import (Prune, TuningTrial, candidates, choices_from, complete_groups, rerun_specs,
                                should_prune)
from .executors import Executor, InProcess
from .jobs import Job, JobOutput, execute
from .phases import RunSummary
from .store import ResultStore

if TYPE_CHECKING:
    from .experiments import Experiment


class Pruned(BaseException):
    """Raised from the progress callback to stop a hopeless trial. A BaseException on purpose: the job
    runner turns every Exception into a `failed` trial, and a pruned trial is a finished one."""


@dataclass
class _Watch:
    """Follows one tuning trial's evaluations and stops it when the pruning rule says it is hopeless."""

    spec: TrialSpec
    rule: Prune
    earlier: list[dict[int, float]]
    forward: Callable[[Progress], None] | None = None
    started: float = field(default_factory=now)
    points: list[CurvePoint] = field(default_factory=list)

    def __call__(self, p: Progress) -> None:
        if self.forward is not None:
            self.forward(p)
        # The callback sees the step, the validation accuracy and the timed clock; the evaluation loss and
        # the rate are not passed to it, so a pruned trial's curve leaves them out (NaN).
        self.points.append(CurvePoint(p.step, p.epoch, p.train_seconds, now() - self.started, p.train_loss,
                                      p.accuracy, math.nan if p.accuracy is not None else None, math.nan, p.seen))
        # A partial evaluation has no accuracy to compare: pruning decides at whole ones (the epoch ends, and
        # cadence evaluations of a trial near the target).
        if p.step < p.total_steps and p.accuracy is not None and should_prune(p.step, p.accuracy, self.earlier,
                                                                            self.rule):
            raise Pruned()

    def result(self) -> TrialResult:
        last = self.points[-1]
        return TrialResult(spec=self.spec, status="pruned", final_accuracy=None, final_loss=None,
                           time_to_target_s=None, steps_to_target=None, epochs_to_target=None, steps=last.step,
                           train_seconds=last.train_seconds, eval_seconds=last.wall_seconds - last.train_seconds,
                           wall_seconds=last.wall_seconds, load_seconds=0.0, compile_seconds=0.0,
                           device=str(resolve_device(self.spec.device)), curve=list(self.points),
                           environment=describe())  # this process ran the trial: its device, resolved


@dataclass
class PruningExecutor:
    """Runs tuning trials one at a time in this process, each watched against the curves of the earlier
    trials of its configuration (read from the store, where every finished trial lands before the next
    starts). Pruning needs that order, so it does not spread trials over workers."""

    store: ResultStore
    experiment: str
    rule: Prune
    config_of: dict[str, str]  # spec id -> the configuration it tunes
    progress: Callable[[Job], Callable[[Progress], None] | None] | None = None

    def _earlier(self, config: str) -> list[dict[int, float]]:
        return [{p.step: p.eval_accuracy for p in s.result.curve if not p.partial}
                for s in self.store.trials(self.experiment)
                if self.config_of.get(s.result.spec.id) == config and s.result.status in FINISHED]

    def run(self, jobs: Iterable[Job]) -> Iterator[JobOutput]:
        for job in jobs:
            watch = _Watch(job.spec, self.rule, self._earlier(self.config_of[job.spec.id]),
                           self.progress(job) if self.progress else None)
            try:
                output = execute(job, watch)
            except Pruned:
                output = JobOutput(job, watch.result())
            yield output


def protocol_winners(experiment: "Experiment", store: ResultStore, seeds: int | None,
                     planned: list[TuningTrial] | None = None) -> list[tuple[str, TrialSpec]]:
    """The reruns of each group whose candidates have all finished: its winner with every held-out seed.
    The runner runs these and `load_results` expects them, so both see the same plan."""
    planned = planned if planned is not None else candidates(experiment)
    complete = complete_groups(planned, store.finished_ids(experiment.name))
    stored = {s.result.spec.id: s.result for s in store.trials(experiment.name)}
    return [rerun for choice in choices_from(experiment, stored, planned)
            if choice.config in complete and choice.spec is not None
            for rerun in rerun_specs(experiment, choice, seeds)]


def run_protocol(experiment: "Experiment", store: ResultStore, executor: Executor, seeds: int | None, rerun: bool,
                 on_event, summary: RunSummary, run_phase) -> None:
    """Phase one (the candidates) then phase two (the reruns). A group chooses only once all its candidates
    are stored, so a resumed run picks the same winner as an uninterrupted one."""
    planned = candidates(experiment)
    search_executor = executor
    prune = getattr(experiment.protocol, "prune", None)
    if prune is not None:
        progress = executor.progress if isinstance(executor, InProcess) else None
        search_executor = PruningExecutor(store, experiment.name, prune, {t.spec.id: t.config for t in planned},
                                          progress)
    run_phase("tuning" if experiment.tuning else "candidates", experiment, [(t.label, t.spec) for t in planned],
              store, search_executor, rerun, on_event, summary)
    winners = protocol_winners(experiment, store, seeds, planned)
    run_phase("rerun best", experiment, winners, store, executor, rerun, on_event, summary)
