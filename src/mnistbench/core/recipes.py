"""Optimizer and learning-rate schedule registries: name -> factory, with documented defaults and
validated hyperparameters (an option an optimizer does not take is an error, not silently ignored)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.optim import lr_scheduler

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class OptimizerEntry:
    cls: type[torch.optim.Optimizer]
    description: str
    defaults: dict[str, Any]  # every hyperparameter it accepts besides lr, with our default


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer")
OPTIMIZERS.add("sgd", OptimizerEntry(torch.optim.SGD, "SGD; momentum and Nesterov optional",
                                     {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "dampening": 0.0}))
OPTIMIZERS.add("adam", OptimizerEntry(torch.optim.Adam, "Adam (Kingma & Ba); fused=true: one kernel per step",
                                      {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                                       "fused": False}))
OPTIMIZERS.add("adamw", OptimizerEntry(torch.optim.AdamW, "Adam with decoupled weight decay",
                                       {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False,
                                        "fused": False}))
OPTIMIZERS.add("rmsprop", OptimizerEntry(torch.optim.RMSprop, "RMSprop (Hinton)",
                                         {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0,
                                          "centered": False}))
OPTIMIZERS.add("adagrad", OptimizerEntry(torch.optim.Adagrad, "Adagrad (Duchi et al.)",
                                         {"lr_decay": 0.0, "eps": 1e-10, "weight_decay": 0.0}))
OPTIMIZERS.add("adadelta", OptimizerEntry(torch.optim.Adadelta, "Adadelta (Zeiler); lr scales the update",
                                          {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}))


def _check_args(kind: str, name: str, args: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{kind} '{name}' does not take {', '.join(repr(u) for u in unknown)}",
            f"it takes: {', '.join(allowed) or 'no options'}",
        )
    for key, value in args.items():
        _check_type(kind, name, key, value, allowed[key])
    return {**allowed, **args}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_type(kind: str, name: str, key: str, value: Any, default: Any) -> None:
    """An option takes the kind of value its default has: caught here, not as a failed trial later."""
    where = f"{kind} '{name}': {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif _is_number(default):
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where} must be a finite number >= 0, got {value!r}")
    elif isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)) or not all(_is_number(v) for v in value) or (
                isinstance(default, tuple) and len(value) != len(default)):
            raise ConfigError(f"{where} must be a list of numbers like {list(default)}, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where} must be text, got {value!r}")


def make_optimizer(name: str, params, lr: float, args: dict[str, Any]) -> torch.optim.Optimizer:
    entry = OPTIMIZERS.get(name)
    merged = _check_args("optimizer", name, args, entry.defaults)
    if "betas" in merged:
        merged["betas"] = tuple(merged["betas"])
    if name == "sgd" and merged["nesterov"] and (merged["momentum"] <= 0 or merged["dampening"] != 0):
        raise ConfigError("sgd with nesterov needs momentum > 0 and dampening 0", "add --momentum 0.9")
    # foreach kernels batch the per-parameter updates into a few calls: same numbers, less overhead;
    # fused (Adam) goes further, one kernel for the whole update (slightly different rounding).
    if not merged.pop("fused", False):
        merged["foreach"] = True
    else:
        merged["fused"] = True
    try:
        return entry.cls(params, lr=lr, **merged)
    except ValueError as exc:
        raise ConfigError(f"optimizer '{name}': {exc}") from None


@dataclass(frozen=True)
class Horizon:
    """What a schedule may need to know about the run it shapes."""

    steps_per_epoch: int
    total_steps: int


@dataclass(frozen=True)
class ScheduleEntry:
    build: Callable[[torch.optim.Optimizer, dict[str, Any], Horizon], Any] | None
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    unit: str = "step"  # when scheduler.step() is called: after every "step", or at the end of each "epoch"
    on_metric: bool = False  # steps on the evaluation accuracy: a training decision, so never on the test set


def _warmup_linear(opt, a, h: Horizon):
    warm = max(1, int(a["warmup_fraction"] * h.total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (h.total_steps - step) / max(1, h.total_steps - warm))

    return lr_scheduler.LambdaLR(opt, factor)


def _warmup_cosine(opt, a, h: Horizon):
    warm = max(1, int(a["warmup_fraction"] * h.total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, h.total_steps - warm))
        return a["final_factor"] + (1 - a["final_factor"]) * 0.5 * (1 + math.cos(math.pi * progress))

    return lr_scheduler.LambdaLR(opt, factor)


SCHEDULES: Registry[ScheduleEntry] = Registry("schedule")
SCHEDULES.add("constant", ScheduleEntry(None, "the learning rate never changes"))
SCHEDULES.add("step", ScheduleEntry(
    lambda o, a, h: lr_scheduler.StepLR(o, step_size=a["step_size"], gamma=a["gamma"]),
    "StepLR: multiply by gamma every step_size epochs (the notebook: 3, 0.5)",
    {"step_size": 3, "gamma": 0.5}, unit="epoch"))
SCHEDULES.add("multistep", ScheduleEntry(
    lambda o, a, h: lr_scheduler.MultiStepLR(o, milestones=list(a["milestones"]), gamma=a["gamma"]),
    "MultiStepLR: multiply by gamma at each listed epoch", {"milestones": [5, 8], "gamma": 0.1}, unit="epoch"))
SCHEDULES.add("exponential", ScheduleEntry(
    lambda o, a, h: lr_scheduler.ExponentialLR(o, gamma=a["gamma"]),
    "ExponentialLR: multiply by gamma every epoch", {"gamma": 0.8}, unit="epoch"))
SCHEDULES.add("cosine", ScheduleEntry(
    lambda o, a, h: lr_scheduler.CosineAnnealingLR(o, T_max=h.total_steps, eta_min=a["eta_min"]),
    "cosine annealing to eta_min over the whole run (per step)", {"eta_min": 0.0}))
SCHEDULES.add("onecycle", ScheduleEntry(
    lambda o, a, h: lr_scheduler.OneCycleLR(
        o, max_lr=[g["lr"] for g in o.param_groups], total_steps=h.total_steps, pct_start=a["pct_start"],
        div_factor=a["div_factor"], final_div_factor=a["final_div_factor"], anneal_strategy=a["anneal"],
        cycle_momentum=False),
    "one-cycle (Smith): warm up to lr, then anneal (per step); lr is the peak",
    {"pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4, "anneal": "cos"}))
SCHEDULES.add("plateau", ScheduleEntry(
    lambda o, a, h: lr_scheduler.ReduceLROnPlateau(o, mode="max", factor=a["factor"], patience=a["patience"]),
    "ReduceLROnPlateau on the end-of-epoch evaluation accuracy (the notebook's text)",
    {"factor": 0.5, "patience": 1}, unit="epoch", on_metric=True))
SCHEDULES.add("warmup-linear", ScheduleEntry(
    _warmup_linear, "linear warm-up over warmup_fraction of the run, then linear decay to 0 (the speedrun's)",
    {"warmup_fraction": 0.2}))
SCHEDULES.add("warmup-cosine", ScheduleEntry(
    _warmup_cosine, "linear warm-up over warmup_fraction of the run, then cosine to final_factor x lr",
    {"warmup_fraction": 0.05, "final_factor": 0.0}))


def make_schedule(name: str, optimizer: torch.optim.Optimizer, args: dict[str, Any], horizon: Horizon):
    """The torch scheduler (or None for constant) and the unit at which to step it."""
    entry = SCHEDULES.get(name)
    merged = _check_args("schedule", name, args, entry.defaults)
    if entry.build is None:
        return None, entry.unit
    return entry.build(optimizer, merged, horizon), entry.unit


def check_recipe(optimizer: str, optimizer_args: dict[str, Any], schedule: str, schedule_args: dict[str, Any]):
    """Validate names and options without building anything (used when specs are created)."""
    _check_args("optimizer", optimizer, optimizer_args, OPTIMIZERS.get(optimizer).defaults)
    _check_args("schedule", schedule, schedule_args, SCHEDULES.get(schedule).defaults)
