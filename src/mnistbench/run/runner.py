"""Run an experiment: plan its trials (phase one, and for an experiment that chooses, the reruns of its
winners), then run them phase by phase (run/phases.py), the choice itself following run/protocol.py."""

from __future__ import annotations

from functools import partial
from typing import Callable

from ..core.spec import TrialSpec
from .executors import Executor
from .experiments import Experiment
from .phases import RunEvent, RunSummary, run_phase
from .protocol import protocol_winners, run_protocol
from .store import ResultStore

__all__ = ["RunEvent", "RunSummary", "planned_trials", "run_experiment"]


def planned_trials(experiment: Experiment, store: ResultStore, seeds: int | None = None) -> list[tuple[str, TrialSpec]]:
    """Every trial the experiment's definition asks for: phase one, and for an experiment that chooses, the
    winners of every group whose candidates have all finished, rerun with the held-out seeds."""
    planned = experiment.trials(seeds)
    if experiment.protocol:
        planned += protocol_winners(experiment, store, seeds)
    return planned


def run_experiment(experiment: Experiment, store: ResultStore, executor: Executor, seeds: int | None = None,
                   rerun: bool = False, on_event: Callable[[RunEvent], None] | None = None,
                   keep_models: bool = False) -> RunSummary:
    store.save_experiment(experiment.name, experiment.model_dump(mode="json"), seeds or experiment.seeds,
                          TrialSpec.field_defaults())
    summary = RunSummary()
    phase = partial(run_phase, keep_models=keep_models)
    try:
        if experiment.protocol:  # candidates judged on validation, then each winner with held-out seeds
            run_protocol(experiment, store, executor, seeds, rerun, on_event, summary, phase)
        else:
            phase("train", experiment, experiment.trials(seeds), store, executor, rerun, on_event, summary)
    finally:
        store.release_claims()
    return summary
