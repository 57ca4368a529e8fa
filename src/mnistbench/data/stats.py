"""Describe a dataset: counts, shape, class balance, pixel statistics (for `mnistbench data info`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .idx import NUM_CLASSES

from .datasets import fetch, read_splits


@dataclass
class SplitStats:
    split: str
    count: int
    shape: tuple[int, ...]
    class_counts: list[int]
    mean: float  # of pixels scaled to [0, 1]
    std: float


@dataclass
class DatasetStats:
    name: str
    source: str
    splits: list[SplitStats]


def describe_dataset(name: str, data_dir=None) -> DatasetStats:
    result = fetch(name, data_dir)
    splits = []
    for split, (images, labels) in read_splits(result.folder).items():
        pixels = images.astype(np.float64) / 255.0
        splits.append(SplitStats(split, len(labels), tuple(images.shape[1:]),
                                 np.bincount(labels, minlength=NUM_CLASSES).tolist(), float(pixels.mean()),
                                 float(pixels.std())))
    return DatasetStats(name, result.source, splits)
