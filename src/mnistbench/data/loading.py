"""Load a dataset into normalized float tensors held in memory, with an optional validation split."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .datasets import fetch, read_splits, resolve
from .sources import find_in_folder


@dataclass
class Split:
    images: torch.Tensor  # (N, 1, H, W) float32, normalized
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Data:
    """Everything a trial needs from a dataset; `load_seconds` is reported, never hidden in a timing."""

    name: str
    train: Split
    test: Split
    val: Split | None
    mean: float
    std: float
    source: str
    load_seconds: float

    def eval_split(self, on: str) -> Split:
        if on == "val":
            if self.val is None:
                raise ConfigError("evaluation on 'val' needs a validation split", "set val_size > 0")
            return self.val
        return self.test


_MEMO: dict[tuple, tuple] = {}


def _raw(name: str, data_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Decoded uint8 arrays, memoized per process: a second load in the same process is nearly free."""
    result = fetch(name, data_dir)
    paths = find_in_folder(result.folder)
    key = (name, tuple((str(p), p.stat().st_mtime_ns) for p in paths.values()))
    if key not in _MEMO:
        _MEMO.clear()  # hold one dataset at most; they are 50 MB each
        splits = read_splits(result.folder)
        _MEMO[key] = (*splits["train"], *splits["test"], result.source)
    return _MEMO[key]


def _normalize(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    x = torch.from_numpy(np.array(images, dtype=np.float32, copy=True)).unsqueeze(1)
    return x.mul_(1 / 255.0).sub_(mean).div_(std)


def load(name: str = "mnist", *, val_size: int = 0, data_dir: Path | str | None = None,
         device: torch.device | str = "cpu") -> Data:
    """Fetch if needed, decode, normalize with the training split's statistics, hold out the last
    `val_size` training images as a validation split (deterministic, as AlgoPerf does)."""
    started = time.perf_counter()
    spec = resolve(name)
    train_x, train_y, test_x, test_y, source = _raw(name, data_dir)
    if not 0 <= val_size < len(train_y):
        raise ConfigError(f"val_size {val_size} must lie in [0, {len(train_y)})")
    cut = len(train_y) - val_size
    if spec.mean_std:
        # Published constants (MNIST's 0.1307 / 0.3081, as the notebook normalizes): statistics of the full
        # training split, validation images included. Only a mean and a spread, never a label, and changing them
        # would change every stored result, so they stay; a dataset without constants uses its training part.
        mean, std = spec.mean_std
    else:
        pixels = train_x[:cut].astype(np.float64) / 255.0  # the training part only: the held-out images stay out
        mean, std = float(pixels.mean()), float(pixels.std())
    to_split = lambda x, y: Split(_normalize(x, mean, std), torch.from_numpy(y.astype(np.int64))).to(device)
    data = Data(
        name=name,
        train=to_split(train_x[:cut], train_y[:cut]),
        test=to_split(test_x, test_y),
        val=to_split(train_x[cut:], train_y[cut:]) if val_size else None,
        mean=mean,
        std=std,
        source=source,
        load_seconds=0.0,
    )
    data.load_seconds = time.perf_counter() - started
    return data
