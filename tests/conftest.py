"""Shared fixtures: tiny synthetic IDX datasets written by the tests, and an isolated cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistbench.data import write_idx


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Learnable 28x28 images: class k lights a 6x6 patch at a position of its own, over noise."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 8 * (k // 4), 2 + 8 * (k % 4)
        images[i, r:r + 6, c:c + 6] = 255
    return images


def write_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0, gz: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", make_images(labels, rng))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """No test touches the user's cache or the network."""
    monkeypatch.setenv("MNISTBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("MNISTBENCH_OFFLINE", "1")
    monkeypatch.delenv("MNISTBENCH_DATA", raising=False)


@pytest.fixture
def synthetic(tmp_path) -> Path:
    return write_dataset(tmp_path / "synthetic")


@pytest.fixture
def synthetic_name(synthetic) -> str:
    return f"idx:{synthetic}"
