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
    eval_every: int = 0  # the longest gap between cadence evaluations until the target; 0: only at epoch ends
    snapshot_every: int = 0  # steps between weight snapshots for the search; 0: no search (cadence is as fine)
    check_every: int = CHECK_EVERY
    # Where in each epoch the cadence evaluates until the target (steps since the epoch began), the epoch's end
    # always last; empty means (steps_per_epoch,). Counted from each epoch's start, so a cadence never lands
    # one step before an epoch end (469 steps at 4 per epoch: 117, 234, 352, 469; not 117, ..., 468, 469).
    cadence: tuple[int, ...] = ()
    grow_from: int | None = None  # the batch from which grow_by batches make one step (TrialSpec.grow_at)
    grow_by: int = 1

    def batches_at(self, step: int, stop: int) -> int:
        """How many batches the optimizer step starting at batch `step` takes: from grow_from on, the rest of
        its group of grow_by (the groups start at grow_from + j * grow_by, whatever cut one before), never past
        `stop` (the loop's next stop: a check, which falls on a group's end, or an epoch's or the budget's end;
        TrialSpec refuses cadence evaluations with a growing batch, so evaluating never changes the steps)."""
        if self.grow_from is None or step < self.grow_from:
            return 1
        return min(self.grow_by - (step - self.grow_from) % self.grow_by, stop - step)

    def step_counts(self) -> tuple[int, int]:
        """(steps of one batch, merged steps) in a whole run, for an estimate (an evaluation or an epoch's end
        may cut a merge short: a few more, smaller steps)."""
        if self.grow_from is None or self.grow_from >= self.total_steps:
            return self.total_steps, 0
        return self.grow_from, -(-(self.total_steps - self.grow_from) // self.grow_by)

    def batch_sizes(self, batch_size: int, n_train: int) -> set[int]:
        """Every batch shape a run can train on: full batches, the epoch's smaller last one if the run gets
        there, and from grow_from on the merged ones (a merge cut short, or holding the epoch's last batch)."""
        last = n_train % batch_size or batch_size
        reaches_end = self.total_steps >= self.steps_per_epoch
        ks = range(1, (self.grow_by if self.grow_from is not None else 1) + 1)
        sizes = {min(k * batch_size, n_train) for k in ks}
        if reaches_end:
            sizes |= {min((k - 1) * batch_size + last, n_train) for k in ks}
        return sizes

    def _offsets(self) -> tuple[int, ...]:
        return self.cadence or (self.steps_per_epoch,)

    def next_cadence(self, step: int) -> int:
        """The first cadence point after `step` (an epoch end at the latest)."""
        start = step - step % self.steps_per_epoch
        return start + next(o for o in self._offsets() if start + o > step)

    def at_cadence(self, step: int) -> bool:
        return step > 0 and (step - 1) % self.steps_per_epoch + 1 in self._offsets()

    @property
    def snapshots_per_interval(self) -> int:
        """How many snapshots one cadence interval holds (the search's evaluations are at most log2 of it)."""
        return math.ceil(self.eval_every / self.snapshot_every) if self.snapshot_every else 1

    def cadence_evaluations(self) -> int:
        """The points of a run's curve when its target is reached at the end of the first epoch (where the
        targets we use usually are) or never: the cadence over the first epoch (or the budget, if shorter),
        then one evaluation at every epoch end, a cut last epoch included."""
        first_end = min(self.total_steps, self.steps_per_epoch)
        fine = sum(o < first_end for o in self._offsets())
        return fine + math.ceil(self.total_steps / self.steps_per_epoch)

    def expected_evaluations(self) -> float:
        """Full evaluations a run is expected to make, for the dry-run estimate: the curve's points plus one
        snapshot search, which scans the interval in order and stops at the first hit: half its bound when the
        crossing is equally likely anywhere in the interval."""
        from .target import max_search_evaluations  # the search's own rule, stated there

        search = max_search_evaluations(self.snapshots_per_interval) / 2 if self.snapshot_every else 0
        return self.cadence_evaluations() + search


def horizon(spec, n_train: int) -> Horizon:
    """The horizon of `spec` trained on `n_train` images (the training split less any validation split)."""
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    total_steps = spec.steps or max(1, round((spec.epochs or 1) * steps_per_epoch))
    if spec.eval_every is None:  # EVALS_PER_EPOCH evenly spaced points, the last at the epoch's end
        cadence = tuple(sorted({round(k * steps_per_epoch / EVALS_PER_EPOCH) for k in range(1, EVALS_PER_EPOCH + 1)}
                               - {0}))
    else:
        cadence = tuple(range(spec.eval_every, steps_per_epoch, spec.eval_every)) if spec.eval_every else ()
        cadence += (steps_per_epoch,)
    eval_every = max(b - a for a, b in zip((0,) + cadence, cadence)) if spec.eval_every != 0 else 0
    fine = max(1, steps_per_epoch // SNAPSHOTS_PER_EPOCH)
    # Snapshots only pay when the cadence is coarser than the resolution asked for; with eval_every = 0
    # (epoch ends only, as the speedrun asks) no snapshots are kept: time-to-target is then per epoch.
    snapshot_every = fine if eval_every > fine else 0
    # A growing batch merges grow_by batches from a multiple of grow_by on (grow_at of the budget, rounded down,
    # at least grow_by), and the divergence check falls on such multiples too, so that it never cuts a merged
    # step short (an epoch's end can: the group is then finished by a smaller step).
    grow_by = spec.grow_by if spec.grow_at is not None else 1
    grow_from = None
    if spec.grow_at is not None:
        grow_from = max(1, math.floor(spec.grow_at * total_steps / grow_by)) * grow_by
    check_every = -(-CHECK_EVERY // grow_by) * grow_by
    return Horizon(steps_per_epoch, total_steps, eval_every, snapshot_every, check_every, cadence, grow_from,
                   grow_by)


def cadence_text(eval_every: int | None) -> str:
    """The cadence in words, for the report's method section."""
    if eval_every is None:
        return f"{EVALS_PER_EPOCH} times per epoch"
    return "at the end of each epoch" if eval_every == 0 else f"every {eval_every} steps"
