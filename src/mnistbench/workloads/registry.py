"""The workload registry: what a technique is trained on and judged by, kept apart from the recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..registry import Registry

VAL_SIZE = 10000  # the last 10,000 training images, held out so that a choice never sees the test set


@dataclass(frozen=True)
class Workload:
    """A dataset, a model, the accuracies that count as solved (on a validation split) and a budget.
    The first target is the one a trial is timed to; the others are harder goals a study may choose."""

    name: str
    dataset: str
    model: str
    targets: tuple[float, ...]
    epochs: float
    batch_size: int
    description: str
    val_size: int = VAL_SIZE

    def fields(self) -> dict[str, Any]:
        """The TrialSpec fields this workload fixes (an experiment may still override any of them)."""
        return {"dataset": self.dataset, "model": self.model, "target": self.targets[0], "epochs": self.epochs,
                "batch_size": self.batch_size, "val_size": self.val_size, "eval_on": "val"}


WORKLOADS: Registry[Workload] = Registry("workload")
WORKLOADS.add("mnist", Workload(
    "mnist", "mnist", "summary", (0.97, 0.99), epochs=2, batch_size=128,
    description="MNIST digits with the notebook summary's CNN; 0.97 is the notebook's target, 0.99 the hard one"))
WORKLOADS.add("fashion-mnist", Workload(
    "fashion-mnist", "fashion-mnist", "summary", (0.88, 0.90), epochs=3, batch_size=128,
    description="Fashion-MNIST clothing with the summary CNN; 0.88 within a few epochs, 0.90 the hard one"))


def resolve_workload(name: str, target: float | None = None, val_size: int | None = None) -> Workload:
    """A registered name, or `idx:PATH`: any IDX folder, whose target and validation split size the
    experiment file must give (nothing about an unknown dataset tells what accuracy is good on it)."""
    if name.startswith("idx:"):
        if target is None or val_size is None:
            raise ConfigError(f"workload '{name}' has no built-in target or validation split",
                              "give `target = 0.9` (the validation accuracy that counts as solved) and "
                              "`val_size = N` (training images held out) beside it")
        return Workload(name, name, "summary", (target,), epochs=2, batch_size=128,
                        description=f"IDX dataset {name[4:]} with the summary CNN", val_size=val_size)
    return WORKLOADS.get(name)


def apply_workload(fields: dict[str, Any]) -> dict[str, Any]:
    """Expand a `workload` key into the spec fields it stands for; fields given explicitly win."""
    if "workload" not in fields:
        return fields
    rest = {k: v for k, v in fields.items() if k != "workload"}
    name = fields["workload"]
    if not isinstance(name, str):
        raise ConfigError(f"workload must be a name, got {name!r}", "see `mnistbench list workloads`")
    workload = resolve_workload(name, rest.get("target"), rest.get("val_size"))
    return {**workload.fields(), **rest}
