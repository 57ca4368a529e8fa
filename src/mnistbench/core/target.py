"""Time-to-target finer than the evaluation cadence: weight snapshots between evaluations, and a search over
them once a cadence evaluation first meets the target.

The rule: between the last evaluation that missed the target (or the start) and the first that met it,
the loop keeps in-memory snapshots of the weights and BatchNorm buffers every `snapshot_every` steps, taken
off the clock with the timed seconds at that step. The search evaluates the snapshots in order and stops at the
first that meets the target: the reported time-to-target is that snapshot's, and its resolution is the gap to
the one before it (which missed) in steps and seconds. Accuracy near the target is noisy (its standard error
on 10,000 images is about 0.17 points) and dips are ordinary, so a bisection, which assumes accuracy rises
monotonically, can land on a later crossing; the scan cannot. It costs at most one evaluation per snapshot
of the interval, once per trial, and the trial stores how many it spent."""

from __future__ import annotations

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
    """The first of `candidates` that meets the target. They are ordered by step: the first is known to miss
    (the last evaluation that did, or the start), the last is known to meet (the evaluation that found it)."""
    evaluations = 0
    for before, snapshot in zip(candidates, candidates[1:-1]):
        evaluations += 1
        if meets(snapshot):
            return Crossing(snapshot, before, evaluations)
    return Crossing(candidates[-1], candidates[-2], evaluations)


def max_search_evaluations(snapshots: int) -> int:
    """The most evaluations one search over an interval holding `snapshots` snapshots (hit included) costs:
    every snapshot but the hit, already evaluated."""
    return max(0, snapshots - 1)
