"""Datasets: IDX files, where they come from, and in-memory tensors."""

from .datasets import DATASETS, DatasetSpec, Layout, cache_root, fetch, layout, read_splits, resolve, verify
from .idx import read_idx, read_images, read_labels, read_pair, write_idx

__all__ = ["DATASETS", "DatasetSpec", "Data", "Layout", "Split", "cache_root", "fetch", "layout", "load", "read_idx",
           "read_images", "read_labels", "read_pair", "read_splits", "resolve", "verify", "write_idx"]


def __getattr__(name: str):
    # Loading into tensors needs torch, which takes a second to import: `data fetch` and `data verify`
    # don't pay for it.
    if name in ("Data", "Split", "load"):
        from . import loading

        return getattr(loading, name)
    raise AttributeError(name)
