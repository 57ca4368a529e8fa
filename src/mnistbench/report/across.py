"""One experiment read from several stores (`results --results A --results B`): each trial keeps its machine.

Trials are grouped by configuration *and* environment (machine, CPU threads, torch version, allocator, whether
other trials shared the machine: the factors that make two times incomparable, see `analysis.SHARED_FACTORS`). Trials of one configuration measured in one
environment are pooled even when they sit in different stores (seeds 0-2 run here, 3-4 run there: a merge);
trials from different environments are never pooled, but shown one row per environment with their time set
against the configuration's first environment: a ratio of two machines, not a statistic over a mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean
from typing import Sequence

from ..core.result import TrialResult
from .analysis import ENVIRONMENT_FACTORS, SHARED_FACTORS, ConfigSummary, summarize


def environment_of(r: TrialResult) -> tuple:
    """What a trial's time depends on besides its spec: the values of analysis.SHARED_FACTORS, in its order."""
    return tuple(ENVIRONMENT_FACTORS[name](r) for name in SHARED_FACTORS)


def environment_text(env: tuple) -> str:
    """'AMD EPYC · 2 threads · torch 2.13.0' (· the allocator and whether it ran alone, when they are known)."""
    named = dict(zip(SHARED_FACTORS, env))
    parts = (named["machine"] or "unknown machine", f"{named['threads']} threads" if named["threads"] else "",
             f"torch {named['torch']}" if named["torch"] else "", named["allocator"] or "", named["sharing"] or "")
    return " · ".join(part for part in parts if part)


@dataclass
class MachineGroup:
    """One configuration's trials from one environment, from whichever stores hold them."""

    configuration: str
    environment: tuple
    stores: list[str]
    results: list[TrialResult] = field(repr=False)

    @property
    def summary(self) -> ConfigSummary:
        """n, reached, accuracy, time to target and revisions, as `results` computes them for one store."""
        return summarize(self.results)[0]

    @property
    def ms_per_step(self) -> float | None:
        """Mean training milliseconds per optimizer step: the machine's speed, whether or not a seed reached
        the target (time to target also depends on where the seed crossed it)."""
        per_step = [1000 * r.train_seconds / r.steps for r in self.results if r.steps]
        return fmean(per_step) if per_step else None


@dataclass
class AcrossRow:
    """A line of the cross-store table: a group, and its speed against the configuration's first environment."""

    configuration: str
    environment: str
    stores: str
    n: int
    reached: int
    accuracy_mean: float | None
    accuracy_std: float | None
    time_to_target_mean_s: float | None
    time_to_target_std_s: float | None
    ms_per_step: float | None
    step_time_ratio: float | None  # ms per step / that of the configuration's first environment (1.0 for it)
    revisions: str


@dataclass
class Across:
    """An experiment over several stores: one group per configuration and environment."""

    experiment: str
    stores: list[str]
    groups: list[MachineGroup]
    duplicates: int = 0  # the same trial (spec and environment) found in more than one store: counted once
    partial_stores: list[str] = field(default_factory=list)  # stores missing trials of their definition

    @property
    def rows(self) -> list[AcrossRow]:
        first: dict[str, float | None] = {}
        rows = []
        for g in self.groups:
            base = first.setdefault(g.configuration, g.ms_per_step)
            ratio = g.ms_per_step / base if base and g.ms_per_step is not None else None
            s = g.summary
            rows.append(AcrossRow(g.configuration, environment_text(g.environment), ", ".join(g.stores), s.n,
                                  s.reached, s.accuracy.mean, s.accuracy.std, s.time_to_target.mean,
                                  s.time_to_target.std, g.ms_per_step, ratio, ", ".join(s.revisions)))
        return rows


def group_across(experiment: str, stores: Sequence[tuple[str, Sequence[tuple[str, str, TrialResult]]]]) -> Across:
    """`stores`: (store name, [(config key, label, result)]) in the order given. Groups keep the order of
    first appearance; a configuration is named by the first store that has it."""
    groups: dict[tuple[str, tuple], MachineGroup] = {}
    names: dict[str, str] = {}
    seen: set[tuple[str, tuple]] = set()
    duplicates = 0
    for store, trials in stores:
        for key, label, r in trials:
            env = environment_of(r)
            if (r.spec.id, env) in seen:  # a copy of a trial already counted (a store copied into another)
                duplicates += 1
                continue
            seen.add((r.spec.id, env))
            name = names.setdefault(key, label)
            group = groups.setdefault((key, env), MachineGroup(name, env, [], []))
            group.results.append(r)
            if store not in group.stores:
                group.stores.append(store)
    # one configuration's environments next to each other, configurations in order of first appearance
    order = {key: i for i, key in enumerate(names)}
    ordered = sorted(groups.items(), key=lambda item: order[item[0][0]])
    return Across(experiment, [name for name, _ in stores], [g for _, g in ordered], duplicates)
