"""TrialResult and its parts: what one trial measured, serializable to and from plain JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .spec import TrialSpec

Status = Literal["reached", "budget", "diverged", "failed", "pruned"]  # pruned: a tuning trial stopped as hopeless

# What each status means, in one place; every module reads these sets instead of spelling its own.
# Tuples, not sets: the store writes FINISHED into SQL, whose text must not change with Python's hash seed.
FINISHED = ("reached", "budget", "diverged", "pruned")  # the attempt ended as designed: resume skips it
MEASURED = ("reached", "budget", "diverged")  # counts in statistics (a crash or a pruned probe does not)
COMPLETE = ("reached", "budget")  # trained to its end: a final accuracy, can win a choice, is worth keeping
BROKEN = ("diverged", "failed")  # shown apart in tables and curves


@dataclass
class CurvePoint:
    """One evaluation. train_seconds is the timed training clock; wall_seconds includes evaluations."""

    step: int
    epoch: float
    train_seconds: float
    wall_seconds: float
    train_loss: float  # mean over the steps since the previous evaluation
    eval_accuracy: float | None  # None: a partial evaluation (below the target is all it says)
    eval_loss: float | None
    lr: float  # the rate the steps since the previous evaluation ran at
    # Images the evaluation read: None, the whole split. A cadence evaluation before the target stops once its
    # misses exceed what the target allows (it can no longer meet it), reading the likeliest misses first: the
    # point is partial, and stores no accuracy or loss (those of the images it read would not be the split's).
    seen: int | None = None

    @property
    def partial(self) -> bool:
        return self.seen is not None


@dataclass
class EpochPoint:
    """The notebook's per-epoch history (epoch may be fractional for a final partial epoch)."""

    epoch: float
    train_loss: float
    eval_accuracy: float
    eval_loss: float
    epoch_seconds: float  # timed training seconds of this epoch only


@dataclass
class TrialResult:
    spec: TrialSpec
    status: Status
    final_accuracy: float | None  # on the test split, after the last step
    final_loss: float | None
    time_to_target_s: float | None  # timed training seconds at the first crossing the snapshot search found
    steps_to_target: int | None
    epochs_to_target: float | None
    steps: int
    train_seconds: float  # the timed clock: training steps only
    eval_seconds: float  # untimed evaluation work, reported so the overhead is visible
    wall_seconds: float  # model creation + training + evaluations (data loading excluded)
    load_seconds: float
    compile_seconds: float
    device: str
    # The crossing lies within this many steps / timed seconds before the reported one (core/target.py);
    # None when the target was not reached (or for results stored before the search existed).
    target_resolution_steps: int | None = None
    target_resolution_s: float | None = None
    warmup_seconds: float = 0.0  # the untimed warm-up on a throwaway copy before the clock (like compile_seconds)
    evaluations: int = 0  # full evaluations run: the cadence, the target search and a final one if needed
    curve: list[CurvePoint] = field(default_factory=list)
    epochs: list[EpochPoint] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    model: Any = field(default=None, repr=False, compare=False)  # the trained module; never serialized

    @property
    def reached(self) -> bool:
        return self.time_to_target_s is not None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "spec")}
        out["curve"] = [asdict(p) for p in self.curve]
        out["epochs"] = [asdict(p) for p in self.epochs]
        out["spec"] = self.spec.model_dump(mode="json")
        out["spec_id"] = self.spec.id
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialResult":
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        d["spec"] = TrialSpec(**d["spec"])
        d["curve"] = [CurvePoint(**p) for p in d.get("curve", [])]
        d["epochs"] = [EpochPoint(**p) for p in d.get("epochs", [])]
        return cls(**d)
