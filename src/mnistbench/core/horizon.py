"""Horizon: every count a trial derives from its spec and its training-set size, in one place.

Steps per epoch, the step budget, the evaluation cadence ("no eval_every means EVALS_PER_EPOCH per epoch"),
the snapshot interval of the time-to-target search and the divergence-check interval are all computed here,
and the training loop, the dry-run estimate and the report read them from here (as AlgoPerf's workload owns
its step hint and eval period)."""

from __future__ import annotations

import math
from dataclasses import dataclass

EVALS_PER_EPOCH = 4  # default cadence until the target; the snapshot search resolves time-to-target finer
SNAPSHOTS_PER_EPOCH = 50  # time-to-target is resolved to at most 1/50 epoch (9 steps at batch 128 on MNIST)
CHECK_EVERY = 25  # steps between off-the-clock checks of the running loss for NaN/inf


@dataclass(frozen=True)
class Horizon:
    """What the loop, a schedule and an estimate need to know about the run's length and cadences."""

    steps_per_epoch: int
    total_steps: int
    eval_every: int = 0  # steps between cadence evaluations until the target; 0: only at epoch ends
    snapshot_every: int = 0  # steps between weight snapshots for the search; 0: no search (cadence is as fine)
    check_every: int = CHECK_EVERY

    @property
    def snapshots_per_interval(self) -> int:
        """How many snapshots one cadence interval holds (the search's evaluations are at most log2 of it)."""
        return math.ceil(self.eval_every / self.snapshot_every) if self.snapshot_every else 1

    def cadence_evaluations(self) -> int:
        """The points of a run's curve when its target is reached at the end of the first epoch (where the
        targets we use usually are) or never: the cadence over the first epoch (or the budget, if shorter),
        then one evaluation at every epoch end, a cut last epoch included."""
        first_end = min(self.total_steps, self.steps_per_epoch)
        fine = (first_end - 1) // self.eval_every if self.eval_every else 0
        return fine + math.ceil(self.total_steps / self.steps_per_epoch)

    def expected_evaluations(self) -> float:
        """Full evaluations a run is expected to make, for the dry-run estimate: the curve's points plus one
        snapshot search (at most log2 of the snapshots in a cadence interval)."""
        search = math.ceil(math.log2(self.snapshots_per_interval)) if self.snapshot_every else 0
        return self.cadence_evaluations() + search


def horizon(spec, n_train: int) -> Horizon:
    """The horizon of `spec` trained on `n_train` images (the training split less any validation split)."""
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    total_steps = spec.steps or max(1, round((spec.epochs or 1) * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // EVALS_PER_EPOCH) if spec.eval_every is None else spec.eval_every
    fine = max(1, steps_per_epoch // SNAPSHOTS_PER_EPOCH)
    # Snapshots only pay when the cadence is coarser than the resolution asked for; with eval_every = 0
    # (epoch ends only, as the speedrun asks) no snapshots are kept: time-to-target is then per epoch.
    snapshot_every = fine if eval_every > fine else 0
    return Horizon(steps_per_epoch, total_steps, eval_every, snapshot_every, CHECK_EVERY)


def cadence_text(eval_every: int | None) -> str:
    """The cadence in words, for the report's method section."""
    if eval_every is None:
        return f"{EVALS_PER_EPOCH} times per epoch"
    return "at the end of each epoch" if eval_every == 0 else f"every {eval_every} steps"
