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
        acc = (0.985 if spec.steps == 5 else 0.992) + 0.0002 * (spec.seed % 3)
        return SimpleNamespace(steps=spec.steps, curve=[SimpleNamespace(step=spec.steps, eval_accuracy=acc)],
                               environment={"precision": "fp32"})

    monkeypatch.setattr(speedrun, "run_trial", fake_run)
    recipe = dict(speedrun.load_experiment("speedrun").trials(1))["speedrun"]
    speedrun.choose_budget(recipe, [8, 5], 10_000)
    assert loads == [10_000]
    assert {t.seed for t in trials} == set(speedrun.TUNING_SEEDS) and len(trials) == 20
    assert all(t.eval_on == "val" and t.val_size == 10_000 and t.eval_every == 0 for t in trials)
    assert "chosen: steps = 8" in capsys.readouterr().out


def test_a_budget_is_chosen_only_when_its_mean_is_at_least_99_with_p_below_005(speedrun, monkeypatch, capsys):
    """A mean above 99% is not enough: the budget's seeds must put it there with p < 0.05 (one-sided t)."""
    monkeypatch.setattr(speedrun, "load", lambda name, val_size=0: "data")
    accuracy = {120: [0.9890, 0.9912] * 5,  # mean 99.01%, p about 0.4
                130: [0.9897, 0.9909] * 5,  # mean 99.03%, p about 0.08: refused
                140: [0.9898, 0.9910] * 5}  # mean 99.04%, p about 0.04: chosen
    p = {steps: speedrun.p_at_least(accs) for steps, accs in accuracy.items()}
    assert p[120] > 0.3 and 0.05 < p[130] < 0.1 and 0.02 < p[140] < 0.05

    def fake_run(spec, data):
        acc = accuracy[spec.steps][spec.seed]
        return SimpleNamespace(steps=spec.steps, curve=[SimpleNamespace(step=spec.steps, eval_accuracy=acc)],
                               environment={"precision": "bf16"})

    monkeypatch.setattr(speedrun, "run_trial", fake_run)
    recipe = dict(speedrun.load_experiment("speedrun").trials(1))["speedrun"]
    speedrun.choose_budget(recipe, [140, 120, 130], 10_000)
    out = capsys.readouterr().out
    assert "chosen: steps = 140" in out and f"p (mean >= 99%) = {p[130]:.2g}" in out


def test_seeds_that_all_agree_decide_the_claim_without_a_t_test(speedrun):
    assert speedrun.p_at_least([0.9910] * 10) == 0.0 and speedrun.p_at_least([0.9890] * 10) == 1.0


def test_reported_seeds_may_not_overlap_the_tuning_seeds(speedrun, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["speedrun.py", "--first-seed", "5", "--seeds", "3"])
    monkeypatch.setattr(speedrun, "run_trial", lambda *a: pytest.fail("no trial may run"))
    with pytest.raises(SystemExit) as exit_:
        speedrun.main()
    assert exit_.value.code == 2 and "overlap the tuning seeds" in capsys.readouterr().err


def test_the_record_claim_is_a_one_sided_test_that_the_mean_is_at_least_99(speedrun):
    from scipy import stats

    above = [0.9905, 0.9912, 0.9908, 0.9901, 0.9910, 0.9907] * 5
    assert speedrun.p_at_least(above) < 0.01
    assert speedrun.p_at_least([0.9899, 0.9903, 0.9898, 0.9902] * 5) > 0.05  # a mean at 99.005%: not decided
    # the same as the t distribution's upper tail by hand
    n, mean, sd = len(above), stats.tmean(above), stats.tstd(above)
    assert speedrun.p_at_least(above) == pytest.approx(stats.t.sf((mean - 0.99) / (sd / n ** 0.5), n - 1))


def test_a_record_row_names_its_commit_flops_p_and_the_previous_record_and_refuses_a_dirty_tree(
        speedrun, monkeypatch, tmp_path):
    from mnistbench import make_spec
    from mnistbench.core.models import build_model, flops_per_image, step_flops_per_image

    spec = make_spec(model="speedrun", batch_size=256, steps=200)
    results = [SimpleNamespace(spec=spec, steps=200, final_accuracy=a, wall_seconds=1.5, model=build_model("speedrun"),
                               environment={"precision": "bf16"}) for a in [0.9905, 0.9911, 0.9908] * 10]
    monkeypatch.setattr(speedrun, "describe", lambda: {"git_dirty": False, "git_revision": "abcdef123456",
                                                       "cpu": "Test CPU", "usable_cores": 2})
    table = tmp_path / "RECORDS.md"
    speedrun.append_record(table, "speedrun", results, peak=1e12, log="run.log", previous="2.000 s (1.33x)")
    row = table.read_text().splitlines()[-1]
    model = results[0].model
    flops = step_flops_per_image(model) * 200 * 256 + flops_per_image(model) * 10_000  # 200 full steps, one test
    assert "abcdef1" in row and "Test CPU" in row and "bf16" in row and "`run.log`" in row
    assert f"{flops / 1e12:.3f} TFLOP" in row and "not a record" not in row and "| 2.000 s (1.33x) |" in row
    assert row.count("|") == table.read_text().splitlines()[-3].count("|")  # as many columns as the header
    monkeypatch.setattr(speedrun, "describe", lambda: {"git_dirty": True})
    with pytest.raises(SystemExit):
        speedrun.append_record(table, "speedrun", results, peak=1e12, log="run.log", previous="")
    assert table.read_text().splitlines()[-1] == row  # nothing appended


def test_a_runs_flops_count_its_steps_gradients_and_the_images_its_votes_read_again(speedrun):
    from mnistbench import make_spec
    from mnistbench.core.models import build_model, flops_per_image, step_flops_per_image

    model = build_model("speedrun-whitened")
    model.seen, model.revoted = 10_000, 300
    # A run stopped at 140 of its 150 steps; and one of 240 steps, whose 235th, the epoch's last, had 96 images.
    result = SimpleNamespace(spec=make_spec(model="speedrun-whitened", batch_size=256, steps=150), steps=140,
                             model=model)
    trained, evaluated = speedrun.run_flops(result)
    assert trained == step_flops_per_image(model) * 140 * 256
    trained, _ = speedrun.run_flops(SimpleNamespace(spec=result.spec, steps=240, model=model))
    assert trained == step_flops_per_image(model) * (60_000 + 5 * 256)
    assert evaluated == flops_per_image(model) * (10_000 + 4 * 300)  # four translations each


@pytest.mark.parametrize("how", ["--only", "no previous record in the experiment"])
def test_a_record_is_refused_before_any_trial_without_the_previous_record_beside_it(speedrun, monkeypatch, capsys,
                                                                                  how):
    argv = ["speedrun.py", "--records", "RECORDS.md"]
    if how == "--only":
        argv += ["--only", "speedrun"]
    else:
        real = speedrun.load_experiment("speedrun")
        monkeypatch.setattr(speedrun, "load_experiment", lambda name: SimpleNamespace(
            trials=lambda n: [(label, spec) for label, spec in real.trials(n) if not label.startswith("speedrun of")]))
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(speedrun, "run_trial", lambda *a: pytest.fail("no trial may run"))
    with pytest.raises(SystemExit) as exit_:
        speedrun.main()
    assert exit_.value.code == 2 and "previous record" in capsys.readouterr().err


def test_a_record_is_refused_before_any_trial_in_a_precision_the_experiment_does_not_set(speedrun, monkeypatch,
                                                                                         capsys):
    monkeypatch.setattr(sys, "argv", ["speedrun.py", "--records", "RECORDS.md", "--precision", "fp32"])
    monkeypatch.setattr(speedrun, "run_trial", lambda *a: pytest.fail("no trial may run"))
    with pytest.raises(SystemExit) as exit_:
        speedrun.main()
    assert exit_.value.code == 2 and "drop --precision" in capsys.readouterr().err


def test_precision_puts_every_recipe_in_it(speedrun, monkeypatch):
    ran = []

    def stop(spec, data):
        ran.append(spec.precision)
        if spec.seed != 10_000:
            raise KeyboardInterrupt  # the warm-ups and a first trial are enough to see the specs
        return SimpleNamespace(wall_seconds=0.0)

    monkeypatch.setattr(sys, "argv", ["speedrun.py", "--precision", "fp32", "--seeds", "1", "--first-seed", "100"])
    monkeypatch.setattr(speedrun, "load", lambda name: SimpleNamespace(train=[], test=[], load_seconds=0.0))
    monkeypatch.setattr(speedrun, "run_trial", stop)
    with pytest.raises(KeyboardInterrupt):
        speedrun.main()
    assert len(ran) == 4 and set(ran) == {"fp32"}  # the three recipes' warm-ups, then the first trial
