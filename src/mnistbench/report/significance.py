"""Significance tests over seeds: Welch's t-test, an exact Mann-Whitney rank test, Holm's correction.

Each answers None rather than a p-value when the data cannot say anything: identical values are no
evidence (SciPy's Welch test answers p = 0 when neither group varies and the means differ)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

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
