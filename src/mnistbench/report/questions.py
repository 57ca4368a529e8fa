"""The notebook's questions (which optimizer, does BatchNorm help, does a schedule help, which batch size),
asked automatically of whatever configurations an experiment ran, answered with comparisons over seeds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Sequence

from .analysis import (Comparison, ConfigSummary, compare, derive_label, describe_stat, holm, p_text, pct,
                       target_text)
from ..core.models import MODELS
from ..core.recipes import OPTIMIZERS
from ..core.spec import TrialSpec


def _bn(spec: TrialSpec) -> bool:
    return MODELS.get(spec.model).batchnorm


@dataclass(frozen=True)
class Factor:
    """One technique the notebook asks about, and how to tell which configurations isolate it."""

    heading: str
    fields: frozenset[str]  # spec fields that belong to the factor (an optimizer comes with its lr)
    differs: Callable[[TrialSpec, TrialSpec], bool]
    rank: Callable[[TrialSpec], int]  # the reference side (lower rank) is named first
    loosen: frozenset[str] = frozenset()  # may differ too when no exact pair exists (a schedule's own lr)


FACTORS: dict[str, Factor] = {
    "optimizer": Factor("Optimizer", frozenset({"optimizer", "lr", "optimizer_args"}),
                        lambda a, b: a.optimizer != b.optimizer, lambda s: OPTIMIZERS.names().index(s.optimizer)),
    "batchnorm": Factor("Batch normalization", frozenset({"model"}),
                        lambda a, b: _bn(a) != _bn(b), lambda s: int(_bn(s))),
    "schedule": Factor("Learning-rate schedule", frozenset({"schedule", "schedule_args"}),
                       lambda a, b: (a.schedule == "constant") != (b.schedule == "constant"),
                       lambda s: int(s.schedule != "constant"), frozenset({"lr"})),
}


def _rest(spec: TrialSpec, free: frozenset[str]) -> str:
    """The spec without the free fields and the seed: equal rests differ only in the free fields."""
    return repr(sorted(spec.model_dump(mode="json", exclude=set(free) | {"seed"}).items()))


def _closeness(a: ConfigSummary, b: ConfigSummary) -> int:
    return len(os.path.commonprefix([a.spec.model, b.spec.model]))


def _pairs(summaries: Sequence[ConfigSummary], f: Factor) -> list[tuple[ConfigSummary, ConfigSummary]]:
    def isolates(a: ConfigSummary, b: ConfigSummary, free: frozenset[str]) -> bool:
        return f.differs(a.spec, b.spec) and _rest(a.spec, free) == _rest(b.spec, free)

    exact = [p for p in combinations(summaries, 2) if isolates(*p, f.fields)]
    used = {s.key for p in exact for s in p}
    loose = [p for p in combinations(summaries, 2)
             if used.isdisjoint(s.key for s in p) and isolates(*p, f.fields | f.loosen)]
    pairs = [tuple(sorted(p, key=lambda s: f.rank(s.spec))) for p in exact + loose]
    # Keep each reference's closest partners: seed-simple pairs with seed-bn, not with an unrelated BN model.
    best: dict[str, int] = {}
    for a, b in pairs:
        best[a.key] = max(best.get(a.key, 0), _closeness(a, b))
    return [(a, b) for a, b in pairs if _closeness(a, b) == best[a.key]]


@dataclass
class Question:
    """A pair of configurations isolating one factor, compared on time to target and final accuracy."""

    factor: str
    heading: str
    a: ConfigSummary  # the reference: SGD, without BatchNorm, without a schedule
    b: ConfigSummary
    note: str  # what else differs, when no exact pair existed
    comparisons: list[Comparison]

    @property
    def title(self) -> str:
        return f"{self.a.label} vs {self.b.label}"


def questions(summaries: Sequence[ConfigSummary]) -> list[Question]:
    out = []
    for name, f in FACTORS.items():
        for a, b in _pairs(summaries, f):
            note = "; ".join(f"{k} differs too: {getattr(a.spec, k)} vs {getattr(b.spec, k)}"
                             for k in sorted(f.loosen) if getattr(a.spec, k) != getattr(b.spec, k))
            comps = [compare(a.results, b.results, m, a.label, b.label) for m in ("time_to_target", "accuracy")]
            out.append(Question(name, f.heading, a, b, note, comps))
    return out


@dataclass
class BatchStudy:
    """Configurations that differ only in batch size (and possibly lr), ordered by batch size."""

    title: str
    rows: list[ConfigSummary]
    sentence: str
    comparison: Comparison | None  # the best batch size against the runner-up


def _batch_sentence(rows: list[ConfigSummary], target: str) -> str:
    def time(s: ConfigSummary) -> str:
        return describe_stat(s.time_to_target, "time_to_target") if s.reached else f"not reached (0 of {s.n})"

    reached = [s for s in rows if s.time_to_target.n]
    if reached:
        fastest = min(reached, key=lambda s: s.time_to_target.mean)
        others = "; ".join(f"{s.spec.batch_size}: {time(s)}" for s in rows if s is not fastest)
        text = (f"Batch size {fastest.spec.batch_size} reached {target} fastest ({time(fastest)}, "
                f"n = {fastest.time_to_target.n}); {others}.")
    else:
        text = f"No batch size reached {target}."
    finished = [s for s in rows if s.accuracy.n]
    lo, hi = (f(finished, key=lambda s: s.accuracy.mean) for f in (min, max)) if finished else (None, None)
    if lo is not None and pct(lo.accuracy.mean) == pct(hi.accuracy.mean):
        text += f" Final test accuracy was {pct(lo.accuracy.mean)} on average for every batch size that finished."
    elif lo is not None:
        text += (f" Final test accuracy ranged from {pct(lo.accuracy.mean)} (batch {lo.spec.batch_size}) "
                 f"to {pct(hi.accuracy.mean)} (batch {hi.spec.batch_size}).")
    return text


def _runner_up(rows: list[ConfigSummary]) -> Comparison | None:
    """Is the winner really ahead? Welch's test of the best batch size against the second best."""
    for metric, attr, sign in (("time_to_target", "time_to_target", 1), ("accuracy", "accuracy", -1)):
        ranked = sorted((s for s in rows if getattr(s, attr).n), key=lambda s: sign * getattr(s, attr).mean)
        if len(ranked) >= 2:
            a, b = ranked[:2]
            return compare(a.results, b.results, metric, a.label, b.label)
    return None


def batch_studies(summaries: Sequence[ConfigSummary]) -> list[BatchStudy]:
    studies, used = [], set()
    for free in (frozenset({"batch_size"}), frozenset({"batch_size", "lr"})):
        groups: dict[str, list[ConfigSummary]] = {}
        for s in summaries:
            if s.key not in used:
                groups.setdefault(_rest(s.spec, free), []).append(s)
        for group in groups.values():
            sizes = {s.spec.batch_size for s in group}
            if len(group) < 2 or len(sizes) != len(group):
                continue
            rows = sorted(group, key=lambda s: s.spec.batch_size)
            used.update(s.key for s in rows)
            title = "Batch size: " + derive_label(rows[0].spec, frozenset({"batch_size"}))
            if "lr" in free and len({s.spec.lr for s in rows}) > 1:
                title += " (learning rate varies with batch size)"
            sentence = _batch_sentence(rows, target_text(rows[0].spec.target))
            studies.append(BatchStudy(title, rows, sentence, _runner_up(rows)))
    return studies


def family(qs: Sequence[Question], studies: Sequence[BatchStudy]) -> list[Comparison]:
    """Every comparison a report makes: the family Holm's correction is taken over."""
    return [c for q in qs for c in q.comparisons] + [s.comparison for s in studies if s.comparison]


def holm_survivors(comps: Sequence[Comparison]) -> set[Comparison]:
    tested = [c for c in comps if c.p is not None]
    return {c for c, kept in zip(tested, holm([c.p for c in tested])) if kept}


def conclusions(qs: Sequence[Question], studies: Sequence[BatchStudy]) -> list[str]:
    """The sentences of the comparisons that stay significant under Holm's correction for all the tests the
    report makes, then a word on those significant only on their own; or one sentence saying why there are none."""
    comps = family(qs, studies)
    tested = [c for c in comps if c.p is not None]
    if not comps:
        return ["No two configurations differ in a single factor, so nothing was compared."]
    if not tested:
        return ["No test was possible: run at least two seeds per configuration."]
    kept = holm_survivors(tested)
    out = [c.sentence for c in tested if c in kept]
    alone = [c for c in tested if c.significant and c not in kept]
    correction = f"Holm's correction for the {len(tested)} tests in this report"
    if alone:
        names = "; ".join(f"{c.a_label} vs {c.b_label} on {c.noun} ({p_text(c.p)})" for c in alone)
        out.append(f"Significant alone but not after {correction}, so not claimed: {names}.")
    if not kept and not alone:
        out.append("No difference was detected in any comparison (p ≥ 0.05 everywhere): "
                   "the data does not support ranking these configurations.")
    elif not kept:
        out.insert(0, f"No comparison stays significant after {correction}.")
    return out
