"""The notebook's questions (which optimizer, does BatchNorm help, does a schedule help, which batch size),
asked automatically of whatever configurations an experiment ran, answered with comparisons over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Sequence

from .analysis import ConfigSummary, derive_label, describe_stat, pct, target_text
from .comparison import Comparison, compare
from ..core.models import MODELS, TECHNIQUES
from ..core.recipes import OPTIMIZERS
from ..core.spec import TrialSpec


def _added(a: TrialSpec, b: TrialSpec) -> frozenset[str] | None:
    """The techniques model b adds to model a when both belong to one family and b keeps all of a's; else None.
    The registry says what each model adds over its family's base, so no name carries hidden meaning."""
    ea, eb = MODELS.get(a.model), MODELS.get(b.model)
    if ea.family != eb.family or not ea.adds < eb.adds:
        return None
    return eb.adds - ea.adds


def _model_heading(a: TrialSpec, b: TrialSpec) -> str:
    """'Batch normalization', or every technique the pair changes at once, named with the model that does:
    'BatchNorm + dropout (the notebook's OptimizedCNN)'."""
    added = sorted(_added(a, b) or _added(b, a) or (), key=list(TECHNIQUES).index)
    if added == ["batchnorm"]:
        return "Batch normalization"
    if len(added) == 1:
        return TECHNIQUES[added[0]].capitalize()
    bigger = MODELS.get(b.model if _added(a, b) else a.model)
    return " + ".join(TECHNIQUES[t] for t in added) + (f" ({bigger.title})" if bigger.title else "")


@dataclass(frozen=True)
class Factor:
    """One technique the notebook asks about, and how to tell which configurations isolate it."""

    heading: Callable[[TrialSpec, TrialSpec], str]
    fields: frozenset[str]  # spec fields that may differ in a pair (an optimizer comes with its lr)
    own: frozenset[str]  # the fields that are the factor itself; any other field that differs is named
    differs: Callable[[TrialSpec, TrialSpec], bool]
    rank: Callable[[TrialSpec], int]  # the reference side (lower rank) is named first
    loosen: frozenset[str] = frozenset()  # may differ too when no exact pair exists (a schedule's own lr)


FACTORS: dict[str, Factor] = {
    "optimizer": Factor(lambda a, b: "Optimizer", frozenset({"optimizer", "lr", "optimizer_args"}),
                        frozenset({"optimizer", "optimizer_args"}),
                        lambda a, b: a.optimizer != b.optimizer, lambda s: OPTIMIZERS.names().index(s.optimizer)),
    "model": Factor(_model_heading, frozenset({"model"}), frozenset({"model"}),
                    lambda a, b: bool(_added(a, b) or _added(b, a)), lambda s: len(MODELS.get(s.model).adds)),
    "schedule": Factor(lambda a, b: "Learning-rate schedule", frozenset({"schedule", "schedule_args"}),
                       frozenset({"schedule", "schedule_args"}),
                       lambda a, b: (a.schedule == "constant") != (b.schedule == "constant"),
                       lambda s: int(s.schedule != "constant"), frozenset({"lr"})),
}


def _rest(spec: TrialSpec, free: frozenset[str]) -> str:
    """The spec without the free fields and the seed: equal rests differ only in the free fields."""
    return repr(sorted(spec.model_dump(mode="json", exclude=set(free) | {"seed"}).items()))


def _pairs(summaries: Sequence[ConfigSummary], f: Factor) -> list[tuple[ConfigSummary, ConfigSummary]]:
    def isolates(a: ConfigSummary, b: ConfigSummary, free: frozenset[str]) -> bool:
        return f.differs(a.spec, b.spec) and _rest(a.spec, free) == _rest(b.spec, free)

    exact = [p for p in combinations(summaries, 2) if isolates(*p, f.fields)]
    used = {s.key for p in exact for s in p}
    loose = [p for p in combinations(summaries, 2)
             if used.isdisjoint(s.key for s in p) and isolates(*p, f.fields | f.loosen)]
    return [tuple(sorted(p, key=lambda s: f.rank(s.spec))) for p in exact + loose]


def also_differs(a: TrialSpec, b: TrialSpec, own: frozenset[str]) -> str:
    """Every field besides the factor's own that differs in the pair: a difference is never credited to one
    field while another changed with it."""
    dumped = a.model_dump(), b.model_dump()
    return "; ".join(f"{k} differs too: {dumped[0][k]} vs {dumped[1][k]}"
                     for k in dumped[0] if k not in own | {"seed"} and dumped[0][k] != dumped[1][k])


@dataclass
class Question:
    """A pair of configurations isolating one factor, compared on time to target and final accuracy."""

    factor: str
    heading: str
    a: ConfigSummary  # the reference: SGD, the model with fewer techniques, no schedule
    b: ConfigSummary
    note: str  # what else differs besides the factor
    comparisons: list[Comparison]

    @property
    def title(self) -> str:
        return f"{self.a.label} vs {self.b.label}"


def questions(summaries: Sequence[ConfigSummary]) -> list[Question]:
    out = []
    for name, f in FACTORS.items():
        for a, b in _pairs(summaries, f):
            comps = [compare(a.results, b.results, m, a.label, b.label) for m in ("time_to_target", "accuracy")]
            out.append(Question(name, f.heading(a.spec, b.spec), a, b, also_differs(a.spec, b.spec, f.own), comps))
    return out


@dataclass
class BatchStudy:
    """Configurations that differ only in batch size (and possibly lr), ordered by batch size."""

    title: str
    rows: list[ConfigSummary]
    sentence: str
    comparison: Comparison | None  # the best batch size against the runner-up: exploratory (picked post hoc)


def _quickest_first(s: ConfigSummary) -> tuple[float, float]:
    """Most seeds reaching the target first, then the mean time of those seeds: a seed that missed the target
    counts as slower than any that reached it, so 2 fast seeds of 3 do not beat 3 of 3."""
    return -s.reached / s.n, s.time_to_target.mean


def _batch_sentence(rows: list[ConfigSummary], target: str) -> str:
    def time(s: ConfigSummary) -> str:
        if not s.reached:
            return f"not reached (0 of {s.n})"
        return f"{describe_stat(s.time_to_target, 'time_to_target')}, {s.reached} of {s.n} seeds"

    reached = sorted((s for s in rows if s.time_to_target.n), key=_quickest_first)
    if reached:
        fastest = reached[0]
        others = "; ".join(f"{s.spec.batch_size}: {time(s)}" for s in rows if s is not fastest)
        text = f"Batch size {fastest.spec.batch_size} reached {target} fastest ({time(fastest)}); {others}."
        if any(s.reached < s.n for s in rows):
            text += " A seed that missed the target counts as slower than any that reached it."
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
    """Is the winner really ahead? The best batch size against the second best. Both were picked after seeing
    the results, so the test is exploratory: shown, but neither claimed nor counted in Holm's family."""
    for metric, ranked in (("time_to_target", sorted((s for s in rows if s.reached), key=_quickest_first)),
                           ("accuracy", sorted((s for s in rows if s.accuracy.n), key=lambda s: -s.accuracy.mean))):
        if len(ranked) >= 2:
            a, b = ranked[:2]
            return compare(a.results, b.results, metric, a.label, b.label, exploratory=True)
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
