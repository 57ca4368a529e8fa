"""Preflight: everything a run needs is checked before its first trial; bad input is one line, exit 2,
and nothing is trained, stored, downloaded or written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnistbench import api
from mnistbench.data import layout, write_idx
from mnistbench.errors import BadInput, ConfigError, DatasetNotFound
from mnistbench.core.spec import make_spec

from .test_cli import run_main
from .test_experiments import write_experiment


def one_line_error(code, out, err, *fragments):
    assert code == 2, (code, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "loaded in" not in out  # nothing was loaded, so nothing trained
    return lines[0]


def write_sized(folder: Path, size: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", np.zeros((n, size, size), np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return f"idx:{folder}"


@pytest.fixture
def no_trials(monkeypatch):
    """Fail the test if any trial starts."""
    import mnistbench.core.trial as trial
    import mnistbench.run.jobs as jobs

    def forbidden(*_a, **_k):
        raise AssertionError("a trial started")

    monkeypatch.setattr(trial, "run_trial", forbidden)
    monkeypatch.setattr(jobs, "run_trial", forbidden)


def test_unknown_dataset_in_an_experiment_is_one_error_and_stores_nothing(tmp_path, capsys, monkeypatch, no_trials):
    path = write_experiment(tmp_path, "nope", configs=3, seeds=2)
    results = tmp_path / "r"
    line = one_line_error(*run_main(["run", path, "--results", results], capsys, monkeypatch),
                          "unknown dataset 'nope'")
    assert "mnist" in line and not results.exists()


def test_unavailable_dataset_is_checked_once_before_any_trial(tmp_path, capsys, monkeypatch, no_trials):
    path = write_experiment(tmp_path, f"idx:{tmp_path / 'nowhere'}", configs=3, seeds=2)
    one_line_error(*run_main(["run", path, "--results", tmp_path / "r"], capsys, monkeypatch), "nowhere")
    calls = []
    import mnistbench.run.preflight as preflight

    real = preflight.fetch

    def counting(name, *a):
        calls.append(name)
        return real(name, *a)

    monkeypatch.setattr(preflight, "fetch", counting)
    with pytest.raises(DatasetNotFound):  # mnist is not cached in the tests and every source is offline
        api.run(str(write_experiment(tmp_path, "mnist", name="m", configs=3, seeds=2)), results_dir=tmp_path / "r")
    assert calls == ["mnist"] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--epochs", "inf"], "epochs is inf"),
    (["--epochs", "1e300"], "a budget of 1e+300 epochs"),
    (["--lr", "nan"], "lr"),
    (["--label-smoothing", "inf"], "label_smoothing"),
    (["--val-size", "600"], "val_size 600 leaves no training images"),
])
def test_numbers_must_be_finite_and_in_range(synthetic_name, args, fragment, capsys, monkeypatch, no_trials):
    one_line_error(*run_main(["train", "--dataset", synthetic_name, *args], capsys, monkeypatch), fragment)


def test_infinite_epochs_in_an_experiment_is_refused_before_any_trial(synthetic_name, tmp_path, no_trials):
    path = write_experiment(tmp_path, synthetic_name, extra="")
    path.write_text(path.read_text().replace("steps = 20", "epochs = inf"))
    with pytest.raises(ConfigError, match="epochs is inf"):
        api.run(str(path), results_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_infinite_optimizer_option_is_refused(synthetic_name):
    # Refused when the spec is made: check_recipe builds the optimizer once, and torch rejects the beta.
    with pytest.raises(ConfigError, match=r"beta"):
        api.check([make_spec(dataset=synthetic_name, optimizer="adam", optimizer_args={"betas": [0.9, float("inf")]})])


@pytest.mark.parametrize("flag", ["--save-json", "--save-checkpoint"])
def test_unwritable_output_is_refused_before_training(synthetic_name, tmp_path, flag, capsys, monkeypatch, no_trials):
    one_line_error(*run_main(["train", "--dataset", synthetic_name, flag, tmp_path / "no" / "such" / "r.json"],
                             capsys, monkeypatch), "does not exist")
    one_line_error(*run_main(["train", "--dataset", synthetic_name, flag, tmp_path], capsys, monkeypatch),
                   "is a folder")


def test_image_shape_names_the_shape_and_the_models_that_take_it(tmp_path, capsys, monkeypatch, no_trials):
    name = write_sized(tmp_path / "x30", 30)
    line = one_line_error(*run_main(["train", "--dataset", name, "--model", "seed-simple"], capsys, monkeypatch),
                          "has 30x30 images with 10 classes", "model seed-simple cannot take")
    assert "models that take 30x30 images: compact, speedrun, speedrun-whitened, speedrun-lean, speedrun-nhwc, fast-mnist" in line
    line = one_line_error(*run_main(["train", "--dataset", write_sized(tmp_path / "x32", 32)], capsys, monkeypatch),
                          "has 32x32 images")
    assert "no model takes 32x32 images" in line


def test_image_shape_is_checked_for_experiments_too(tmp_path, no_trials):
    path = write_experiment(tmp_path, write_sized(tmp_path / "x32", 32))
    with pytest.raises(BadInput, match="32x32"):
        api.run(str(path), results_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_layout_of_an_idx_folder_reads_only_headers(tmp_path, synthetic):
    found = layout(write_sized(tmp_path / "x30", 30))
    assert found.image_shape == (30, 30) and found.num_classes == 10 and found.split_sizes == {"train": 40, "test": 20}
    assert layout("mnist").image_shape == (28, 28) and layout("fashion-mnist").split_sizes["train"] == 60000
    (synthetic / "t10k-labels-idx1-ubyte").write_bytes((synthetic / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(BadInput, match="not N images and N labels"):
        layout(f"idx:{synthetic}")


def test_dry_run_has_no_side_effects(tmp_path, monkeypatch):
    import mnistbench.data.datasets as datasets
    import mnistbench.run.estimate as estimate

    def forbidden(*_a, **_k):
        raise AssertionError("a dry run fetched data")

    monkeypatch.setattr(datasets, "fetch", forbidden)
    monkeypatch.setattr("mnistbench.run.preflight.fetch", forbidden)
    devices = []
    real = estimate.resolve_device
    monkeypatch.setattr(estimate, "resolve_device", lambda name: devices.append(name) or real(name))
    cache = Path(datasets.cache_root())
    plan = api.plan("smoke")  # MNIST, which these tests have not cached
    assert len(plan.trials) == len(plan.estimates_s) > 0 and all(e > 0 for e in plan.estimates_s)
    assert not cache.exists() or not any(cache.iterdir())
    assert devices and set(devices) == {s.device for _, s in plan.trials}  # measured where the trials will run
    assert plan.device == str(real("auto"))


def test_dry_run_from_the_cli_writes_nothing(tmp_path, capsys, monkeypatch):
    import mnistbench.run.estimate as estimate

    monkeypatch.setattr(estimate, "_step_seconds", lambda *a: 0.01)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["run", "smoke", "--dry-run", "--results", tmp_path / "r"], capsys, monkeypatch)
    assert code == 0 and "estimated total" in out, err
    assert list(tmp_path.iterdir()) == []
