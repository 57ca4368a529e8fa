"""Seeds until decided: looks at growing numbers of seeds, each spending a share of the family-wise error, a
comparison claimed at any look staying claimed, and seeds added only to configurations still in an open one.

Validity: each look decides with the report's own procedure (decisions.py) at its share alpha_k of the error,
and the shares sum to alpha, so the chance of any false claim over all looks is at most alpha (a union bound;
Lan & DeMets' spending, read conservatively: no correlation between looks is assumed). The share of a look is
proportional to the seeds it adds (information fraction t = n / max_seeds, alpha(t) = alpha * t).

The whole record is recomputed from the stored trials (seed < n at the look with n seeds), so a run stopped
and resumed, or a report written later, replays the same looks and reaches the same decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..core.result import TrialResult
from .analysis import ALPHA, summarize
from .comparison import Comparison
from .decisions import Decision, Decisions, decide
from .questions import Question, batch_studies, questions


def looks(start: int, max_seeds: int, step: int) -> list[int]:
    """The seeds a side at each look: start, start + step, ..., and max_seeds last."""
    return sorted(set(range(start, max_seeds, step)) | {max_seeds})


def spent(n: int, max_seeds: int, alpha: float = ALPHA) -> float:
    """Error spent by the look at `n` seeds, in total: linear in the information fraction."""
    return alpha * min(n, max_seeds) / max_seeds


def _key(q: Question, c: Comparison) -> tuple[str, str, str, str]:
    return q.factor, q.a.key, q.b.key, c.metric


@dataclass
class Stop:
    """Where one comparison's sequence ended, and why."""

    title: str  # "A vs B on time to 97%"
    seeds: int  # seeds a side at the look that ended it
    why: str


@dataclass
class Replay:
    """The looks so far: what each claimed, and what (if anything) must run next."""

    looks: list[tuple[int, float]] = field(default_factory=list)  # (seeds a side, error spent at that look)
    claimed: dict[tuple, tuple[int, float]] = field(default_factory=dict)  # comparison key -> (seeds, alpha_k)
    stops: dict[tuple, Stop] = field(default_factory=dict)
    next_seeds: int | None = None  # seeds a side the next look needs; None when the sequence has ended
    next_configs: set[str] = field(default_factory=set)  # configuration keys that need them

    @property
    def finished(self) -> bool:
        return self.next_seeds is None


def _complete(results: Sequence[TrialResult], configs: set[str], n: int) -> bool:
    have: dict[str, set[int]] = {}
    for r in results:
        have.setdefault(r.spec.config_key(), set()).add(r.spec.seed)
    return all(set(range(n)) <= have.get(k, set()) for k in configs)


def replay(results: Sequence[TrialResult], start: int, max_seeds: int, step: int = 1,
           labels: dict[str, str] | None = None, order: Sequence[str] = (), alpha: float = ALPHA) -> Replay:
    """Replay the looks on the stored `results` (every configuration's trials, any seeds)."""
    out = Replay()
    active = {r.spec.config_key() for r in results}
    before = 0.0
    points = looks(start, max_seeds, step)
    for i, n in enumerate(points):
        if not _complete(results, active, n):
            out.next_seeds, out.next_configs = n, active
            return out
        share = spent(n, max_seeds, alpha) - before
        before += share
        out.looks.append((n, share))
        summaries = summarize([r for r in results if r.spec.seed < n], labels)
        qs = questions(summaries)
        decisions = decide(qs, batch_studies(summaries), order, alpha=share)
        open_configs: set[str] = set()
        last = i == len(points) - 1
        for q in qs:
            for c in q.comparisons:
                key = _key(q, c)
                if c.exploratory or key in out.claimed:
                    continue
                title = f"{c.a_label} vs {c.b_label} on {c.noun}"
                if decisions[c].verdict == "claimed":
                    out.claimed[key] = (n, share)
                    out.stops[key] = Stop(title, n, f"claimed at {n} seeds a side (error spent at that look "
                                                     f"{share:.3g})")
                elif c.p is None and decisions[c].verdict == "no test":
                    out.stops[key] = Stop(title, n, "no test possible (no spread, or no seed at the target)")
                elif last:
                    out.stops[key] = Stop(title, n, f"undecided at the most seeds allowed ({max_seeds})")
                else:
                    out.stops.pop(key, None)
                    open_configs |= {q.a.key, q.b.key}
        if not open_configs:
            return out
        active = open_configs
    return out


def sequential_decisions(qs: Sequence[Question], studies, final: Decisions, record: Replay) -> Decisions:
    """The report's decisions after a sequence: what a look claimed stays claimed (with the look that did it);
    the rest keep the last look's word on all the data, never a claim the looks did not make."""
    by = dict(final.by_comparison)
    for q in qs:
        for c in q.comparisons:
            key = _key(q, c)
            if key in record.claimed:
                n, share = record.claimed[key]
                by[id(c)] = Decision("claimed", f"claimed at the look with {n} seeds a side (its share of the error: "
                                                f"{share:.3g})", share)
            elif by[id(c)].verdict == "claimed":  # all the data at the full level is not a look of the sequence
                by[id(c)] = Decision("indication", "significant on all the data, not claimed by any look",
                                     by[id(c)].level, by[id(c)].seeds_needed)
    n_looks = len(record.looks)
    seeds = ", ".join(str(n) for n, _ in record.looks)
    procedure = (f"Seeds added until decided: {n_looks} look{'s' * (n_looks != 1)} (at {seeds} seeds a side), each "
                 "deciding with the procedure below at its share of the 5% error (shares proportional to the seeds "
                 "each look adds, summing to 5%), so the chance of any false claim over all looks stays at 5%; a "
                 "configuration got more seeds only while a comparison it takes part in was open. "
                 + final.procedure)
    return Decisions(procedure, final.gates, by)


def stopping_rows(record: Replay) -> list[Stop]:
    return list(record.stops.values())
