"""The evaluated-weights seam (core/weights.py): under Schedule-Free and an EMA of the weights, every evaluation,
every snapshot the time-to-target search reads and the returned model hold the weights the technique means to be
evaluated; training goes on from the weights it trains. And the optimizers of the `optim` extra, each trained
end to end."""

from __future__ import annotations

import sys

import pytest
import torch

from mnistbench import make_spec
from mnistbench.core import trial as trial_module
from mnistbench.core.recipes import OPTIMIZERS
from mnistbench.core.trial import run_trial
from mnistbench.core.weights import Averaged, ScheduleFree
from mnistbench.errors import BadInput, ConfigError

from .test_experiments import assert_one_line_error, cli, write_experiment

pytest.importorskip("schedulefree")
pytest.importorskip("pytorch_optimizer")


def spec(dataset: str, **fields):
    base = dict(dataset=dataset, model="compact", batch_size=32, steps=40, eval_every=10, target=0.3, seed=3,
                threads=1)
    return make_spec(**{**base, **fields})


class Spy:
    """Records the trial's seam and checks, at every evaluation and snapshot, what the model holds."""

    def __init__(self, monkeypatch):
        self.seam = None
        self.evaluations = self.snapshots = self.searched = 0
        built = trial_module.evaluation_weights

        def keep(*args, **kw):
            self.seam = built(*args, **kw)
            return self.seam

        monkeypatch.setattr(trial_module, "evaluation_weights", keep)
        evaluate, meets, snapshot = trial_module.evaluate_toward, trial_module.meets_target, trial_module.Snapshot.of

        def spied_evaluate(model, *args, **kw):
            self.check(model)
            self.evaluations += 1
            return evaluate(model, *args, **kw)

        def spied_meets(model, *args, **kw):
            self.searched += 1
            self.check_probe(model)
            return meets(model, *args, **kw)

        def spied_snapshot(model, *args, **kw):
            if self.seam is not None:  # the warm-up evaluates before the seam exists
                self.check(model, snapshot=True)
                self.snapshots += 1
            return snapshot(model, *args, **kw)

        monkeypatch.setattr(trial_module, "evaluate_toward", spied_evaluate)
        monkeypatch.setattr(trial_module, "meets_target", spied_meets)
        monkeypatch.setattr(trial_module.Snapshot, "of", staticmethod(spied_snapshot))

    def check(self, model, snapshot: bool = False) -> None:
        if self.seam is None or not self.is_trained(model):  # the warm-up's throwaway copy
            return
        if isinstance(self.seam, ScheduleFree):
            assert not self.seam.optimizer.param_groups[0]["train_mode"], "evaluated at y, not at Schedule-Free's x"
            if not snapshot:  # BatchNorm statistics as recomputed at x (a snapshot keeps y's: prepared when read)
                self.check_probe(model)
        elif isinstance(self.seam, Averaged):
            for mine, average in zip(model.state_dict().values(), self.seam.average.module.state_dict().values()):
                assert torch.equal(mine, average), "evaluated the trained weights, not their average"

    def is_trained(self, model) -> bool:
        first = next(model.parameters())
        if isinstance(self.seam, ScheduleFree):
            return any(first is p for g in self.seam.optimizer.param_groups for p in g["params"])
        return model is getattr(self.seam, "model", model)

    def check_probe(self, probe) -> None:
        if isinstance(self.seam, ScheduleFree):
            # The snapshot held x with y's BatchNorm statistics: the probe must have them recomputed at x.
            fresh = {k: v.clone() for k, v in probe.state_dict().items()}
            self.seam.prepare(probe)
            for k, v in probe.state_dict().items():
                # oneDNN's kernels may round a recompute differently (1e-6 seen); y's statistics are far off x's
                assert torch.allclose(v.float(), fresh[k].float(), rtol=1e-4, atol=1e-5), \
                    f"{k} was evaluated as trained at y, not recomputed at x"


@pytest.mark.parametrize("fields", [dict(optimizer="sf-adamw", lr=0.003), dict(optimizer="adam", lr=0.003, ema=0.9)],
                         ids=["schedule-free", "ema"])
def test_every_evaluation_and_search_sees_the_evaluation_weights(synthetic_name, monkeypatch, fields):
    spy = Spy(monkeypatch)
    # summary-bn has BatchNorm: Schedule-Free's statistics must be recomputed at x for the search's probe too.
    result = run_trial(spec(synthetic_name, model="summary-bn", target=0.9, eval_every=20, **fields))
    assert spy.evaluations >= 2 and spy.snapshots >= 1, (spy.evaluations, spy.snapshots)
    if result.status == "reached":
        assert spy.searched >= 1
    # The returned model (the final test, inference, saving) holds the evaluation weights: its accuracy on the
    # test set is the last evaluation's.
    again, _ = trial_module.evaluate(result.model, _test_split(synthetic_name), None, torch.autocast("cpu", enabled=False))
    assert again == pytest.approx(result.final_accuracy)


def _test_split(dataset: str):
    from mnistbench.data import load

    return load(dataset).test


@pytest.mark.parametrize("fields", [dict(optimizer="sf-adamw", lr=0.003), dict(optimizer="adam", lr=0.003, ema=0.9)],
                         ids=["schedule-free", "ema"])
def test_evaluating_never_changes_what_is_trained(synthetic_name, fields):
    # The same trial evaluated every 5 steps or only at the end trains the same weights, bit for bit: each
    # evaluation gives training back its weights (Schedule-Free's y exactly, not through the package's rounding
    # round trip), BatchNorm statistics and random streams; the final test is then the last evaluation's.
    often = run_trial(spec(synthetic_name, model="summary-bn", eval_every=5, target=1.0, **fields))
    once = run_trial(spec(synthetic_name, model="summary-bn", eval_every=0, target=1.0, **fields))
    assert often.epochs[-1].train_loss == once.epochs[-1].train_loss
    assert often.final_accuracy == once.final_accuracy
    for a, b in zip(often.model.state_dict().values(), once.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_schedule_free_evaluation_gives_training_back_its_weights_statistics_and_random_streams():
    # Inside, x with BatchNorm statistics recomputed at it; after, y, the trained statistics and the random
    # streams the recompute drew from, all exactly.
    from mnistbench.core.models import build_model
    from mnistbench.core.recipes import make_optimizer
    from mnistbench.core.weights import evaluation_weights

    torch.manual_seed(0)
    model = build_model("seed-bn")  # BatchNorm and dropout
    optimizer = make_optimizer("sf-adamw", model.parameters(), 0.01, {})
    images = torch.randn(64, 1, 28, 28)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), torch.arange(64) % 10).backward()
        optimizer.step()
    seam = evaluation_weights("schedule-free", model, optimizer, 0.0, lambda: iter([images[:32], images[32:]]),
                              torch.autocast("cpu", enabled=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    with seam.evaluating(model):
        inside = {k: v.clone() for k, v in model.state_dict().items()}
    assert torch.equal(torch.random.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
        if "running_mean" in k:
            assert not torch.equal(inside[k], before[k]), f"{k} was not recomputed at x"
    assert any(not torch.allclose(inside[k], before[k]) for k in before if "weight" in k), "x was not swapped in"
    seam.finish(model)  # the x a final evaluation reads is the one the last evaluation saw
    for k, v in model.state_dict().items():
        assert torch.equal(v, inside[k]), k


def test_the_evaluated_weights_are_not_the_trained_ones(synthetic_name, monkeypatch):
    # What makes the tests above able to fail: after training, Schedule-Free's x is not its y, and an EMA's
    # average is not the trained weights, which a trial without it ends with (the same training otherwise).
    spy = Spy(monkeypatch)
    run_trial(spec(synthetic_name, optimizer="sf-adamw", lr=0.003, eval_every=0))
    x = [p.detach().clone() for p in spy.seam.optimizer.param_groups[0]["params"]]
    spy.seam.optimizer.train()
    assert any(not torch.equal(a, p) for a, p in zip(x, spy.seam.optimizer.param_groups[0]["params"]))
    averaged = run_trial(spec(synthetic_name, optimizer="adam", lr=0.003, eval_every=0, ema=0.5))
    plain = run_trial(spec(synthetic_name, optimizer="adam", lr=0.003, eval_every=0))
    assert averaged.epochs[-1].train_loss == pytest.approx(plain.epochs[-1].train_loss, rel=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(averaged.model.state_dict().values(),
                                                     plain.model.state_dict().values()))


@pytest.mark.parametrize("name", [n for n, e in OPTIMIZERS if e.extra])
def test_each_extra_optimizer_trains(synthetic_name, name):
    lr = 1.0 if OPTIMIZERS.get(name).lr_free else 0.003
    result = run_trial(spec(synthetic_name, optimizer=name, lr=lr, steps=30))
    assert result.status in ("reached", "budget") and result.final_accuracy > 0.2, (name, result.final_accuracy)


def test_new_optimizers_through_an_experiment_file(synthetic_name, tmp_path):
    extra = "".join(f'\n[[config]]\nlabel = "{n}"\nfields = {{ optimizer = "{n}", lr = {lr} }}\n'
                    for n, lr in (("sf-sgd", 0.5), ("lion", 0.0003), ("prodigy", 1.0)))
    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=1, steps=15,
                            extra=extra + '\n[[config]]\nlabel = "adam + ema"\nfields = { optimizer = "adam", ema = 0.9 }\n')
    proc = cli("run", path, "--results", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    for label in ("sf-sgd", "lion", "prodigy", "adam + ema"):
        assert label in proc.stdout


def test_schedule_free_refuses_a_schedule_and_an_ema_on_top():
    with pytest.raises(ConfigError, match="schedule-free.*constant"):
        make_spec(optimizer="sf-adamw", schedule="cosine")
    with pytest.raises(ConfigError, match="already evaluates averaged weights"):
        make_spec(optimizer="sf-sgd", ema=0.99)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "schedulefree", None)
    with pytest.raises(BadInput, match=r"mnistbench\[optim\]"):
        make_spec(optimizer="sf-adamw")
    blocked = "import sys; sys.modules['pytorch_optimizer'] = None; sys.argv[0] = 'mnistbench'; " \
              "from mnistbench.cli import main; main()"
    import subprocess

    proc = subprocess.run([sys.executable, "-c", blocked, "train", "--optimizer", "lion", "--dataset", "mnist"],
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "optimizer 'lion'", "pip install 'mnistbench[optim]'")


def test_a_learning_rate_free_optimizer_gets_no_search(synthetic_name, tmp_path):
    from mnistbench.run.experiments import load_experiment
    from mnistbench.workloads.tuning import tuning_trials

    path = tmp_path / "lr-free.toml"
    path.write_text(f'''name = "lr-free"
seeds = 1
[defaults]
dataset = "{synthetic_name}"
model = "compact"
steps = 10
val_size = 100
eval_on = "val"
[[config]]
label = "prodigy"
fields = {{ optimizer = "prodigy" }}
[[config]]
label = "adam"
fields = {{ optimizer = "adam" }}
[tuning]
trials = 4
space = {{ lr = {{ low = 1e-4, high = 1.0, scale = "log" }} }}
''')
    planned = tuning_trials(load_experiment(str(path)))
    prodigy = [t for t in planned if t.config == "prodigy"]
    adam = [t for t in planned if t.config == "adam"]
    assert len(adam) == 4 and len({t.spec.lr for t in adam}) == 4
    assert len(prodigy) == 1 and prodigy[0].spec.lr == 1.0


def test_list_optimizers_names_the_extra_of_each_that_needs_one():
    # Rich would read "[optim]" as markup and print nothing of it: table cells are plain text.
    proc = cli("list", "optimizers")
    assert proc.returncode == 0
    assert proc.stdout.count("mnistbench[optim]") == sum(1 for _, e in OPTIMIZERS if e.extra)
