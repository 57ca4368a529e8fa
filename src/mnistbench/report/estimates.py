"""Effects with their 95% intervals, the first thing a comparison says: a ratio of times (geometric means, interval
on the log scale), a difference of accuracies in points, and the probability that one configuration beats the
other (rliable's probability of improvement, Agarwal et al. 2021), with a resampling interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95  # of every interval in a report
RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by well under 0.01 between seeds of the resampler


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def complement(self) -> "Interval":
        """1 - this probability and its interval: P(B better than A) from P(A better than B)."""
        return Interval(1 - self.estimate, 1 - self.high, 1 - self.low)


@dataclass(frozen=True)
class Effect(Interval):
    """A's effect over B: `ratio` of A's time to B's (below 1: A sooner), or `difference` A - B in a metric's
    own unit; `method` says where the interval comes from."""

    kind: Literal["ratio", "difference"] = "difference"
    method: str = ""

    def sooner(self) -> tuple[bool, float, float, float]:
        """For a ratio of A's time to B's: whether A is the sooner one, and by what factor (>= 1), with its
        interval in the same direction. Sentences name the faster side first."""
        if self.estimate <= 1:
            return True, 1 / self.estimate, 1 / self.high, 1 / self.low
        return False, self.estimate, self.low, self.high


def ratio_of_times(a: Sequence[float], b: Sequence[float]) -> Effect:
    """Geometric mean of `a` over that of `b`, with Welch's interval on the log scale: the interval of the
    test that decides it (welch_log), so the two never disagree about whether 1 is excluded."""
    la, lb = np.log(a), np.log(b)
    res = stats.ttest_ind(la, lb, equal_var=False)
    low, high = res.confidence_interval(LEVEL)
    return Effect(float(math.exp(la.mean() - lb.mean())), float(math.exp(low)), float(math.exp(high)),
                  "ratio", "Welch's t on log times")


def difference(a: Sequence[float], b: Sequence[float]) -> Effect:
    """mean(a) - mean(b) with Welch's interval."""
    res = stats.ttest_ind(a, b, equal_var=False)
    low, high = res.confidence_interval(LEVEL)
    return Effect(float(np.mean(a) - np.mean(b)), float(low), float(high), "difference", "Welch's t")


def _p_better(a: np.ndarray, b: np.ndarray, lower_is_better: bool, axis: int = -1) -> np.ndarray:
    """The share of (a, b) pairs in which a is better, a tie counting half (inf against inf is a tie); over the
    last axis, for every resample at once (scipy.stats.bootstrap's vectorized form)."""
    a, b = np.moveaxis(a, axis, -1)[..., :, None], np.moveaxis(b, axis, -1)[..., None, :]
    wins = (a < b) if lower_is_better else (a > b)
    return wins.mean(axis=(-2, -1)) + 0.5 * (a == b).mean(axis=(-2, -1))


def probability_of_improvement(a: Sequence[float], b: Sequence[float], lower_is_better: bool,
                               seed: int = 0) -> Interval:
    """P(a seed of A does better than a seed of B), with a percentile bootstrap interval that resamples seeds
    within each group (as rliable does). A time of +inf (never reached) loses to every finite time. With a few
    seeds a side the resampled values take few distinct values and the interval is too narrow: the report
    says so beside it."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = float(_p_better(xa, xb, lower_is_better))
    if len(xa) < 2 or len(xb) < 2:
        return Interval(estimate, 0.0, 1.0)
    res = stats.bootstrap((xa, xb), lambda x, y, axis: _p_better(x, y, lower_is_better, axis), paired=False,
                          vectorized=True, n_resamples=RESAMPLES, confidence_level=LEVEL, method="percentile",
                          rng=np.random.default_rng(seed))
    return Interval(estimate, float(res.confidence_interval.low), float(res.confidence_interval.high))


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half, robust to one outlying seed (rliable's aggregate)."""
    return float(stats.trim_mean(values, 0.25))
