"""Datasets: fetch from a folder into the cache, verification, checksums, loading and splits."""

from __future__ import annotations

import hashlib

import pytest
import torch

from mnistbench.data import fetch, load, verify
from mnistbench.data import datasets as ds
from mnistbench.data.sources import FILES
from mnistbench.errors import DataError, DatasetNotFound

from .conftest import write_dataset


@pytest.fixture
def fake_registered(monkeypatch, synthetic):
    """Register a dataset whose checksums are those of the synthetic files (stands in for MNIST)."""
    sums = {n: hashlib.sha256((synthetic / n).read_bytes()).hexdigest() for n in FILES}
    spec = ds.DatasetSpec(name="fake", description="synthetic", sha256=sums)
    monkeypatch.setitem(ds.DATASETS.entries, "fake", spec)
    return synthetic


def test_fetch_from_folder_then_cache(fake_registered):
    first = fetch("fake", fake_registered)
    assert first.source == f"folder {fake_registered}"
    assert sorted(p.name for p in first.folder.iterdir() if not p.name.startswith("VERIFIED")) == sorted(FILES)
    second = fetch("fake")  # no folder named: the cache serves it
    assert second.source.startswith("cache")
    assert len(verify("fake")) == 4


def test_fetch_accepts_gz_and_dotted_names(tmp_path, fake_registered):
    import gzip
    import shutil

    other = tmp_path / "other"
    other.mkdir()
    for name in FILES:
        dotted = name.replace("-idx", ".idx")
        (other / f"{dotted}.gz").write_bytes(gzip.compress((fake_registered / name).read_bytes()))
    (other / "._train-images.idx3-ubyte").write_bytes(b"mac metadata")  # must be ignored
    assert fetch("fake", other).source == f"folder {other}"
    shutil.rmtree(other)


def test_checksum_mismatch_names_the_file_and_leaves_cache_clean(tmp_path, fake_registered):
    bad = write_dataset(tmp_path / "bad", seed=1)  # same shapes, other bytes
    with pytest.raises(DataError, match="train-images-idx3-ubyte: sha256 does not match"):
        fetch("fake", bad)
    assert not (ds.cache_root() / "fake" / "VERIFIED.json").exists()


def test_corrupt_cache_is_refetched(fake_registered):
    folder = fetch("fake", fake_registered).folder
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x0a")
    with pytest.raises(DataError):
        verify("fake")
    assert fetch("fake", fake_registered).source.startswith("folder")  # stamp no longer matches
    assert len(verify("fake")) == 4


def test_missing_file_in_folder(synthetic):
    (synthetic / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFound, match="lacks t10k-labels-idx1-ubyte"):
        fetch(f"idx:{synthetic}")


def test_nothing_found_says_what_was_tried(monkeypatch, tmp_path):
    spec = ds.DatasetSpec(name="ghost", description="", sha256=None)
    monkeypatch.setitem(ds.DATASETS.entries, "ghost", spec)
    with pytest.raises(DatasetNotFound, match="could not get ghost"):
        fetch("ghost")


def test_load_normalizes_with_training_statistics(synthetic_name):
    data = load(synthetic_name)
    assert data.train.images.shape == (600, 1, 28, 28) and data.test.images.shape == (200, 1, 28, 28)
    assert data.train.images.dtype == torch.float32 and data.train.labels.dtype == torch.int64
    assert abs(data.train.images.mean().item()) < 1e-4 and abs(data.train.images.std().item() - 1) < 1e-3


def test_validation_split_is_the_last_images(synthetic_name):
    full, split = load(synthetic_name), load(synthetic_name, val_size=100)
    assert len(split.train) == 500 and len(split.val) == 100
    assert torch.equal(split.val.labels, full.train.labels[500:])


def test_normalization_statistics_leave_the_validation_images_out(synthetic_name):
    """A dataset without published constants is normalized with its training part's statistics: the images
    held out for validation do not shape the inputs the choice is judged on."""
    import numpy as np

    from mnistbench import load

    whole, held = load(synthetic_name), load(synthetic_name, val_size=100)
    train = whole.train.images[:len(whole.train) - 100]  # the same images, normalized with the full split's stats
    pixels = train * whole.std + whole.mean  # back to [0, 1]
    assert held.mean == pytest.approx(float(pixels.double().mean()), abs=1e-6)
    assert held.std == pytest.approx(float(pixels.double().std(unbiased=False)), abs=1e-6)
    assert held.mean != pytest.approx(whole.mean, abs=1e-9) or held.std != pytest.approx(whole.std, abs=1e-9)
    assert np.isfinite(held.mean)


def test_only_the_trial_that_loads_the_data_reports_loading_seconds(synthetic_name, tmp_path):
    from mnistbench import api

    from .test_experiments import write_experiment

    from mnistbench.run import jobs

    jobs._DATA.clear()  # a dataset another test loaded in this process would count as already loaded
    path = write_experiment(tmp_path, synthetic_name, seeds=2, configs=1, steps=4)
    trials = sorted(api.run(str(path), results_dir=tmp_path / "r").trials, key=lambda t: t.spec.seed)
    assert trials[0].load_seconds > 0 and trials[1].load_seconds == 0.0
