"""Run a tuned experiment: the search (phase one, on the validation split, optionally pruning hopeless
trials), then each configuration's best point rerun with the held-out seeds and evaluated on the test set."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ..core.clock import now
from ..core.hardware import describe
from ..core.result import CurvePoint, TrialResult
from ..core.spec import TrialSpec
from ..core.trial import Progress
from ..run.executors import Executor, InProcess
from ..run.jobs import Job, JobOutput, execute
from ..run.store import FINISHED, ResultStore
from .tuning import Choice, Prune, TuningTrial, choose_best, should_prune, tuning_trials

if TYPE_CHECKING:
    from ..run.experiments import Experiment
    from ..run.runner import RunSummary


def tuned_label(config: str) -> str:
    return f"{config} · tuned"


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
                                      p.accuracy, math.nan, math.nan))
        if p.step < p.total_steps and should_prune(p.step, p.accuracy, self.earlier, self.rule):
            raise Pruned()

    def result(self) -> TrialResult:
        last = self.points[-1]
        return TrialResult(spec=self.spec, status="pruned", final_accuracy=None, final_loss=None,
                           time_to_target_s=None, steps_to_target=None, epochs_to_target=None, steps=last.step,
                           train_seconds=last.train_seconds, eval_seconds=last.wall_seconds - last.train_seconds,
                           wall_seconds=last.wall_seconds, load_seconds=0.0, compile_seconds=0.0,
                           device=self.spec.device, curve=list(self.points), environment=describe())


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
        return [{p.step: p.eval_accuracy for p in s.result.curve} for s in self.store.trials(self.experiment)
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


def choices_from(experiment: "Experiment", results: dict[str, TrialResult],
                 planned: list[TuningTrial] | None = None) -> list[Choice]:
    """Each configuration's winning point, from its finished tuning trials (validation split only);
    `results`: spec id -> result. The runner and the report both choose here, so they always agree."""
    planned = planned if planned is not None else tuning_trials(experiment)
    ids = {t.spec.id for t in planned}
    finished = {i: r for i, r in results.items() if i in ids and r.status in FINISHED}
    return [choose_best(c.label, planned, finished, experiment.tuning.choose_by) for c in experiment.configs()]


def tuned_key(choice: Choice) -> str:
    """The configuration key shared by the reruns of a winning point (its spec, on the test set, any seed)."""
    return choice.spec.model_copy(update={"eval_on": "test"}).config_key()


def rerun_specs(experiment: "Experiment", choice: Choice, seeds: int) -> list[TrialSpec]:
    """The winning point with every held-out seed, evaluated (and timed to the target) on the test set;
    the validation images stay held out, so it trains on exactly the data the search trained on."""
    fields = choice.spec.model_dump()
    return [TrialSpec(**{**fields, "eval_on": "test", "seed": s})
            for s in experiment.tuning.rerun_seed_list(seeds)]


def rerun_seeds(experiment: "Experiment", seeds: int | None) -> int:
    """How many held-out seeds each winner is rerun with: --seeds, else the tuning block's, else the file's."""
    return seeds or experiment.tuning.seeds or experiment.seeds


def planned_reruns(experiment: "Experiment", seeds: int | None) -> list[tuple[str, TrialSpec]]:
    """Stand-ins for the reruns before the search has chosen (for a dry run's estimate: the cost of a trial
    does not depend on the point chosen): each configuration at its own values, every held-out seed."""
    return [(tuned_label(c.label), experiment.spec_for(c, 0).model_copy(update={"eval_on": "test", "seed": s}))
            for c in experiment.configs() for s in experiment.tuning.rerun_seed_list(rerun_seeds(experiment, seeds))]


def tuned_winners(experiment: "Experiment", store: ResultStore, seeds: int | None,
                  planned: list[TuningTrial] | None = None) -> list[tuple[str, TrialSpec]]:
    """The reruns of each configuration whose search is complete: its winning point with every held-out seed.
    The runner runs these and `load_results` expects them, so both see the same plan."""
    planned = planned if planned is not None else tuning_trials(experiment)
    finished = store.finished_ids(experiment.name)
    complete = {c for c in {t.config for t in planned}
                if all(t.spec.id in finished for t in planned if t.config == c)}
    winners = []
    stored = {s.result.spec.id: s.result for s in store.trials(experiment.name)}
    for choice in choices_from(experiment, stored, planned):
        if choice.config in complete and choice.spec is not None:
            winners += [(tuned_label(choice.config), spec)
                        for spec in rerun_specs(experiment, choice, rerun_seeds(experiment, seeds))]
    return winners


def run_tuned(experiment: "Experiment", store: ResultStore, executor: Executor, seeds: int | None, rerun: bool,
              on_event, summary: "RunSummary", run_phase) -> None:
    """Phase one (the search) then phase two (the reruns). A configuration is chosen only once all its
    tuning trials are stored, so a resumed run picks the same winner as an uninterrupted one."""
    tuning = experiment.tuning
    planned = tuning_trials(experiment)
    search_executor = executor
    if tuning.prune is not None:
        progress = executor.progress if isinstance(executor, InProcess) else None
        search_executor = PruningExecutor(store, experiment.name, tuning.prune,
                                          {t.spec.id: t.config for t in planned}, progress)
    run_phase("tuning", experiment, [(t.label, t.spec) for t in planned], store, search_executor, rerun,
              on_event, summary)
    winners = tuned_winners(experiment, store, seeds, planned)
    run_phase("rerun best", experiment, winners, store, executor, rerun, on_event, summary)
