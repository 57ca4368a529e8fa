"""Time-to-target finer than the evaluation cadence: weight snapshots between evaluations, and a binary
search over them once a cadence evaluation first meets the target.

The rule: between the last evaluation that missed the target (or the start) and the first that met it,
the loop keeps in-memory snapshots of the weights and BatchNorm buffers every `snapshot_every` steps, taken
off the clock with the timed seconds at that step. The search evaluates snapshots by bisection, keeping a
known miss `lo` and a known hit `hi`, until they are neighbours; the reported time-to-target is `hi`'s, and
its resolution is the gap to `lo` in steps and seconds: the crossing the search found lies in (lo, hi].
When accuracy rises monotonically between the two evaluations this is the first crossing; if it dips, the
search still returns a real crossing (a snapshot that meets the target right after one that does not).
It costs at most ceil(log2(snapshots in the interval)) extra evaluations, once per trial."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class Snapshot:
    """The model's state after `step` training steps, taken when the timed clock read `train_seconds`."""

    step: int
    train_seconds: float
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # None: no need to evaluate it

    @classmethod
    def of(cls, model: nn.Module, step: int, train_seconds: float) -> "Snapshot":
        # state_dict holds the BatchNorm running statistics too, so eval-mode accuracy is reproduced exactly.
        return cls(step, train_seconds, {k: v.detach().clone() for k, v in model.state_dict().items()})


@dataclass(frozen=True)
class Crossing:
    """Where the search put the target: reached at `hit`, known missed at `miss`; `evaluations` it spent."""

    hit: Snapshot
    miss: Snapshot
    evaluations: int

    @property
    def resolution_steps(self) -> int:
        return self.hit.step - self.miss.step

    @property
    def resolution_seconds(self) -> float:
        return self.hit.train_seconds - self.miss.train_seconds


def search_crossing(candidates: list[Snapshot], meets: Callable[[Snapshot], bool]) -> Crossing:
    """Bisect `candidates` (ordered by step; the first known to miss, the last known to meet)."""
    lo, hi, evaluations = 0, len(candidates) - 1, 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        evaluations += 1
        if meets(candidates[mid]):
            hi = mid
        else:
            lo = mid
    return Crossing(candidates[hi], candidates[lo], evaluations)


def max_search_evaluations(snapshots: int) -> int:
    """The most evaluations one search over an interval holding `snapshots` snapshots (hit included) costs."""
    return math.ceil(math.log2(snapshots)) if snapshots > 1 else 0
