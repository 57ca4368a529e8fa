"""Estimate how long trials will take from a few measured training steps (for `run --dry-run`)."""

from __future__ import annotations

import torch

from ..core.clock import Stopwatch
from ..data import fetch
from ..data.idx import read_labels
from ..data.sources import find_in_folder
from ..errors import MnistbenchError
from ..core.models import build_model
from ..core.recipes import make_optimizer
from ..core.spec import TrialSpec
from ..core.horizon import horizon


def _split_sizes(dataset: str) -> tuple[int, int]:
    """Training and test image counts, from the label files (small); MNIST's when not fetched yet."""
    try:
        paths = find_in_folder(fetch(dataset).folder)
        return len(read_labels(paths["train-labels-idx1-ubyte"])), len(read_labels(paths["t10k-labels-idx1-ubyte"]))
    except MnistbenchError:  # an estimate must not fail a dry run
        return 60000, 10000


def _step_seconds(spec: TrialSpec, cache: dict) -> float:
    key = (spec.model, spec.batch_size, spec.precision, spec.channels_last)
    if key not in cache:
        torch.manual_seed(0)
        model = build_model(spec.model)
        x = torch.randn(spec.batch_size, 1, 28, 28)
        if spec.channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (spec.batch_size,))
        opt = make_optimizer("sgd", model.parameters(), 0.01, {})
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.precision == "bf16")
        watch = Stopwatch()
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
    sizes = {name: _split_sizes(name) for name in {s.dataset for s in specs}}
    out = []
    for spec in specs:
        n_train, n_test = sizes[spec.dataset]
        n = n_train - spec.val_size
        n_eval = spec.val_size if spec.eval_on == "val" else n_test
        h = horizon(spec, n)
        step_s = _step_seconds(spec, cache)
        eval_s = h.expected_evaluations() * (n_eval / spec.batch_size) * step_s / 3
        out.append(h.total_steps * step_s + eval_s)
    return out
