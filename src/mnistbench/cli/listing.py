"""`mnistbench list`: every registry as a table, from the registries themselves."""

from __future__ import annotations

from typing import Callable

from .console import console, table
from ..errors import UnknownName


def _datasets():
    from ..data import DATASETS
    from ..data.datasets import cached_names

    cached = set(cached_names())
    return ["name", "description", "cached"], [
        *((n, e.description, "yes" if n in cached else "no") for n, e in DATASETS),
        ("idx:PATH", "any folder holding the four IDX files (raw or .gz)", ""),
    ]


def _models():
    from ..core.models import MODELS, count_parameters, flops_per_image

    rows = []
    for name, entry in MODELS:
        model = entry.build()
        rows.append((name, entry.description, "yes" if entry.batchnorm else "no",
                     f"{count_parameters(model):,}", f"{flops_per_image(model) / 1e6:.1f} M"))
    return ["name", "description", "BatchNorm", "parameters", "FLOPs/image (fwd)"], rows


def _options(entries: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in entries.items()) or "-"


def _optimizers():
    from ..core.recipes import OPTIMIZERS

    def description(e) -> str:
        return e.description + (f". Split: {e.split}" if e.split else "") + (
            f" [pip install 'mnistbench[{e.extra}]']" if e.extra else "")

    return ["name", "description", "options (default)"], [(n, description(e), _options(e.defaults))
                                                          for n, e in OPTIMIZERS]


def _schedules():
    from ..core.recipes import SCHEDULES

    return ["name", "description", "options (default)", "steps per"], [
        (n, e.description, _options(e.defaults), e.unit) for n, e in SCHEDULES]


def _experiments():
    from ..run.experiments import EXPERIMENTS

    return ["name", "description", "trials (1 seed)"], [
        (n, e.description, len(e.load().trials(seeds=1))) for n, e in EXPERIMENTS]


def _workloads():
    from ..workloads import WORKLOADS

    return ["name", "dataset", "model", "targets (validation)", "budget", "description"], [
        *((n, w.dataset, w.model, ", ".join(f"{t:g}" for t in w.targets), f"{w.epochs:g} epochs, batch {w.batch_size}",
           w.description) for n, w in WORKLOADS),
        ("idx:PATH", "idx:PATH", "summary", "the file's target", "2 epochs, batch 128",
         "any IDX folder; the experiment gives target and val_size"),
    ]


LISTINGS: dict[str, Callable[[], tuple[list[str], list[tuple]]]] = {
    "datasets": _datasets,
    "models": _models,
    "optimizers": _optimizers,
    "schedules": _schedules,
    "experiments": _experiments,
    "workloads": _workloads,
}


def show(kind: str | None, listings=LISTINGS) -> None:
    if kind is not None and kind not in listings:
        raise UnknownName("registry", kind, list(listings))
    for name in [kind] if kind else listings:
        columns, rows = listings[name]()
        console.print(table(name, columns, rows))
