"""Estimate how long trials will take from a few measured training steps (for `run --dry-run`).

Side-effect free: dataset sizes and image shapes come from `data.layout` (nothing is fetched or cached), and
the steps are measured on synthetic tensors on the device the trials will run on."""

from __future__ import annotations

import torch

from ..core.clock import Stopwatch
from ..core.models import build_model
from ..core.recipes import make_optimizer
from ..core.spec import TrialSpec
from ..core.horizon import horizon
from ..core.trial import resolve_device
from ..data.datasets import Layout, layout


def _step_seconds(spec: TrialSpec, found: Layout, cache: dict) -> float:
    device = resolve_device(spec.device)
    key = (spec.model, spec.batch_size, spec.precision, spec.channels_last, found.image_shape, str(device))
    if key not in cache:
        torch.manual_seed(0)
        model = build_model(spec.model).to(device)
        x = torch.randn(spec.batch_size, 1, *found.image_shape, device=device)
        if spec.channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, found.num_classes, (spec.batch_size,), device=device)
        opt = make_optimizer("sgd", model.parameters(), 0.01, {})
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
        watch = Stopwatch(device)
        for i in range(4):  # the first step allocates: measure the three after it
            if i == 1:
                watch.start()
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        watch.stop()
        cache[key] = watch.elapsed / 3
    return cache[key]


def estimate_seconds(specs: list[TrialSpec]) -> list[float]:
    """Training steps x measured step time, plus evaluations (a forward pass costs about a third of a step)."""
    cache: dict = {}
    layouts = {name: layout(name) for name in {s.dataset for s in specs}}
    out = []
    for spec in specs:
        found = layouts[spec.dataset]
        n_train, n_test = found.split_sizes["train"], found.split_sizes["test"]
        n = n_train - spec.val_size
        n_eval = spec.val_size if spec.eval_on == "val" else n_test
        h = horizon(spec, n)
        step_s = _step_seconds(spec, found, cache)
        eval_s = h.expected_evaluations() * (n_eval / spec.batch_size) * step_s / 3
        out.append(h.total_steps * step_s + eval_s)
    return out


def estimate_device(specs: list[TrialSpec]) -> str:
    """The device(s) the estimate was measured on, as the trials will resolve them here."""
    return ", ".join(sorted({str(resolve_device(s.device)) for s in specs})) or "cpu"
