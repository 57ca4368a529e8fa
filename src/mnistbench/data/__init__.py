"""Datasets: IDX files, where they come from, and in-memory tensors."""

from .datasets import DATASETS, DatasetSpec, cache_root, fetch, resolve, verify
from .idx import read_idx, read_images, read_labels, read_pair, write_idx
from .load import Data, Split, load

__all__ = ["DATASETS", "DatasetSpec", "Data", "Split", "cache_root", "fetch", "load", "read_idx",
           "read_images", "read_labels", "read_pair", "resolve", "verify", "write_idx"]
