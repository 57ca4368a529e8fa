"""Which comparisons a report claims. The confirmatory tests form one family whose family-wise error stays at 5%:
tests that cannot reach significance at the seeds they have are left out (Tarone's rule), and the rest are tested
in the order the experiment declares its questions (serial gatekeeping, Holm within each question), or all at
once with Holm when it declares none. Whatever stays open says how many seeds a side would decide it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from .analysis import ALPHA, METRICS
from .comparison import RANK, Comparison, factor_text, p_text
from .questions import BatchStudy, Question
from .significance import holm, min_p_rank, seeds_to_decide, tarone

POWER = 0.8  # of the seeds-to-decide figure: the usual planning power
Verdict = Literal["claimed", "indication", "undecided", "too few seeds", "no test", "exploratory"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str = ""  # one clause: what the procedure did with it
    level: float | None = None  # the threshold its test faced alone in its question (alpha / tests in it)
    seeds_needed: int | None = None  # a side, for 80% power at `level` if the observed effect were the truth


@dataclass
class Gate:
    """One question of the declared order (or the whole family when none is declared)."""

    name: str
    comparisons: list[Comparison]
    eligible: list[Comparison] = field(default_factory=list)  # kept by Tarone's rule
    opened: bool = False  # tested: every question before it was decided


@dataclass
class Decisions:
    procedure: str  # the sentence the report prints: what was done, and why it keeps the family's error
    gates: list[Gate]
    by_comparison: dict[int, Decision]  # id(comparison) -> decision

    def __getitem__(self, c: Comparison) -> Decision:
        return self.by_comparison[id(c)]

    def claimed(self) -> list[Comparison]:
        return [c for g in self.gates for c in g.comparisons if self[c].verdict == "claimed"]


def family(qs: Sequence[Question], studies: Sequence[BatchStudy]) -> list[Comparison]:
    """Every confirmatory comparison a report makes. Exploratory ones (a pick made after seeing the data) stay
    out: they are shown with their p, never claimed."""
    comps = [c for q in qs for c in q.comparisons] + [s.comparison for s in studies if s.comparison]
    return [c for c in comps if not c.exploratory]


def _rank_seeds(level: float) -> int:
    """The fewest seeds a side at which the exact rank test can reach `level` at all."""
    n = 2
    while min_p_rank(n, n) > level:
        n += 1
    return n


def _seeds_needed(c: Comparison, level: float) -> int | None:
    if c.test == RANK:  # no parametric effect to power: the least n at which the test can succeed at all
        return _rank_seeds(level)
    return seeds_to_decide(c.standardized, level, POWER)


def _gates(qs: Sequence[Question], order: Sequence[str]) -> list[Gate]:
    confirmatory = [(q.factor, c) for q in qs for c in q.comparisons if not c.exploratory]
    if not order:
        return [Gate("every question", [c for _, c in confirmatory])]
    gates = [Gate(name, [c for f, c in confirmatory if f == name]) for name in order]
    rest = [c for f, c in confirmatory if f not in order]
    return [g for g in gates if g.comparisons] + ([Gate("the other questions", rest)] if rest else [])


def decide(qs: Sequence[Question], studies: Sequence[BatchStudy] = (), order: Sequence[str] = (),
           alpha: float = ALPHA) -> Decisions:
    """Decide every comparison of the report. Serial gatekeeping (a fixed sequence of families): each question
    is tested at the full `alpha` with Holm's correction within it, and the next one only when every test of
    this one is rejected; the family-wise error over all of them stays at `alpha` (Dmitrienko et al. 2003).
    Within each, Tarone's rule keeps only tests whose smallest achievable p can pass."""
    gates = _gates(qs, order)
    by: dict[int, Decision] = {}
    for s in studies:
        if s.comparison is not None and s.comparison.exploratory:
            by[id(s.comparison)] = Decision("exploratory", "picked after seeing the results")
    left_out, still_open, closed_by = 0, True, ""
    for gate in gates:
        tested = [c for c in gate.comparisons if c.p is not None]
        for c in gate.comparisons:
            if c.p is None:
                by[id(c)] = Decision("no test")
        keep = tarone([c.min_p for c in tested], alpha)
        gate.eligible = [c for c, k in zip(tested, keep) if k]
        level = alpha / max(1, len(gate.eligible))
        for c, k in zip(tested, keep):
            if not k:
                left_out += 1
                need = _rank_seeds(level)
                by[id(c)] = Decision("too few seeds", f"its test cannot reach p < {level:.2g} at {c.n_text}: "
                                     f"it needs ≥ {need} seeds a side", level, need)
        gate.opened = still_open
        rejected = holm([c.p for c in gate.eligible], alpha) if still_open else [False] * len(gate.eligible)
        holm_words = _holm_words(len(gate.eligible), whole=not order)
        for c, r in zip(gate.eligible, rejected):
            if r:
                by[id(c)] = Decision("claimed", f"kept by {holm_words}", level)
            elif c.significant:
                why = (f"{p_text(c.p)} alone, not kept by {holm_words}" if still_open else
                       f"{p_text(c.p)} alone, not tested: the {closed_by} question before it stayed open")
                by[id(c)] = Decision("indication", why, level, _seeds_needed(c, level))
            else:
                by[id(c)] = Decision("undecided", "" if still_open else
                                     f"not tested: the {closed_by} question before it stayed open", level,
                                     _seeds_needed(c, level))
        if still_open and not all(rejected):
            still_open, closed_by = False, gate.name
    return Decisions(_procedure(gates, order, left_out, alpha), gates, by)


def _holm_words(k: int, whole: bool) -> str:
    if k == 1:
        return "its own test"
    return f"Holm's correction over the family's {k} tests" if whole else f"Holm's correction over its question's {k} tests"


def _procedure(gates: list[Gate], order: Sequence[str], left_out: int, alpha: float) -> str:
    tests = sum(len(g.eligible) for g in gates)
    tarone_text = (f" Tarone's rule left out {left_out} test{'s' * (left_out != 1)} that cannot reach significance "
                   "at the seeds they have (each says how many would do)." if left_out else "")
    level = f"{100 * alpha:g}%"
    if not order:
        return (f"Family-wise error at {level}: Holm's correction over the {tests} test{'s' * (tests != 1)} that can "
                f"succeed at these seeds.{tarone_text}")
    names = ", then ".join(g.name for g in gates)
    return (f"Family-wise error at {level}, spent in the order the experiment declares its questions ({names}): "
            f"each question is tested at the full {level} with Holm's correction within it, the next only once "
            f"every test of the one before is claimed (serial gatekeeping), so the first question is not diluted "
            f"by the later ones.{tarone_text}")


def effect_short(c: Comparison) -> str:
    """'B 2.65x sooner, 95% CI 1.80x–3.90x' or '+0.17 points, 95% CI −0.30 to +0.64' (A − B)."""
    e = c.effect
    if e is None:
        return ""
    if e.kind == "ratio":
        a_first, f, lo, hi = e.sooner()
        return f"{c.a_label if a_first else c.b_label} {factor_text(f)} sooner, 95% CI {factor_text(lo)}–{factor_text(hi)}"
    m = METRICS[c.metric]
    d = m.decimals(abs(e.estimate) * m.scale)
    def signed(x: float) -> str:
        return f"{x * m.scale:+.{d}f}".replace("-", "−")

    return f"{signed(e.estimate)} {m.unit} for {c.a_label}, 95% CI {signed(e.low)} to {signed(e.high)}"


def conclusions(qs: Sequence[Question], studies: Sequence[BatchStudy], decisions: Decisions) -> list[str]:
    """What the report claims, each with its effect and interval; then indications; then what stays open with
    the seeds that would decide it; then the procedure. Never a claim the procedure did not keep."""
    comps = family(qs, studies)
    aside = (["The batch-size comparisons are exploratory (the two best sizes, picked after seeing the results): "
              "they are shown beside their table and not claimed here."]
             if any(s.comparison for s in studies) else [])
    if not comps:
        return ["No two configurations differ in a single factor, so nothing was compared."] + aside
    tested = [c for c in comps if c.p is not None]
    if not tested:
        return ["No test was possible: each comparison had fewer than two runs a side, values without spread, "
                "or no seed reaching the target."] + aside
    out = [f"Claimed: {c.sentence}" for c in tested if decisions[c].verdict == "claimed"]
    if not out:
        out.append("Nothing is claimed: no comparison is decided at a family-wise error of 5% with the seeds "
                   "this store holds.")
    for c in tested:
        d = decisions[c]
        if d.verdict == "indication":
            out.append(f"Indication, not claimed ({d.why}): {c.sentence}")
    open_ = [c for c in tested if decisions[c].verdict in ("undecided", "too few seeds")]
    if open_:
        def need(c: Comparison) -> str:
            n = decisions[c].seeds_needed
            if n:
                return f"≥ {n} seeds a side would decide it"
            return "no effect seen to size a study on" if not c.standardized else "more than 1,000 seeds a side"
        items = "; ".join(f"{c.a_label} vs {c.b_label} on {c.noun} ({', '.join(x for x in (effect_short(c), need(c)) if x)})"
                          for c in open_)
        out.append(f"Undecided, with the seeds a side that would decide each at {POWER:.0%} power if the observed "
                   f"effect were the true one: {items}.")
    return out + [decisions.procedure] + aside
