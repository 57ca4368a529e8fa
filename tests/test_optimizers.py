"""Muon as mnistbench steps it: torch.optim.Muon's own update for weight matrices and convolution filters
(whatever their memory layout), AdamW for the rest, both under one learning-rate schedule."""

from __future__ import annotations

import copy

import pytest
import torch

from mnistbench import make_spec
from mnistbench.core.horizon import Horizon
from mnistbench.core.models import build_model
from mnistbench.core.recipes import OPTIMIZERS, make_optimizer, make_schedule
from mnistbench.errors import ConfigError


def _step(model: torch.nn.Module, optimizer, channels_last: bool = False) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_matrices_take_torchs_muon_update_and_the_rest_adamws():
    torch.manual_seed(0)
    model = build_model("seed-bn")
    reference = copy.deepcopy(model)
    mine = make_optimizer("muon", model.parameters(), 0.02, {})
    assert mine.roles() == {"muon": sum(p.ndim >= 2 for p in model.parameters()),
                            "adamw": sum(p.ndim < 2 for p in model.parameters())}
    # torch's Muon is handed 2-D tensors only, and every parameter is stepped by exactly one of the two.
    assert all(v.ndim == 2 for g in mine._muon.param_groups for v in g["params"])
    stepped = [p.data_ptr() for g in mine._muon.param_groups for p in g["params"]] + [
        p.data_ptr() for g in mine._adamw.param_groups for p in g["params"]]
    assert sorted(stepped) == sorted(p.data_ptr() for p in model.parameters())
    # The same step by the library directly: Muon on each weight as a matrix, AdamW on the rest.
    params = list(reference.parameters())
    matrices = [p for p in params if p.ndim >= 2]
    views = [p.detach().view(p.shape[0], -1) for p in matrices]
    muon = torch.optim.Muon(views, lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0)
    adamw = torch.optim.AdamW([p for p in params if p.ndim < 2], lr=1e-3, weight_decay=0.0)
    _step(model, mine)
    torch.manual_seed(1)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    torch.nn.functional.cross_entropy(reference(x), y).backward()
    for p, v in zip(matrices, views):
        v.grad = p.grad.view(v.shape)
    muon.step()
    adamw.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_a_channels_last_filter_gets_the_same_update():
    torch.manual_seed(0)
    plain = build_model("seed-simple")
    last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    start = [p.detach().clone() for p in plain.parameters()]
    _step(plain, make_optimizer("muon", plain.parameters(), 0.02, {}))
    _step(last, make_optimizer("muon", last.parameters(), 0.02, {}), channels_last=True)
    for s0, a, b in zip(start, plain.parameters(), last.parameters()):
        # Newton-Schulz runs in bf16 inside torch's Muon: the column order changes its rounding (2-3% here), not
        # the update; a gradient read in another column order than its filter would move it by the whole step.
        update_a, update_b = (a - s0).detach(), (b - s0).detach()
        assert (update_a - update_b).norm() <= 0.1 * update_a.norm()


def test_a_schedule_scales_both_parts():
    model = build_model("seed-simple")
    optimizer = make_optimizer("muon", model.parameters(), 0.02, {"adamw_lr": 0.001})
    schedule = make_schedule("step", optimizer, {"step_size": 1, "gamma": 0.5}, Horizon(10, 100))
    _step(model, optimizer)
    schedule.after_epoch(0.0)  # StepLR steps at epoch ends: one halving
    rates = {g["role"]: g["lr"] for g in optimizer.param_groups}
    assert rates == pytest.approx({"muon": 0.01, "adamw": 0.0005})
    _step(model, optimizer)  # the inner optimizers step with the scheduled rates
    assert optimizer._muon.param_groups[0]["lr"] == pytest.approx(0.01)
    assert optimizer._adamw.param_groups[0]["lr"] == pytest.approx(0.0005)


def test_muon_is_in_the_registry_with_its_split_and_checks_its_options():
    entry = OPTIMIZERS.get("muon")
    assert "AdamW" in entry.split and "conv filter" in entry.split
    assert make_spec(optimizer="muon", lr=0.02).optimizer == "muon"
    with pytest.raises(ConfigError, match="momentum"):
        make_spec(optimizer="muon", lr=0.02, optimizer_args={"momentum": -1.0})
