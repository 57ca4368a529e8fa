"""Significance tests over seeds and the rules of a family of them: Welch's t (on values or on log times), a
censored log-normal likelihood-ratio test, an exact Mann-Whitney rank test, each test's smallest achievable p,
Tarone's rule, Holm's correction, and the seeds a side that would give 80% power.

Each test answers None rather than a p-value when the data cannot say anything: identical values are no
evidence (SciPy's Welch test answers p = 0 when neither group varies and the means differ)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize, special, stats

ALPHA = 0.05  # two-sided significance level of every comparison


def no_spread(a: Sequence[float], b: Sequence[float]) -> bool:
    """Neither group varies. Compared exactly: a computed variance of equal floats is not always 0."""
    return len(set(a)) <= 1 and len(set(b)) <= 1


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Welch's t and its two-sided p; None when neither group varies. Needs two values in each group.
    SciPy's own warnings (nearly identical values make p unreliable) are left to reach the user."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs at least two values in each group")
    if no_spread(a, b):
        return None
    res = stats.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Mann-Whitney U of `a` (pairs in which a's value is the larger, ties counting half) and its exact
    two-sided p: the rank sum of `a` against its distribution over every split of the pooled mid-ranks into
    groups of these sizes, p = 2 x the smaller tail, capped at 1 (as scipy.stats.permutation_test does).
    Exact for any n and any ties, so +inf for "never reached" ties honestly. None when all values are equal."""
    if not a or not b:
        raise ValueError("a rank test needs values in both groups")
    pooled = np.asarray([*a, *b], dtype=float)
    if len(set(pooled.tolist())) == 1:
        return None
    ranks = stats.rankdata(pooled)  # mid-ranks: multiples of 1/2, so twice them are integers
    doubled = np.rint(2 * ranks).astype(np.int64)
    n1 = len(a)
    top = int(doubled.sum())
    # ways[k, s]: how many k-subsets of the values seen so far have doubled rank sum s.
    ways = np.zeros((n1 + 1, top + 1))
    ways[0, 0] = 1.0
    for r in doubled:
        ways[1:, r:] += ways[:-1, :top + 1 - r].copy()
    null = ways[n1] / ways[n1].sum()
    observed = int(doubled[:n1].sum())
    p = min(1.0, 2 * min(null[:observed + 1].sum(), null[observed:].sum()))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    return u, float(p)


def holm_adjusted(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: the smallest family-wise level at which each would be rejected."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def holm(ps: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Which of several p-values stay significant when all of them are claimed at once (Holm's step-down).
    A report makes a dozen comparisons; at p < 0.05 each, one in twenty null effects would pass by chance."""
    return [q < alpha for q in holm_adjusted(ps)]


def welch_log(a: Sequence[float], b: Sequence[float]) -> tuple[float, float] | None:
    """Welch's t on log values: the test of a ratio of geometric means under a log-normal model of times.
    Times to target are positive and skewed, and a technique changes them by a factor, not by seconds."""
    if min(a, default=0) <= 0 or min(b, default=0) <= 0:
        raise ValueError("log times need positive values")
    return welch(np.log(a).tolist(), np.log(b).tolist())


@dataclass(frozen=True)
class CensoredFit:
    """log T ~ Normal(mu_group, sigma), right-censored where a seed stopped before the target (an accelerated
    failure time model with a common scale). `ratio` = exp(mu_a - mu_b) with its 95% profile-likelihood
    interval, and the likelihood-ratio test of mu_a = mu_b.

    The chi-square reference of a likelihood ratio is far too liberal at a few seeds a side (it ignores that
    sigma is estimated), so both are calibrated on Student's t: without censoring the statistic is a function
    of the pooled t, LR = n log(1 + t^2 / (n - 2)), and inverting that map gives exactly the pooled-variance
    t-test and its interval. With censoring the same map is read with df = (seeds at the target) - 2: fewer
    degrees of freedom where fewer times were observed."""

    ratio: float
    low: float
    high: float
    statistic: float
    p: float
    sigma: float  # the common scale of log times: log(ratio) / sigma is the standardized effect


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _censored_loglik(mu: np.ndarray, log_sigma: float, logs: np.ndarray, reached: np.ndarray) -> float:
    sigma = math.exp(log_sigma)
    z = (logs - mu) / sigma
    # special.log_ndtr(-z) is the normal's log survival function; called directly, it is ~50x faster than
    # stats.norm.logsf, which matters inside the profile search's hundreds of fits.
    return float(np.sum(np.where(reached, -0.5 * z * z - _LOG_SQRT_2PI - log_sigma, special.log_ndtr(-z))))


def censored_lognormal(a: Sequence[float], a_reached: Sequence[bool], b: Sequence[float],
                       b_reached: Sequence[bool]) -> CensoredFit | None:
    """Fit the model above to two groups of times, where a seed that missed the target is censored at the timed
    seconds it trained. None when the fit cannot be identified: a group with no seed at the target (its time is
    only bounded below), fewer than three seeds at the target or four seeds in all, or no spread among them."""
    logs = np.log(np.asarray([*a, *b], dtype=float))
    reached = np.asarray([*a_reached, *b_reached], dtype=bool)
    in_a = np.arange(len(logs)) < len(a)
    if not (reached & in_a).any() or not (reached & ~in_a).any() or reached.sum() < 3:
        return None
    if np.ptp(logs[reached]) == 0 or len(logs) < 4:
        return None

    def fit(delta: float | None) -> tuple[float, np.ndarray]:
        """Maximized log-likelihood with mu_a - mu_b fixed at `delta`, or free when None."""
        def nll(x: np.ndarray) -> float:
            mu_b, log_sigma = x[0], x[1]
            d = x[2] if delta is None else delta
            return -_censored_loglik(np.where(in_a, mu_b + d, mu_b), log_sigma, logs, reached)

        start = [logs[reached & ~in_a].mean(), math.log(max(np.std(logs[reached]), 1e-3))]
        if delta is None:
            start.append(logs[reached & in_a].mean() - start[0])
        best = optimize.minimize(nll, np.asarray(start), method="BFGS", options={"gtol": 1e-8})
        return -best.fun, best.x

    top, x = fit(None)
    delta_hat = float(x[2])
    n, df = len(logs), max(1, int(reached.sum()) - 2)
    statistic = max(0.0, 2 * (top - fit(0.0)[0]))
    t = math.sqrt((n - 2) * math.expm1(statistic / n))  # the LR statistic as the t it equals without censoring
    p = float(2 * stats.t.sf(t, df))
    cut = n * math.log1p(float(stats.t.ppf(0.975, df)) ** 2 / (n - 2)) / 2

    def drop(d: float) -> float:  # > 0 outside the 95% profile interval
        return top - fit(d)[0] - cut

    def bound(direction: int) -> float:
        step = max(abs(delta_hat), 0.1)
        for _ in range(60):
            far = delta_hat + direction * step
            if drop(far) > 0:
                return optimize.brentq(drop, *sorted((delta_hat, far)), xtol=1e-7)
            step *= 2
        return direction * math.inf  # the likelihood never falls far enough: unbounded on this side

    return CensoredFit(math.exp(delta_hat), math.exp(bound(-1)), math.exp(bound(+1)), statistic, p,
                       math.exp(float(x[1])))


def min_p_rank(na: int, nb: int) -> float:
    """The smallest two-sided p the exact rank test can give with these group sizes: every value of one group
    beyond every value of the other, one split among C(na + nb, na)."""
    return min(1.0, 2 / math.comb(na + nb, na)) if na and nb else 1.0


def tarone(min_ps: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Which tests belong in the family (Tarone 1990): the smallest K such that at most K tests can reach
    alpha / K. A test whose smallest achievable p cannot pass its threshold only dilutes the others; leaving it
    out costs nothing, since it could never have been claimed. Continuous tests (min p 0) always stay in."""
    m = len(min_ps)
    for k in range(1, m + 1):
        inside = [p <= alpha / k for p in min_ps]
        if sum(inside) <= k:
            return inside
    return [True] * m


def power_t(effect: float, n: int, alpha: float) -> float:
    """Power of a two-sided two-sample t-test with n a side at level alpha, for a standardized effect
    (difference over the common standard deviation): the noncentral t."""
    df = 2 * n - 2
    ncp = abs(effect) * math.sqrt(n / 2)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def seeds_to_decide(effect: float | None, alpha: float, power: float = 0.8, most: int = 1000) -> int | None:
    """Seeds a side for `power` at level `alpha` if the true standardized effect were the one observed; None
    when there is no effect to power, or more than `most` would be needed."""
    if effect is None or not math.isfinite(effect) or effect == 0:
        return None
    # The normal approximation undershoots the t-test's n by a seed or two: start just below it, step up.
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    start = max(2, int(2 * (z / abs(effect)) ** 2) - 2)
    if power_t(effect, start, alpha) >= power:
        start = 2
    for n in range(start, most + 1):
        if power_t(effect, n, alpha) >= power:
            return n
    return None
