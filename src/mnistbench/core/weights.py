"""The weights a run evaluates: the seam between a technique that evaluates other weights than the ones it trains
and everything that reads weights (the cadence evaluations, the time-to-target search, the final test, inference
and saved models). AlgoPerf calls this seam `prepare_for_eval`.

- Schedule-Free (Defazio et al. 2024) trains at a point y and means the average x to be evaluated; its
  optimizer swaps them in place (`optimizer.eval()` / `.train()`). BatchNorm's running statistics were gathered at
  y, so, as the `schedulefree` package advises, they are recomputed at x before evaluating: here as PreciseBN does,
  an exact average over a fixed set of training batches rather than a decaying one.
- An exponential moving average of the weights (and of the BatchNorm buffers, as timm's ModelEmaV3 does), kept by
  torch.optim.swa_utils.AveragedModel, any optimizer.
- Otherwise the trained weights are the evaluated ones, and every method here does nothing.

The training loop calls these methods and never asks which technique it runs."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .hardware import random_streams_kept

# Batches of the trial's size over which Schedule-Free's BatchNorm statistics are recomputed at x: the package's
# own example uses 50. They are the training split's first batches in its stored order, the same at every
# evaluation, so the same weights always evaluate to the same accuracy.
BN_BATCHES = 50


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def _buffers_kept(model: nn.Module) -> Iterator[None]:
    """Run a block that rewrites BatchNorm's running statistics, and put the trained ones back after it."""
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in _norms(model)]
    try:
        yield
    finally:
        for m, buffers in zip(_norms(model), saved):
            for k, v in buffers.items():
                getattr(m, k).copy_(v)


class Trained:
    """The trained weights are the evaluated ones (every optimizer without the seam, no averaging)."""

    name = "trained"

    def after_step(self) -> None:
        """Called after every optimizer step, on the clock (an average's update is training work)."""

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        """Inside: `model` holds the weights meant to be evaluated (BatchNorm statistics as trained); after: the
        weights training continues from. A snapshot for the time-to-target search is taken inside."""
        yield

    def prepare(self, module: nn.Module) -> None:
        """Make `module`, holding evaluation weights (the model, or the search's probe loaded from a snapshot),
        ready to evaluate."""

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[None]:
        """Inside: `model` evaluates as the technique means it; after: training resumes exactly where it was."""
        with self.swapped(model):
            yield

    def finish(self, model: nn.Module) -> None:
        """Leave `model` holding its evaluation weights for good: the final test, inference and saving read it."""


class ScheduleFree(Trained):
    """Schedule-Free's x: the optimizer swaps it in, BatchNorm statistics are recomputed at it."""

    name = "schedule-free"

    def __init__(self, optimizer: torch.optim.Optimizer, batches: Callable[[], Iterator[torch.Tensor]],
                 autocast) -> None:
        self.optimizer = optimizer
        self.batches = batches  # the training images the statistics are recomputed on
        self.autocast = autocast

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        # The package swaps by interpolating with z, which rounds: y is kept and put back exactly, so evaluating
        # never nudges what is trained, and finish() computes the very x the last evaluation saw.
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        trained = [p.detach().clone() for p in params]
        self.optimizer.eval()
        try:
            yield
        finally:
            self.optimizer.train()
            with torch.no_grad():
                for p, y in zip(params, trained):
                    p.copy_(y)

    @torch.no_grad()
    def prepare(self, module: nn.Module) -> None:
        norms = _norms(module)
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        was_training = module.training
        device = next(module.parameters()).device
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches, as PreciseBN computes it
        module.train()
        # Dropout draws here: keep the random streams the timed run draws from (the device's too) where they were.
        try:
            with random_streams_kept(device), self.autocast:
                for images in self.batches():
                    module(images)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            module.train(was_training)

    @contextlib.contextmanager
    def evaluating(self, model: nn.Module) -> Iterator[None]:
        with self.swapped(model), _buffers_kept(model):
            self.prepare(model)
            yield

    def finish(self, model: nn.Module) -> None:
        self.optimizer.eval()
        self.prepare(model)


class Averaged(Trained):
    """An exponential moving average of the weights and BatchNorm buffers, updated after every step."""

    name = "ema"

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = model
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def after_step(self) -> None:
        self.average.update_parameters(self.model)

    def _load_average(self, model: nn.Module) -> None:
        with torch.no_grad():
            for mine, averaged in zip(model.state_dict().values(), self.average.module.state_dict().values()):
                mine.copy_(averaged)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        self._load_average(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    v.copy_(trained[k])

    def finish(self, model: nn.Module) -> None:
        self._load_average(model)


def evaluation_weights(seam: str, model: nn.Module, optimizer: torch.optim.Optimizer, ema: float,
                       batches: Callable[[], Iterator[torch.Tensor]], autocast) -> Trained:
    """The seam of a trial: `seam` is its optimizer's registry entry's (core/recipes.py), `ema` its spec's decay."""
    if seam == "schedule-free":
        return ScheduleFree(optimizer, batches, autocast)
    if ema > 0:
        return Averaged(model, ema)
    return Trained()
