"""Optimizer and schedule registries: an entry carries what is special about it, every error surfaces when
the spec is made, and a new optimizer or schedule is one registry entry that runs end to end."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler

from mnistbench import load, make_spec, run_trial
from mnistbench.core.recipes import (OPTIMIZERS, SCHEDULES, OptimizerEntry, ScheduleEntry, optimizer_title)
from mnistbench.errors import ConfigError
from mnistbench.report.analysis import derive_label


class PlainSGD(torch.optim.Optimizer):
    """A hand-written optimizer that knows nothing of foreach or fused kernels."""

    def __init__(self, params, lr: float, shrink: float = 0.0):
        super().__init__(params, {"lr": lr, "shrink": shrink})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["shrink"]).add_(p.grad, alpha=-group["lr"])


@pytest.fixture
def registered():
    """A new optimizer and a new schedule (stepping on the end-of-epoch accuracy), registered in the test."""
    OPTIMIZERS.add("test-plain", OptimizerEntry(PlainSGD, "Plain SGD", "a test optimizer", {"shrink": 0.0},
                                                foreach=False))
    OPTIMIZERS.add("test-foreach", OptimizerEntry(PlainSGD, "Plain SGD", "claims foreach it lacks", {}))
    SCHEDULES.add("test-halve-on-accuracy", ScheduleEntry(
        lambda o, a, h: lr_scheduler.ReduceLROnPlateau(o, mode="max", factor=a["factor"], patience=0,
                                                       threshold=1.0),  # never improves on its first
        # accuracy by 100%: from the second epoch end on, halves every epoch
        "halve the rate at every epoch end, told the accuracy", {"factor": 0.5}, unit="metric"))
    yield
    for registry, name in ((OPTIMIZERS, "test-plain"), (OPTIMIZERS, "test-foreach"),
                           (SCHEDULES, "test-halve-on-accuracy")):
        del registry.entries[name]


def test_a_new_optimizer_and_schedule_are_one_entry_each_and_run_end_to_end(synthetic_name, registered):
    s = make_spec(dataset=synthetic_name, model="compact", batch_size=32, threads=1, eval_batch_size=100,
                  optimizer="test-plain", lr=0.05, optimizer_args={"shrink": 1e-4},
                  schedule="test-halve-on-accuracy", epochs=3, eval_every=0, target=0.5,
                  eval_on="val", val_size=64)  # a metric schedule steps on a validation split, never on test
    result = run_trial(s, load(synthetic_name, val_size=64))
    assert result.status == "reached"
    # Stepped with the accuracy at each epoch end: the first sets the best, the second halves the rate.
    assert [p.lr for p in result.curve] == [0.05, 0.05, 0.025]
    assert optimizer_title("test-plain") == "Plain SGD" and derive_label(s).startswith("compact · Plain SGD lr 0.05")


def test_an_optimizer_error_surfaces_when_the_spec_is_made(registered):
    # The class takes no foreach: building it once on a dummy parameter finds that now, not in a trial.
    with pytest.raises(ConfigError, match="optimizer 'test-foreach'.*foreach"):
        make_spec(optimizer="test-foreach")
    with pytest.raises(ConfigError, match="nesterov needs momentum"):
        make_spec(optimizer="sgd", optimizer_args={"nesterov": True})
    with pytest.raises(ConfigError, match="schedule 'onecycle'"):
        make_spec(schedule="onecycle", schedule_args={"anneal": "zigzag"})


def test_capabilities_are_data():
    assert OPTIMIZERS.get("adam").fused and "fused" in OPTIMIZERS.get("adam").defaults
    assert not OPTIMIZERS.get("sgd").fused and "fused" not in OPTIMIZERS.get("sgd").defaults
    assert SCHEDULES.get("plateau").unit == "metric" and SCHEDULES.get("step").unit == "epoch"
    assert {name: optimizer_title(name) for name in ("sgd", "adam")} == {"sgd": "SGD", "adam": "Adam"}


def test_a_new_model_is_one_entry_and_runs_end_to_end(synthetic_name):
    from torch import nn

    from mnistbench import api
    from mnistbench.core.models import MODELS, ModelEntry

    def linear() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    MODELS.add("test-linear", ModelEntry(linear, "a linear classifier", family="test-linear",
                                         title="a linear classifier", channels_last=False))
    try:
        spec = make_spec(dataset=synthetic_name, model="test-linear", optimizer="sgd", lr=0.1, batch_size=32,
                         epochs=2, threads=1, eval_batch_size=100, target=0.5)
        api.check([spec])  # the preflight finds that the dataset's images fit it
        result = run_trial(spec, load(synthetic_name))
        assert result.status == "reached" and result.final_accuracy > 0.5
    finally:
        del MODELS.entries["test-linear"]
