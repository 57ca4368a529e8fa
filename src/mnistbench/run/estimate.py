"""Estimate how long trials will take from a few measured training steps (for `run --dry-run`)."""

from __future__ import annotations

import math

import torch

from ..core.clock import Stopwatch
from ..data import fetch
from ..data.idx import read_labels
from ..data.sources import find_in_folder
from ..errors import MnistbenchError
from ..core.models import build_model, uses_channels_last
from ..core.recipes import make_optimizer
from ..core.spec import TrialSpec
from ..core.trial import EVALS_PER_EPOCH, eval_batch_size

CPU = torch.device("cpu")  # the estimate measures here, on the CPU


def _split_sizes(dataset: str) -> tuple[int, int]:
    """Training and test image counts, from the label files (small); MNIST's when not fetched yet."""
    try:
        paths = find_in_folder(fetch(dataset).folder)
        return len(read_labels(paths["train-labels-idx1-ubyte"])), len(read_labels(paths["t10k-labels-idx1-ubyte"]))
    except MnistbenchError:  # an estimate must not fail a dry run
        return 60000, 10000


def _model_and_input(spec: TrialSpec, batch: int):
    torch.manual_seed(0)
    model, x = build_model(spec.model), torch.randn(batch, 1, 28, 28)
    if uses_channels_last(spec.model, CPU, spec.channels_last):  # the layout run_trial will use
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return model, x


def _step_seconds(spec: TrialSpec, cache: dict) -> float:
    key = ("step", spec.model, spec.batch_size, spec.precision, spec.channels_last)
    if key not in cache:
        model, x = _model_and_input(spec, spec.batch_size)
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


def _eval_image_seconds(spec: TrialSpec, n_eval: int, cache: dict) -> float:
    """Seconds per evaluated image, measured at the batch size and layout evaluation will use (on a CPU the
    batch size changes the cost per image by up to 3x, so a fraction of a training step is no estimate)."""
    batch = min(eval_batch_size(spec.eval_batch_size, CPU), n_eval)
    key = ("eval", spec.model, batch, spec.precision, spec.channels_last)
    if key not in cache:
        model, x = _model_and_input(spec, batch)
        model.eval()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.precision == "bf16")
        watch = Stopwatch()
        with torch.inference_mode(), autocast:
            for i in range(3):  # the first pass allocates: measure the two after it
                if i == 1:
                    watch.start()
                model(x).float().argmax(1)
        watch.stop()
        cache[key] = watch.elapsed / 2 / batch
    return cache[key]


def estimate_seconds(specs: list[TrialSpec]) -> list[float]:
    """Training steps x measured step time, plus evaluations x measured time of one pass over the split."""
    cache: dict = {}
    sizes = {name: _split_sizes(name) for name in {s.dataset for s in specs}}
    out = []
    for spec in specs:
        n_train, n_test = sizes[spec.dataset]
        n = n_train - spec.val_size
        n_eval = spec.val_size if spec.eval_on == "val" else n_test
        per_epoch = math.ceil(n / spec.batch_size)
        steps = spec.steps or max(1, round((spec.epochs or 1) * per_epoch))
        eval_s = evaluations(spec, n) * n_eval * _eval_image_seconds(spec, n_eval, cache)
        out.append(steps * _step_seconds(spec, cache) + eval_s)
    return out


def evaluations(spec: TrialSpec, n_train: int) -> int:
    """How many evaluations run_trial makes: its cadence until the target, assumed reached at the end of the
    first epoch (the seed's configurations reach it within their first), then one at every epoch end (a cut
    last epoch ends with one too); the final test evaluation reuses the last one."""
    per_epoch = math.ceil(n_train / spec.batch_size)
    steps = spec.steps or max(1, round((spec.epochs or 1) * per_epoch))
    every = spec.eval_every if spec.eval_every is not None else max(1, per_epoch // EVALS_PER_EPOCH)
    first_end = min(steps, per_epoch)
    fine = (first_end - 1) // every if every else 0  # cadence points before the first epoch's (or budget's) end
    return fine + math.ceil(steps / per_epoch)
