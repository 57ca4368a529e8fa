"""Estimate how long trials will take from a few measured training steps and evaluation passes (for
`run --dry-run`), on the device the trials will run on. Side-effect free: dataset sizes come from the
dataset's layout (files already here, or its registered sizes), nothing is downloaded or cached."""

from __future__ import annotations

import torch

from ..core.clock import Stopwatch
from ..core.hardware import keep_freed_memory
from ..core.horizon import horizon
from ..core.models import build_model, uses_channels_last
from ..core.recipes import make_optimizer
from ..core.spec import TrialSpec
from ..core.trial import autocast_for, eval_batch_size, input_dtype, resolve_device, training_loss, training_step
from ..data.datasets import Layout, layout


def _model_and_input(spec: TrialSpec, batch: int, found: Layout, device: torch.device):
    torch.manual_seed(0)
    model = build_model(spec.model).to(device)
    x = torch.randn(batch, 1, *found.image_shape, device=device).to(input_dtype(spec.precision, device))  # as stored
    if uses_channels_last(spec.model, device, spec.channels_last):  # the layout run_trial will use
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return model, x


def _step_seconds(spec: TrialSpec, found: Layout, cache: dict, batch: int) -> float:
    device = resolve_device(spec.device)
    # The spec's own optimizer (Adam's update costs more than SGD's) through the loop's own training step; the
    # schedule's step is a few scalar writes and is left out.
    key = ("step", spec.model, batch, spec.precision, spec.channels_last, spec.optimizer,
           repr(sorted(spec.optimizer_args.items())), bool(spec.label_smoothing), found.image_shape, str(device))
    if key not in cache:
        model, x = _model_and_input(spec, batch, found, device)
        y = torch.randint(0, found.num_classes, (batch,), device=device)
        opt = make_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.optimizer_args)
        loss_fn = training_loss(spec.label_smoothing)
        autocast = autocast_for(spec.precision, device)
        watch = Stopwatch(device)
        for i in range(4):  # the first step allocates: measure the three after it
            if i == 1:
                watch.start()
            training_step(model, x, y, loss_fn, opt, autocast)
        watch.stop()
        cache[key] = watch.elapsed / 3
    return cache[key]


def _eval_image_seconds(spec: TrialSpec, n_eval: int, found: Layout, cache: dict) -> float:
    """Seconds per evaluated image, measured at the batch size and layout evaluation will use (on a CPU the
    batch size changes the cost per image by up to 3x, so a fraction of a training step is no estimate)."""
    device = resolve_device(spec.device)
    batch = min(eval_batch_size(spec.eval_batch_size, device), n_eval)
    key = ("eval", spec.model, batch, spec.precision, spec.channels_last, found.image_shape, str(device))
    if key not in cache:
        model, x = _model_and_input(spec, batch, found, device)
        model.eval()
        autocast = autocast_for(spec.precision, device)
        watch = Stopwatch(device)
        with torch.inference_mode(), autocast:
            for i in range(3):  # the first pass allocates: measure the two after it
                if i == 1:
                    watch.start()
                model(x).float().argmax(1)
        watch.stop()
        cache[key] = watch.elapsed / 2 / batch
    return cache[key]


def estimate_seconds(specs: list[TrialSpec]) -> list[float]:
    """Training steps x measured step time, plus the evaluations the horizon expects x measured time of one
    pass over the evaluated split."""
    keep_freed_memory()  # measure the allocator the trials will run with
    cache: dict = {}
    layouts = {name: layout(name) for name in {s.dataset for s in specs}}
    out = []
    for spec in specs:
        found = layouts[spec.dataset]
        n_train, n_test = found.split_sizes["train"], found.split_sizes["test"]
        n = n_train - spec.val_size
        n_eval = spec.val_size if spec.eval_on == "val" else n_test
        h = horizon(spec, n)
        eval_s = h.expected_evaluations() * n_eval * _eval_image_seconds(spec, n_eval, found, cache)
        plain, merged = h.step_counts()  # a growing batch's late steps are measured at their own size
        train_s = plain * _step_seconds(spec, found, cache, spec.batch_size)
        if merged:
            train_s += merged * _step_seconds(spec, found, cache, min(h.grow_by * spec.batch_size, n))
        out.append(train_s + eval_s)
    return out


def estimate_device(specs: list[TrialSpec]) -> str:
    """The device(s) the estimate was measured on, as the trials will resolve them here."""
    return ", ".join(sorted({str(resolve_device(s.device)) for s in specs})) or "cpu"
