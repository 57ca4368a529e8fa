"""Describe a dataset: counts, shape, class balance, pixel statistics (for `mnistbench data info`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datasets import fetch
from .idx import read_pair
from .sources import find_in_folder


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
    paths = find_in_folder(result.folder)
    splits = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = read_pair(paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"])
        pixels = images.astype(np.float64) / 255.0
        splits.append(SplitStats(split, len(labels), tuple(images.shape[1:]),
                                 np.bincount(labels, minlength=10).tolist(), float(pixels.mean()),
                                 float(pixels.std())))
    return DatasetStats(name, result.source, splits)
