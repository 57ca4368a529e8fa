"""Preflight: everything a run needs, checked once before its first trial, so bad input is one line (exit 2)
and never a trial stored as failed, a traceback after training, or a lost result."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..data.datasets import Layout, fetch, layout, resolve
from ..errors import BadInput, ConfigError
from ..core.spec import TrialSpec
from ..core.trial import resolve_device

# A budget past this many optimizer steps is a typo (a CPU does ~1e3 a second), and a float that large loses
# integer precision when turned into a step count.
MAX_STEPS = 10 ** 12


def check_trials(specs: Iterable[TrialSpec], outputs: Iterable[Path | None] = (), fetch_data: bool = True
                 ) -> dict[str, Layout]:
    """Raise BadInput on the first problem; return each dataset's layout. `fetch_data` makes each dataset
    available now (once, not once per trial); without it (a dry run) nothing is downloaded or written."""
    specs = list(specs)
    for spec in specs:
        _check_finite(spec.model_dump(mode="python"), "")
    layouts = {name: _check_dataset(name, fetch_data) for name in dict.fromkeys(s.dataset for s in specs)}
    for spec in specs:
        _check_budget(spec, layouts[spec.dataset])
    for name, found in layouts.items():
        _check_models(name, found, sorted({s.model for s in specs if s.dataset == name}))
    for device in dict.fromkeys(s.device for s in specs):
        resolve_device(device)  # ConfigError for an unknown device, or CUDA asked for where there is none
    for path in outputs:
        if path is not None:
            check_writable(Path(path))
    return layouts


def _check_finite(value: Any, where: str) -> None:
    # Pydantic range checks let inf through (inf > 0), and so do free-form optimizer/schedule options.
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where or 'a value'} is {value}", "give a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


def _check_dataset(name: str, fetch_data: bool) -> Layout:
    """The name is known, the data is there (or fetched now), and its layout is readable."""
    spec = resolve(name)  # UnknownName for a name that is neither registered nor idx:PATH
    if fetch_data and spec.folder is None:
        fetch(name)  # DatasetNotFound when no source can provide it: one error for the whole run
    return layout(name)


def _check_budget(spec: TrialSpec, found: Layout) -> None:
    train = found.split_sizes["train"]
    if spec.val_size >= train:
        raise ConfigError(f"val_size {spec.val_size} leaves no training images ({spec.dataset} has {train})",
                          f"choose val_size below {train}")
    steps = spec.steps or spec.epochs * math.ceil((train - spec.val_size) / spec.batch_size)
    if not steps <= MAX_STEPS:
        raise ConfigError(f"a budget of {spec.steps or spec.epochs:g} {'steps' if spec.steps else 'epochs'} "
                          f"is {steps:.3g} optimizer steps", f"stay below {MAX_STEPS:.0e} steps")


@lru_cache(maxsize=None)
def model_accepts(model: str, image_shape: tuple[int, int], num_classes: int) -> bool:
    """Whether the model maps one image of this shape to one score per class (a forward pass on zeros)."""
    import torch

    from ..core.models import build_model

    net = build_model(model).eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 1, *image_shape))
    except RuntimeError:  # a layer sized for another image: shapes cannot be multiplied, kernel too large...
        return False
    return tuple(out.shape) == (1, num_classes)


def _check_models(dataset: str, found: Layout, models: list[str]) -> None:
    from ..core.models import MODELS

    rejecting = [m for m in models if not model_accepts(m, found.image_shape, found.num_classes)]
    if not rejecting:
        return
    accepting = [m for m in MODELS.names() if model_accepts(m, found.image_shape, found.num_classes)]
    raise ConfigError(
        f"{dataset} has {found.shape_text} images with {found.num_classes} classes, which "
        f"{'model' if len(rejecting) == 1 else 'models'} {', '.join(rejecting)} cannot take",
        f"models that take {found.shape_text} images: {', '.join(accepting)}" if accepting else
        f"no model takes {found.shape_text} images; the built-in ones take 28x28 (resize the images)")


def check_writable(path: Path) -> None:
    """A file we will write after the run: its folder exists (or can be made) and is writable."""
    if path.is_dir():
        raise BadInput(f"{path} is a folder", "give a file name")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK) or (path.exists() and not
                                                                                os.access(path, os.W_OK)):
        raise BadInput(f"cannot write {path}: {existing} is not a writable folder",
                       "choose a path in a folder you can write to")
    if existing != folder:
        raise BadInput(f"cannot write {path}: the folder {folder} does not exist", "create it first")

