"""The speedrun's held-out protocol (benchmarks/speedrun.py): its budget is chosen on a validation split and
the tuning seeds only, and the seeds it reports can never be tuning seeds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def speedrun(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("speedrun_benchmark", BENCHMARKS / "speedrun.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_budget_is_chosen_on_validation_and_tuning_seeds_only(speedrun, monkeypatch, capsys):
    loads, trials = [], []
    monkeypatch.setattr(speedrun, "load", lambda name, val_size=0: loads.append(val_size) or "data")

    def fake_run(spec, data):  # accuracy rises with the budget: 8 steps reach 99%, 5 do not
        trials.append(spec)
        acc = 0.985 if spec.steps == 5 else 0.992
        return SimpleNamespace(steps=spec.steps, curve=[SimpleNamespace(step=spec.steps, eval_accuracy=acc)],
                               environment={"precision": "fp32"})

    monkeypatch.setattr(speedrun, "run_trial", fake_run)
    recipe = dict(speedrun.load_experiment("speedrun").trials(1))["speedrun"]
    speedrun.choose_budget(recipe, [8, 5], 10_000)
    assert loads == [10_000]
    assert {t.seed for t in trials} == set(speedrun.TUNING_SEEDS) and len(trials) == 20
    assert all(t.eval_on == "val" and t.val_size == 10_000 and t.eval_every == 0 for t in trials)
    assert "chosen: steps = 8" in capsys.readouterr().out


def test_reported_seeds_may_not_overlap_the_tuning_seeds(speedrun, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["speedrun.py", "--first-seed", "5", "--seeds", "3"])
    monkeypatch.setattr(speedrun, "run_trial", lambda *a: pytest.fail("no trial may run"))
    with pytest.raises(SystemExit) as exit_:
        speedrun.main()
    assert exit_.value.code == 2 and "overlap the tuning seeds" in capsys.readouterr().err
