"""Two groups of runs compared on one metric: the effect with its 95% interval first, then the test that can
decide it at the seeds there are. Whether the comparison is claimed is the family's business (decisions.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..core.result import MEASURED, TrialResult
from . import significance
from .analysis import (ALPHA, METRICS, SHARED_FACTORS, TIMED_METRICS, Metric, Stat, describe_stat,
                       environment_mix, metric_stat, mix_text, mixed_environments_allowed_now, target_text)
from .estimates import Effect, Interval, difference, iqm, probability_of_improvement, ratio_of_times

WELCH = "Welch's t-test"
WELCH_LOG = "Welch's t on log times"
CENSORED = "censored log-normal fit"
RANK = "Mann-Whitney rank test"
RANKED = "Mann-Whitney, a seed that missed the target ranked slowest"


@dataclass(frozen=True)
class Comparison:
    """Two groups of runs compared on one metric: the effect, the test, and the sentence."""

    metric: str
    noun: str  # the metric in words: "final test accuracy", "time to 97%"
    a_label: str
    b_label: str
    a: Stat  # the runs that carry the metric (for time to target: the seeds that reached it)
    b: Stat
    a_total: int  # runs in the group, whether or not they carry the metric
    b_total: int
    difference: float | None  # mean(a) - mean(b), when both means cover every run compared
    cohens_d: float | None
    hedges_g: float | None
    test: str  # WELCH, WELCH_LOG, CENSORED, RANK, or "" when none was possible
    statistic: float | None  # t, the likelihood ratio, or the Mann-Whitney U of group a
    p: float | None
    sentence: str
    exploratory: bool = False  # chosen after seeing the data: shown, never claimed nor in the family
    effect: Effect | None = None  # ratio of a's time to b's, or a - b in the metric's unit, with its interval
    improvement: Interval | None = None  # P(a seed of A does better than a seed of B)
    standardized: float | None = None  # the effect over its spread on the test's scale: what power depends on
    min_p: float = 1.0  # the smallest p the test could give at these n: Tarone's rule reads it
    robustness: str = ""  # a second test beside the first: the exact rank test beside the censored fit

    @property
    def significant(self) -> bool:
        """Significant on its own; whether it is claimed depends on the family (decisions.py)."""
        return self.p is not None and self.p < ALPHA

    @property
    def n_text(self) -> str:
        return _ns(self.a_total, self.b_total)


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def factor_text(x: float) -> str:
    """'2.65x', '14.2x', 'inf'."""
    return "∞" if math.isinf(x) else f"{x:.3g}x" if x >= 10 else f"{x:.2f}x"


def _effect_sizes(a: Stat, b: Stat) -> tuple[float | None, float | None]:
    if a.n < 2 or b.n < 2:
        return None, None
    pooled = math.sqrt(((a.n - 1) * a.std ** 2 + (b.n - 1) * b.std ** 2) / (a.n + b.n - 2))
    if pooled == 0:
        return None, None
    d = (a.mean - b.mean) / pooled
    return d, d * (1 - 3 / (4 * (a.n + b.n) - 9))  # Hedges' small-sample correction


def _ns(na: int, nb: int) -> str:
    return f"n = {na} each" if na == nb else f"n = {na} and {nb}"


def _describe(s: Stat, m: Metric) -> str:
    """'98.91% ± 0.08', with the interquartile mean beside it from five runs on (rliable's advice)."""
    text = describe_stat(s, m)
    return f"{text}, IQM {m.fmt(iqm(s.values))}" if s.n >= 5 else text


def _dominance(winner: str, loser: str, p: Interval | None, verb: str) -> str:
    """'every A seed sooner than every B seed', or 'P(A sooner) = 0.78, 95% CI 0.44-1.00'."""
    if p is None:
        return ""
    if p.estimate == 1.0:
        return f"every {winner} seed {verb} than every {loser} seed"
    return f"P({winner} {verb}) = {p.estimate:.2f}, 95% CI {p.low:.2f}–{p.high:.2f}"


def _test_text(test: str, p: float, robustness: str) -> str:
    return f"{test}, {p_text(p)}" + (f"; {robustness}" if robustness else "")


def _time_sentence(c: dict, target: str, m: Metric) -> str:
    """'A reached 97% 2.65x sooner than B (95% CI 1.80x–3.90x; ...)': the faster side first."""
    e: Effect = c["effect"]
    a_first, factor, low, high = e.sooner()
    (fast, sf, nf), (slow, ss, ns) = ((c["la"], c["sa"], c["na"]), (c["lb"], c["sb"], c["nb"]))[::1 if a_first else -1]
    p_imp = c["improvement"]
    if p_imp is not None and not a_first:
        p_imp = p_imp.complement()

    def times(s: Stat, n: int) -> str:
        return _describe(s, m) + ("" if s.n == n else f" ({s.n} of {n} seeds reached it)")

    parts = [f"95% CI {factor_text(low)}–{factor_text(high)}", f"{times(sf, nf)} against {times(ss, ns)}",
             _ns(nf, ns), _dominance(fast, slow, p_imp, "sooner"),
             _test_text(c["test"], c["p"], c["robustness"])]
    return f"{fast} reached {target} {factor_text(factor)} sooner than {slow} ({'; '.join(x for x in parts if x)})."


def _difference_sentence(c: dict, m: Metric, noun: str) -> str:
    """'A ended 0.17 points above B in final test accuracy (95% CI -0.30 to +0.64; ...)'."""
    e: Effect = c["effect"]
    a_first = (e.estimate >= 0) == m.higher_is_better
    (hi, sh), (lo, sl) = ((c["la"], c["sa"]), (c["lb"], c["sb"]))[::1 if a_first else -1]
    sign = 1 if a_first else -1
    low, high = sorted((sign * e.low * m.scale, sign * e.high * m.scale))
    size = abs(e.estimate) * m.scale
    d = m.decimals(size)
    better = "above" if m.higher_is_better else "below"
    p_imp = c["improvement"]
    if p_imp is not None and not a_first:
        p_imp = p_imp.complement()
    parts = [f"95% CI {low:+.{d}f} to {high:+.{d}f}".replace("-", "−"),
             f"{_describe(sh, m)} against {_describe(sl, m)}", _ns(sh.n, sl.n),
             _dominance(hi, lo, p_imp, "higher" if m.higher_is_better else "lower"),
             _test_text(c["test"], c["p"], c["robustness"])]
    if f"{size:.{d}f}" == f"{0:.{d}f}":  # no difference at the shown precision: neither side goes first
        return f"{c['la']} and {c['lb']} ended level in {noun} ({'; '.join(x for x in parts if x)})."
    return f"{hi} ended {size:.{d}f} {m.unit} {better} {lo} in {noun} ({'; '.join(x for x in parts if x)})."


def _no_test_sentence(m: Metric, la: str, a: Stat, na: int, lb: str, b: Stat, nb: int, target: str) -> str:
    """Why there is no test: nothing to compare, single runs, or no spread. `a.n` of `na` runs carry the metric."""
    def fmt(s: Stat, n: int) -> str:
        if m.censored:
            return f"{describe_stat(s, m)} ({s.n} of {n})" if s.n else f"none of {n} reached it"
        return describe_stat(s, m)

    neither = m.neither.format(target=target)
    if na == 0 or nb == 0:
        return f"No test possible: {la if na == 0 else lb} has no finished run."
    if a.n == 0 and b.n == 0:
        counts = f" (0 of {na} and 0 of {nb} seeds)" if m.censored else ""
        return f"No test possible: neither {la} nor {lb} {neither}{counts}."
    if not m.censored and (a.n == 0 or b.n == 0):
        (lx, nx), (ly, sy, ny) = ((la, na), (lb, b, nb)) if a.n == 0 else ((lb, nb), (la, a, na))
        return (f"{lx} {m.missing.format(target=target)} (0 of {nx} run{'s' * (nx != 1)}), against {fmt(sy, ny)} "
                f"for {ly} ({sy.n} of {ny}); no test possible.")
    counted = (na, nb) if m.censored else (a.n, b.n)
    if max(counted) < 2:
        return f"A single run each: no test possible ({la}: {fmt(a, na)}; {lb}: {fmt(b, nb)})."
    if min(counted) < 2:
        return (f"Too few runs for a test ({la}: {fmt(a, na)}, n = {counted[0]}; {lb}: {fmt(b, nb)}, "
                f"n = {counted[1]}).")
    if not m.censored:
        return (f"No spread in either group, so no test: identical values are no evidence ({la}: {m.fmt(a.mean)} "
                f"in all {a.n} runs; {lb}: {m.fmt(b.mean)} in all {b.n}).")
    return (f"No spread in either group, so no test: identical values are no evidence ({la}: {fmt(a, na)}; "
            f"{lb}: {fmt(b, nb)}).")


def _rank_sentence(m: Metric, la: str, a: Stat, na: int, lb: str, b: Stat, nb: int, u: float, p: float,
                   improvement: Interval | None, target: str) -> str:
    """Time to target when one side has no time to take a ratio of: the exact rank test alone."""
    def reach(s: Stat, n: int, short: bool = False) -> str:
        if not s.n:
            return f"none of {n} seed{'s' * (n != 1)} reached it"
        return f"{describe_stat(s, m)} ({s.n} of {n}{'' if short else ' seeds reached it'})"

    if u == na * nb / 2:
        return (f"{la} ({reach(a, na)}) and {lb} ({reach(b, nb, True)}) rank evenly on {m.noun.format(target=target)} "
                f"({RANKED}; {_ns(na, nb)}, {p_text(p)}).")
    a_wins = u < na * nb / 2  # a's times rank lower: a got there first
    (lw, sw, nw), (ll, sl, nl) = ((la, a, na), (lb, b, nb)) if a_wins else ((lb, b, nb), (la, a, na))
    if improvement is not None and not a_wins:
        improvement = improvement.complement()
    dominance = _dominance(lw, ll, improvement, "sooner")
    return (f"{lw} reached {target} sooner than {ll}: {reach(sw, nw)} against {reach(sl, nl, short=True)} "
            f"({dominance + '; ' if dominance else ''}{RANKED}; {_ns(na, nb)}, {p_text(p)}).")


def compare(a: Sequence[TrialResult], b: Sequence[TrialResult], metric: str = "accuracy",
            a_label: str = "A", b_label: str = "B", exploratory: bool = False) -> Comparison:
    """Compare two groups of runs on `metric` (a key of METRICS).

    Final accuracy: the difference in points with Welch's interval and test. Time (or epochs) to target, over
    every run that finished: when every seed reached the target, the ratio of geometric means with Welch's t on
    log times (a log-normal model); when some missed it, the same model fitted with those seeds censored at the
    time they trained (a seed that missed counts, it is not dropped), with the exact rank test beside it as a
    robustness check; when one side never reached it, or a seed diverged, the exact rank test alone."""
    m = METRICS[metric]
    sa, sb = metric_stat(a, metric), metric_stat(b, metric)
    target = target_text((list(a) or list(b))[0].spec.target) if (a or b) else "the target"
    noun = m.noun.format(target=target)
    effect = improvement = standardized = statistic = p = None
    test, robustness, min_p, sentence = "", "", 1.0, ""
    if m.censored:
        done = [[r for r in g if r.status in MEASURED] for g in (a, b)]
        na, nb = len(done[0]), len(done[1])
        ranked = [[v if (v := m.value(r)) is not None else math.inf for r in g] for g in done]
        if na and nb and (sa.n or sb.n):
            improvement = probability_of_improvement(*ranked, lower_is_better=True)
        rank = significance.mann_whitney(*ranked) if na >= 2 and nb >= 2 and (sa.n or sb.n) else None
        fit = None
        if sa.n == na >= 2 and sb.n == nb >= 2:
            tested = significance.welch_log(sa.values, sb.values)
            if tested:
                test, (statistic, p), min_p = WELCH_LOG, tested, 0.0
                effect = ratio_of_times(sa.values, sb.values)
                standardized = _effect_sizes(*(Stat(tuple(math.log(v) for v in s.values)) for s in (sa, sb)))[0]
        elif rank and sa.n and sb.n and all(r.status == "budget" for g in done for r in g if m.value(r) is None):
            # Censored where it stopped only when it ran its whole budget: a diverged seed would never have got
            # there, so it has no censoring time; the rank test (slowest of all) is the one that treats it right.
            stops = [[v if (v := m.value(r)) is not None else m.censor(r) for r in g] for g in done]
            fit = significance.censored_lognormal(stops[0], [m.value(r) is not None for r in done[0]],
                                                  stops[1], [m.value(r) is not None for r in done[1]])
        if fit:
            test, statistic, p, min_p = CENSORED, fit.statistic, fit.p, 0.0
            effect = Effect(fit.ratio, fit.low, fit.high, "ratio", CENSORED)
            standardized = math.log(fit.ratio) / fit.sigma
            robustness = f"exact rank test {p_text(rank[1])}"
        elif rank and not test:
            test, (statistic, p), min_p = RANK, rank, significance.min_p_rank(na, nb)
        complete = sa.n == na and sb.n == nb  # effect sizes of means only when no seed is left out
    else:
        na, nb = len(a), len(b)
        if sa.n and sb.n:
            improvement = probability_of_improvement(sa.values, sb.values, lower_is_better=not m.higher_is_better)
        tested = significance.welch(sa.values, sb.values) if sa.n >= 2 and sb.n >= 2 else None
        if tested:
            test, (statistic, p), min_p = WELCH, tested, 0.0
            effect = difference(sa.values, sb.values)
        complete = True
    d, g = _effect_sizes(sa, sb) if complete else (None, None)
    if test == WELCH:
        standardized = d
    diff = sa.mean - sb.mean if sa.n and sb.n and complete else None
    parts = dict(la=a_label, lb=b_label, sa=sa, sb=sb, na=na, nb=nb, effect=effect, improvement=improvement,
                 test=test, p=p, robustness=robustness)
    if effect is not None and effect.kind == "ratio":
        sentence = _time_sentence(parts, target, m)
    elif effect is not None:
        sentence = _difference_sentence(parts, m, noun)
    elif test == RANK:
        sentence = _rank_sentence(m, a_label, sa, na, b_label, sb, nb, statistic, p, improvement, target)
    else:
        sentence = _no_test_sentence(m, a_label, sa, na, b_label, sb, nb, target)
    mix = {}
    if metric in TIMED_METRICS and not mixed_environments_allowed_now():
        mix = {**environment_mix([*a, *b], SHARED_FACTORS), **environment_mix(a), **environment_mix(b)}
    if mix:  # times from different machines, thread counts or builds measure the environment too: no test
        test, statistic, p, d, g, diff, effect, improvement, standardized, min_p, robustness = (
            "", None, None, None, None, None, None, None, None, 1.0, "")
        sentence = (f"Not tested: the {noun} of {a_label} and {b_label} was measured in mixed environments "
                    f"({mix_text(mix)}); times are compared only within one environment (--allow-mixed tests "
                    "them anyway).")
    return Comparison(metric, noun, a_label, b_label, sa, sb, na, nb, diff, d, g, test, statistic, p, sentence,
                      exploratory, effect, improvement, standardized, min_p, robustness)
