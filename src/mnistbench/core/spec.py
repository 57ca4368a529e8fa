"""TrialSpec: everything that defines one training run, validated, with a stable content id."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from .models import MODELS
from .horizon import EVALS_PER_EPOCH
from .recipes import OPTIMIZERS, SCHEDULES, check_recipe

# "auto": bf16 where the device computes it natively, fp32 where bf16 would be emulated (core.hardware)
Precision = Literal["fp32", "bf16", "auto"]


class TrialSpec(BaseModel):
    """One trial: workload (dataset, model, target) + recipe (optimizer, schedule, batch size, precision)
    + budget + seed. Frozen and hashable; `id` names it in the store so a rerun can skip it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = "mnist"
    model: str = "seed-simple"
    optimizer: str = "sgd"
    lr: float = Field(0.01, gt=0, allow_inf_nan=False, description="initial (or peak) learning rate")
    optimizer_args: dict[str, Any] = Field(default_factory=dict)
    schedule: str = "constant"
    schedule_args: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(128, gt=0)
    epochs: float | None = Field(1.0, gt=0, description="budget in epochs (fractions allowed)")
    steps: int | None = Field(None, gt=0, description="budget in batches of batch_size (optimizer steps, unless "
                              "grow_at merges late ones); overrides epochs")
    target: float = Field(0.97, gt=0, le=1, description="accuracy that counts as reached")
    stop_at_target: bool = False
    eval_every: int | None = Field(None, ge=0, description="steps between evaluations until the target; "
                                   f"None: {EVALS_PER_EPOCH} per epoch; 0: only at epoch ends")
    eval_on: Literal["test", "val"] = "test"
    val_size: int = Field(0, ge=0)
    eval_batch_size: int | None = Field(None, gt=0, description="None: the device's measured best")
    precision: Precision = "fp32"
    channels_last: bool | None = Field(None, description="None: the model's measured best layout")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # A batch that grows late in the run, where the gradient's noise matters less and a large batch costs less
    # per image (a speedrun step of 512 took 0.68-0.75x the time of two of 256 on the 2-core AMX Xeon): from
    # grow_at of the budget on, grow_by consecutive batches make one optimizer step at grow_lr times the
    # schedule's rate. The budget, the epochs and the schedule still count batches of batch_size (the rate
    # follows the images seen). The groups and their cuts are the horizon's (core/horizon.py).
    grow_at: float | None = Field(None, gt=0, lt=1, description="fraction of the budget from which grow_by batches "
                                  "make one step; None: the batch never grows")
    grow_by: int = Field(2, ge=2, description="batches per step from grow_at on")
    grow_lr: float = Field(1.0, gt=0, allow_inf_nan=False, description="the rate of a merged step, times the "
                           "schedule's")
    ema: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights, which "
                       "is evaluated and saved instead of them (0.999 is usual); 0: none")
    # Intra-op CPU threads. Set, it is part of what is compared (and of the id): every executor runs the
    # trial with exactly that many. Unset (the default), the executor resolves it to an explicit number for
    # where the trial runs (all usable cores in-process, an equal share in a pool, the task's CPUs on Ray) and
    # the number is stored in the trial's environment, not in the id: a run resumed with other --workers
    # then reuses the trials already stored, and the configuration is marked "mixed environment" so that
    # its times are not tested against others unless asked (--allow-mixed). Putting the resolved count in the
    # id instead would silently split one configuration in two and rerun every stored trial on resume.
    threads: int | None = Field(None, gt=0, description="CPU threads; None: resolved by the executor")
    compile: bool = False
    device: str = "auto"
    seed: int = Field(0, ge=0)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        MODELS.get(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> "TrialSpec":
        check_recipe(self.optimizer, self.optimizer_args, self.schedule, self.schedule_args, lr=self.lr)
        if self.ema and OPTIMIZERS.get(self.optimizer).seam:
            raise ValueError(f"optimizer '{self.optimizer}' already evaluates averaged weights: leave ema at 0")
        if self.eval_on == "val" and self.val_size == 0:
            raise ValueError("eval_on 'val' needs val_size > 0")
        if SCHEDULES.get(self.schedule).on_metric and self.eval_on != "val":
            # Stepping on test accuracy would let the test set shape training and then grade it.
            raise ValueError(f"schedule '{self.schedule}' steps on the evaluation accuracy, which must not be the "
                             "test set: set eval_on = \"val\" and val_size > 0 (--eval-on val --val-size 10000)")
        if self.grow_at is None and (self.grow_by != 2 or self.grow_lr != 1.0):
            raise ValueError("grow_by and grow_lr apply from grow_at on: set grow_at (a fraction of the budget)")
        if self.grow_at is not None and self.eval_every != 0:
            # Cadence evaluations (and the snapshots between them) would cut merged steps where they fall, so
            # how often a run is evaluated would change what it trains.
            raise ValueError("grow_at needs eval_every = 0 (evaluations at epoch ends only): evaluations between "
                             "would cut merged steps")
        # An average of the weights counts optimizer steps, not batches; Schedule-Free also keeps the largest rate
        # it has seen, which a merged step's grow_lr would raise for good.
        if self.grow_at is not None and self.ema:
            raise ValueError("grow_at does not combine with ema: the average counts optimizer steps, not batches")
        if self.grow_at is not None and OPTIMIZERS.get(self.optimizer).seam:
            raise ValueError(f"grow_at does not combine with '{self.optimizer}', which averages its weights over "
                             "optimizer steps")
        if self.epochs is None and self.steps is None:
            raise ValueError("give a budget: epochs or steps")
        return self

    def _digest(self, exclude: set[str], length: int) -> str:
        # Fields left at their defaults are not hashed, so adding a new option later (with a default
        # that keeps the old behaviour) does not change the ids of results already stored.
        fields = self.model_dump(mode="json", exclude=exclude, exclude_defaults=True)
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """Every field's default in this version of the code (seed aside), as stored with a run's definition:
        a definition read back later expands under the defaults it ran with, not under today's."""
        return {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items()
                if name != "seed"}

    @property
    def id(self) -> str:
        """Hash of the content: equal specs share an id across runs and machines."""
        return self._digest(set(), 16)

    def config_key(self) -> str:
        """The spec without its seed: trials sharing it are repeats of one configuration."""
        return self._digest({"seed"}, 12)


def make_spec(**fields: Any) -> TrialSpec:
    """Build a TrialSpec, turning validation failures into one readable ConfigError."""
    try:
        return TrialSpec(**fields)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError, where: str = "") -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}{loc}: {msg}" if loc else f"{where}{msg}")
    return "; ".join(parts)
