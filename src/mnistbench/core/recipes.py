"""Optimizer and learning-rate schedule registries: name -> factory, with documented defaults and
validated hyperparameters (an option an optimizer does not take is an error, not silently ignored)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch.optim import lr_scheduler

from ..errors import ConfigError
from ..extras import require
from ..registry import Registry
from .horizon import Horizon
from .optimizers import MuonAdamW


@dataclass(frozen=True)
class OptimizerEntry:
    """An optimizer and what is special about it, as data (like timm's optimizer registry)."""

    cls: type[torch.optim.Optimizer] | str  # the class, or "module:Class" of an optional extra's (imported when used)
    title: str  # display name in tables and reports
    description: str
    defaults: dict[str, Any]  # every hyperparameter it accepts besides lr, with our default
    foreach: bool = True  # takes foreach=True: per-parameter updates batched into a few calls, same numbers
    fused: bool = False  # takes fused=True (one kernel per step, slightly different rounding): adds a `fused` option
    check: Callable[[dict[str, Any]], None] | None = None  # rules across options, raising ConfigError
    split: str = ""  # which parameters which part steps, when it is more than one optimizer (shown in `list`)
    extra: str = ""  # the pip extra that installs `cls` (mnistbench[extra]) when it is not torch's
    # "schedule-free": it evaluates other weights than it trains, through core/weights.py's seam; it replaces the
    # learning-rate schedule (warm-up is its warmup_steps option) and already averages (no `ema` on top).
    seam: str = ""
    lr_free: bool = False  # sets its own step size (lr is a multiplier, 1.0): a tuning search has no lr to search

    def __post_init__(self):
        if self.fused and "fused" not in self.defaults:
            object.__setattr__(self, "defaults", {**self.defaults, "fused": False})

    def resolve(self, name: str) -> type[torch.optim.Optimizer]:
        """The class, importing an extra's module (a missing extra: one line naming it)."""
        if not isinstance(self.cls, str):
            return self.cls
        module, _, attr = self.cls.partition(":")
        return getattr(require(module, self.extra, f"optimizer '{name}'"), attr)


def _beta1_below_one(args: dict[str, Any]) -> None:
    """Schedule-Free's x is y's extrapolation by 1/beta1 (and its SGD's by 1/momentum): 0 < beta1 < 1."""
    beta1 = args["betas"][0] if "betas" in args else args["momentum"]
    if not 0 < beta1 < 1:
        raise ConfigError(f"Schedule-Free needs its first beta (momentum) strictly between 0 and 1, got {beta1}")


def _nesterov_needs_momentum(args: dict[str, Any]) -> None:
    if args["nesterov"] and (args["momentum"] <= 0 or args["dampening"] != 0):
        raise ConfigError("sgd with nesterov needs momentum > 0 and dampening 0", "add --momentum 0.9")


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer")
OPTIMIZERS.add("sgd", OptimizerEntry(torch.optim.SGD, "SGD", "SGD; momentum and Nesterov optional",
                                     {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "dampening": 0.0},
                                     check=_nesterov_needs_momentum))
OPTIMIZERS.add("adam", OptimizerEntry(torch.optim.Adam, "Adam", "Adam (Kingma & Ba); fused=true: one kernel per step",
                                      {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
                                      fused=True))
OPTIMIZERS.add("adamw", OptimizerEntry(torch.optim.AdamW, "AdamW", "Adam with decoupled weight decay",
                                       {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False},
                                       fused=True))
OPTIMIZERS.add("rmsprop", OptimizerEntry(torch.optim.RMSprop, "RMSprop", "RMSprop (Hinton)",
                                         {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0,
                                          "centered": False}))
OPTIMIZERS.add("adagrad", OptimizerEntry(torch.optim.Adagrad, "Adagrad", "Adagrad (Duchi et al.)",
                                         {"lr_decay": 0.0, "eps": 1e-10, "weight_decay": 0.0}))
OPTIMIZERS.add("adadelta", OptimizerEntry(torch.optim.Adadelta, "Adadelta", "Adadelta (Zeiler); lr scales the update",
                                          {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}))
OPTIMIZERS.add("muon", OptimizerEntry(
    MuonAdamW, "Muon", "Muon (torch.optim.Muon, Jordan et al.): orthogonalized momentum for weight matrices, "
    "AdamW for the rest; lr is Muon's (0.02 is usual), adamw_lr AdamW's",
    {"momentum": 0.95, "nesterov": True, "weight_decay": 0.0, "adamw_lr": 1e-3, "adamw_betas": (0.9, 0.999),
     "adamw_weight_decay": 0.0},
    foreach=False, split="Muon: every weight of 2+ dimensions (a conv filter as an out x (in*kh*kw) matrix); "
                        "AdamW: biases, BatchNorm scale and shift"))
# Schedule-Free (Defazio et al. 2024; the `schedulefree` package): the AlgoPerf v0.5 self-tuning winner.
OPTIMIZERS.add("sf-adamw", OptimizerEntry(
    "schedulefree:AdamWScheduleFree", "Schedule-Free AdamW",
    "Schedule-Free AdamW: no schedule (constant only; warmup_steps warms up), evaluates its averaged weights; "
    "rates 1-10x AdamW's", {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "warmup_steps": 0,
                             "r": 0.0, "weight_lr_power": 2.0}, extra="optim", seam="schedule-free",
    check=_beta1_below_one))
OPTIMIZERS.add("sf-sgd", OptimizerEntry(
    "schedulefree:SGDScheduleFree", "Schedule-Free SGD",
    "Schedule-Free SGD: no schedule (constant only; warmup_steps warms up), evaluates its averaged weights; "
    "rates 10-50x SGD's", {"momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0, "r": 0.0,
                           "weight_lr_power": 2.0}, extra="optim", seam="schedule-free", check=_beta1_below_one))
# From pytorch-optimizer, one entry each; its classes pick their own foreach.
OPTIMIZERS.add("lion", OptimizerEntry(
    "pytorch_optimizer:Lion", "Lion", "Lion (Chen et al. 2023): the sign of an interpolated momentum; "
    "rates 3-10x below AdamW's", {"betas": (0.9, 0.99), "weight_decay": 0.0}, foreach=False, extra="optim"))
# SOAP's max_precondition_dim: a dimension above it is left unrotated. The library's 10,000 would have the seed
# models' 9,216-wide dense layer eigendecomposed every few steps (minutes per step on 2 cores); 1,024 keeps every
# convolution and the classifier's 128/10 side preconditioned.
OPTIMIZERS.add("soap", OptimizerEntry(
    "pytorch_optimizer:SOAP", "SOAP", "SOAP (Vyas et al. 2024): Adam in Shampoo's eigenbasis, refreshed every "
    "precondition_frequency steps; dimensions above max_precondition_dim stay unrotated",
    {"betas": (0.95, 0.95), "weight_decay": 0.01, "precondition_frequency": 10, "max_precondition_dim": 1024,
     "eps": 1e-8}, foreach=False, extra="optim"))
OPTIMIZERS.add("prodigy", OptimizerEntry(
    "pytorch_optimizer:Prodigy", "Prodigy", "Prodigy (Mishchenko & Defazio 2023): estimates its own step size; lr "
    "is a multiplier (1.0), not searched by tuning", {"betas": (0.9, 0.999), "d_coef": 1.0, "weight_decay": 0.0,
                                                     "safeguard_warmup": False}, foreach=False, extra="optim",
    lr_free=True))
OPTIMIZERS.add("ademamix", OptimizerEntry(
    "pytorch_optimizer:AdEMAMix", "AdEMAMix", "AdEMAMix (Pagliardini et al. 2024): Adam plus a slow momentum "
    "(beta3) mixed in with weight alpha", {"betas": (0.9, 0.999, 0.9999), "alpha": 5.0, "weight_decay": 0.0},
    foreach=False, extra="optim"))


def optimizer_title(name: str) -> str:
    """The display name of an optimizer (its name when it is not registered, e.g. in an old store)."""
    return OPTIMIZERS.get(name).title if name in OPTIMIZERS else name


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


def _trainable(params) -> list:
    """The parameters (or parameter groups, each filtered) an optimizer should hold: frozen weights (a whitened
    first layer) are no optimizer's business, and some would still decay or count them."""
    return [{**p, "params": _trainable(p["params"])} if isinstance(p, dict) else p
            for p in params if not isinstance(p, torch.Tensor) or p.requires_grad]


def make_optimizer(name: str, params, lr: float, args: dict[str, Any]) -> torch.optim.Optimizer:
    entry = OPTIMIZERS.get(name)
    merged = _check_args("optimizer", name, args, entry.defaults)
    for key in ("betas", "adamw_betas"):  # TOML and JSON give lists
        if key in merged:
            merged[key] = tuple(merged[key])
    if entry.check is not None:
        entry.check(merged)
    if merged.pop("fused", False):
        merged["fused"] = True  # one kernel for the whole update; takes the place of foreach
    elif entry.foreach:
        merged["foreach"] = True
    cls = entry.resolve(name)
    try:
        optimizer = cls(_trainable(params), lr=lr, **merged)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"optimizer '{name}': {exc}") from None
    if entry.seam == "schedule-free":
        optimizer.train()  # it refuses to step until told it trains (its weights are at y from here on)
    return optimizer


@dataclass(frozen=True)
class ScheduleEntry:
    build: Callable[[torch.optim.Optimizer, dict[str, Any], Horizon], Any] | None
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    unit: Literal["step", "epoch", "metric"] = "step"  # when it steps: after every optimizer "step", at each
    # "epoch" end, or at each epoch end on a "metric" (the end-of-epoch evaluation accuracy)

    @property
    def on_metric(self) -> bool:
        """Steps on the evaluation accuracy: a training decision, so never on the test set (see spec.py)."""
        return self.unit == "metric"


@dataclass
class Schedule:
    """A built schedule: the loop calls after_step() and after_epoch() and never asks which schedule it is."""

    scheduler: Any | None
    unit: str

    def after_step(self) -> None:
        if self.unit == "step" and self.scheduler is not None:
            self.scheduler.step()

    def after_epoch(self, accuracy: float) -> None:
        if self.unit == "epoch":
            self.scheduler.step()
        elif self.unit == "metric":
            self.scheduler.step(accuracy)


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
    {"factor": 0.5, "patience": 1}, unit="metric"))
SCHEDULES.add("warmup-linear", ScheduleEntry(
    _warmup_linear, "linear warm-up over warmup_fraction of the run, then linear decay to 0 (the speedrun's)",
    {"warmup_fraction": 0.2}))
SCHEDULES.add("warmup-cosine", ScheduleEntry(
    _warmup_cosine, "linear warm-up over warmup_fraction of the run, then cosine to final_factor x lr",
    {"warmup_fraction": 0.05, "final_factor": 0.0}))


def make_schedule(name: str, optimizer: torch.optim.Optimizer, args: dict[str, Any], horizon: Horizon) -> Schedule:
    """The schedule (its torch scheduler, None for constant) with the unit it steps at."""
    entry = SCHEDULES.get(name)
    merged = _check_args("schedule", name, args, entry.defaults)
    if entry.build is None:
        return Schedule(None, "step")
    try:
        return Schedule(entry.build(optimizer, merged, horizon), entry.unit)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"schedule '{name}': {exc}") from None


def check_recipe(optimizer: str, optimizer_args: dict[str, Any], schedule: str, schedule_args: dict[str, Any],
                 lr: float = 0.01) -> None:
    """Build the optimizer and the schedule once on a dummy parameter, so that every error an entry can
    raise (an unknown option, a bad combination, an option the class does not take) surfaces when the
    spec is made, not as a failed trial later."""
    if OPTIMIZERS.get(optimizer).seam == "schedule-free" and schedule != "constant":
        raise ConfigError(f"optimizer '{optimizer}' is schedule-free: it replaces the learning-rate schedule "
                          f"'{schedule}'", "use schedule = \"constant\"; its warmup_steps option warms up")
    # A vector and a matrix: an optimizer that treats them apart (Muon) builds both of its parts.
    dummy = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(2, 2))]
    built = make_optimizer(optimizer, dummy, lr, optimizer_args)
    make_schedule(schedule, built, schedule_args, Horizon(steps_per_epoch=10, total_steps=100))
