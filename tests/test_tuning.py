"""The tuning protocol: quasi-random search over a declared space, the choice made on validation accuracy
only, the best point rerun with held-out seeds on the test set, and the pruning of hopeless trials."""

from __future__ import annotations

import math

import pytest

from mnistbench.core.result import CurvePoint, TrialResult
from mnistbench.core.trial import Progress
from mnistbench.errors import ConfigError
from mnistbench.run.experiments import parse_experiment
from mnistbench.run.jobs import JobOutput
from mnistbench.run.runner import run_experiment
from mnistbench.run.store import ResultStore
from mnistbench.workloads import Dimension, Prune, choose_best, sample_points, should_prune
from mnistbench.run import protocol
from mnistbench.workloads.tuning import tuning_trials, validation_score

from .test_interop_models import cli  # noqa: F401 - a fixture: the CLI's entry point in this process

TUNED = """name = "tuned"
seeds = 3

[defaults]
workload = "idx:{folder}"
target = 0.5
val_size = 100
model = "compact"
batch_size = 32
steps = 10
eval_every = 5
eval_batch_size = 100
threads = 1

[[grid]]
label = "{{optimizer}}"
group = "{{optimizer}}"
vary = {{ optimizer = {optimizers} }}

[tuning]
trials = {trials}
space = {{ lr = {{ low = 1e-4, high = 1.0, scale = "log" }} }}
{extra}
"""


def tuned(folder="/nowhere", optimizers='["sgd", "adam"]', trials=6, extra=""):
    return parse_experiment(TUNED.format(folder=folder, optimizers=optimizers, trials=trials, extra=extra), "t.toml")


def fake_result(spec, val_acc: float, test_acc: float, status: str = "budget") -> TrialResult:
    return TrialResult(spec=spec, status=status, final_accuracy=test_acc, final_loss=0.1, time_to_target_s=None,
                       steps_to_target=None, epochs_to_target=None, steps=10, train_seconds=1.0, eval_seconds=0.2,
                       wall_seconds=1.5, load_seconds=0.0, compile_seconds=0.0, device="cpu",
                       curve=[CurvePoint(10, 1.0, 1.0, 1.5, 0.5, val_acc, 0.3, spec.lr)])


# --- the search -------------------------------------------------------------------------------------------

SPACE = {"lr": Dimension(low=1e-4, high=1.0, scale="log"),
         "optimizer_args.momentum": Dimension(low=0.8, high=0.99)}


@pytest.mark.parametrize("method", ["halton", "sobol"])
def test_search_is_deterministic_given_the_seed(method):
    first = sample_points(SPACE, 12, seed=3, method=method)
    assert first == sample_points(SPACE, 12, seed=3, method=method)
    assert first == sample_points(dict(reversed(SPACE.items())), 12, seed=3, method=method)  # key order irrelevant
    assert first != sample_points(SPACE, 12, seed=4, method=method)
    assert len({tuple(p.values()) for p in first}) == 12


@pytest.mark.parametrize("method", ["halton", "sobol"])
def test_search_respects_the_space(method):
    points = sample_points(SPACE, 64, seed=0, method=method)
    assert all(1e-4 <= p["lr"] <= 1.0 and 0.8 <= p["optimizer_args.momentum"] <= 0.99 for p in points)
    # Log scale: each of the four decades gets about a quarter of the points (a linear scale would put 90%
    # of them in the last one); a low-discrepancy sequence keeps the counts close to 16.
    decades = [sum(10 ** (k - 4) <= p["lr"] < 10 ** (k - 3) for p in points) for k in range(4)]
    assert all(12 <= d <= 20 for d in decades), decades
    # Linear scale: each half of the momentum range gets about half the points.
    assert 26 <= sum(p["optimizer_args.momentum"] < 0.895 for p in points) <= 38


def test_tuning_trials_search_each_configuration_on_the_validation_split():
    exp = tuned()
    planned = tuning_trials(exp)
    assert len(planned) == 2 * 6
    assert [t.spec.lr for t in planned if t.config == "sgd"] == [t.spec.lr for t in planned if t.config == "adam"]
    assert all(t.spec.eval_on == "val" and t.spec.val_size == 100 and t.spec.seed == 0 for t in planned)
    assert exp.trials() == [(t.label, t.spec) for t in planned]


@pytest.mark.parametrize("extra, fragment", [
    ('[tuning]\ntrials = 2\nspace = { lr = { low = 1, high = 0.1 } }', "must be below high"),
    ('[tuning]\ntrials = 2\nspace = { lr = { low = 0, high = 1, scale = "log" } }', "log-scale range needs low > 0"),
    ('[tuning]\ntrials = 2\nspace = { nope = { low = 0.1, high = 1 } }', "'nope' is not a trial field"),
    ('[tuning]\ntrials = 2\nspace = { "batch_size.x" = { low = 1, high = 2 } }', "take a dotted option"),
    ('[tuning]\ntrials = 2\nspace = {}', "search space is empty"),
    ('[tuning]\ntrials = 0\nspace = { lr = { low = 0.1, high = 1 } }', "trials"),
    ('[tuning]\ntrials = 2\nspace = { "optimizer_args.nope" = { low = 0.1, high = 1 } }', "does not take 'nope'"),
])
def test_bad_tuning_block_is_one_config_error(extra, fragment):
    text = 'name = "x"\n[defaults]\nworkload = "mnist"\n[[config]]\nlabel = "a"\n' + extra
    with pytest.raises(ConfigError) as info:
        parse_experiment(text, "bad.toml")
    assert fragment in info.value.message and "bad.toml" in info.value.message


def test_tuning_needs_a_validation_split():
    text = ('name = "x"\n[[config]]\nlabel = "a"\nfields = { dataset = "mnist" }\n'
            '[tuning]\ntrials = 2\nspace = { lr = { low = 0.01, high = 0.1 } }\n')
    with pytest.raises(ConfigError, match="validation split"):
        parse_experiment(text, "x.toml")


# --- the choice -------------------------------------------------------------------------------------------

def test_choice_reads_validation_accuracy_not_test_accuracy():
    planned = [t for t in tuning_trials(tuned()) if t.config == "sgd"]
    lrs = sorted(t.spec.lr for t in planned)
    # Validation accuracy grows with lr, test accuracy shrinks: the two would pick opposite ends.
    results = {t.spec.id: fake_result(t.spec, 0.5 + 0.05 * lrs.index(t.spec.lr), 0.99 - 0.05 * lrs.index(t.spec.lr))
               for t in planned}
    choice = choose_best("sgd", planned, results)
    assert choice.values == {"lr": max(lrs)} and choice.spec.lr == max(lrs)
    assert choice.score == pytest.approx(0.5 + 0.05 * (len(lrs) - 1))
    assert choice.trials == len(planned) and choice.seconds == pytest.approx(1.5 * len(planned))


def test_a_diverged_or_pruned_point_never_wins():
    planned = [t for t in tuning_trials(tuned()) if t.config == "sgd"]
    results = {t.spec.id: fake_result(t.spec, 0.9 if i < 2 else 0.5, 0.5, status=("diverged", "pruned")[i] if i < 2
                                      else "budget") for i, t in enumerate(planned)}
    choice = choose_best("sgd", planned, results)
    assert choice.values not in ({"lr": planned[0].spec.lr}, {"lr": planned[1].spec.lr})
    assert choice.pruned == 1


def test_validation_score_refuses_a_trial_evaluated_on_test():
    spec = tuning_trials(tuned())[0].spec.model_copy(update={"eval_on": "test"})
    with pytest.raises(ValueError, match="not on a validation split"):
        validation_score(fake_result(spec, 0.9, 0.9))


class ScriptedExecutor:
    """Answers every job at once with made-up results: validation accuracy rises with lr, test accuracy falls."""

    def __init__(self):
        self.jobs = []

    def run(self, jobs):
        for job in jobs:
            self.jobs.append(job)
            rank = math.log10(job.spec.lr)
            yield JobOutput(job, fake_result(job.spec, 0.9 + 0.01 * rank, 0.9 - 0.01 * rank))


def test_runner_reruns_the_validation_winner_with_held_out_seeds_on_test(tmp_path):
    """A store whose test accuracies would pick the smallest lr: the rerun still takes the validation winner."""
    exp = tuned()
    store = ResultStore(tmp_path / "res")
    executor = ScriptedExecutor()
    summary = run_experiment(exp, store, executor)
    search = [j for j in executor.jobs if j.spec.eval_on == "val"]
    reruns = [j for j in executor.jobs if j.spec.eval_on == "test"]
    assert len(search) == 12 and summary.ran == 12 + 2 * 3
    for config in ("sgd", "adam"):
        best = max(j.spec.lr for j in search if j.spec.optimizer == config)
        mine = [j for j in reruns if j.spec.optimizer == config]
        assert {j.spec.lr for j in mine} == {best}
        assert sorted(j.spec.seed for j in mine) == [1, 2, 3]  # seed 0 searched; 1..3 never seen by the choice
        assert {j.label for j in mine} == {f"{config} · tuned"}
        assert all(j.spec.val_size == 100 for j in mine)  # trained on exactly the search's training images
    # Resume: nothing left to run, the same winners.
    again = ScriptedExecutor()
    assert run_experiment(exp, store, again).ran == 0 and again.jobs == []
    store.close()


def test_no_rerun_until_every_search_trial_of_a_configuration_is_stored(tmp_path):
    exp = tuned(optimizers='["sgd"]')

    class FailingLast(ScriptedExecutor):
        def run(self, jobs):
            for output in super().run(jobs):
                if output.job.spec.lr == max(t.spec.lr for t in tuning_trials(exp)):
                    output.result.status = "failed"
                yield output

    store = ResultStore(tmp_path / "res")
    executor = FailingLast()
    run_experiment(exp, store, executor)
    assert all(j.spec.eval_on == "val" for j in executor.jobs)  # a failed search trial holds the choice back
    executor = ScriptedExecutor()
    run_experiment(exp, store, executor)  # retried, then chosen and rerun
    assert len(executor.jobs) == 1 + 3
    store.close()


# --- pruning ----------------------------------------------------------------------------------------------

RULE = Prune(margin=0.1, min_trials=3)


def test_pruning_waits_for_enough_earlier_trials_at_that_step():
    assert not should_prune(50, 0.1, [{50: 0.9}, {50: 0.9}], RULE)
    assert not should_prune(50, 0.1, [{50: 0.9}, {50: 0.9}, {40: 0.9}], RULE)  # not at the same step
    assert should_prune(50, 0.1, [{50: 0.9}, {50: 0.9}, {50: 0.9}], RULE)


def test_pruning_compares_with_the_median_and_the_margin():
    earlier = [{10: 0.80}, {10: 0.70}, {10: 0.10}]  # median 0.70 (the mean, 0.53, would spare 0.55)
    assert should_prune(10, 0.55, earlier, RULE)
    assert not should_prune(10, 0.61, earlier, RULE)  # within the margin
    assert not should_prune(10, 0.60, earlier, Prune(margin=0.2, min_trials=3))


def test_hopeless_trial_is_stopped_and_stored_as_pruned(tmp_path, monkeypatch):
    """Through the runner: the pruning executor watches each search trial's evaluations against the stored
    curves of the earlier ones; a pruned trial is finished (a resume does not run it again) and cannot win."""
    exp = tuned(optimizers='["sgd"]', trials=5, extra="prune = { margin = 0.2, min_trials = 2 }")
    planned = tuning_trials(exp)
    hopeless = planned[3].spec.id
    stopped_at = []

    def fake_execute(job, progress=None):
        accuracy = 0.1 if job.spec.id == hopeless else 0.8
        for step in (5, 10):  # the trial's evaluations; pruning stops it at the first one it fails
            if job.spec.eval_on == "val":
                stopped_at.append((job.spec.id, step))
            if progress is not None:
                progress(Progress(step, 10, step / 10, 0.5, accuracy, step / 10))
        result = fake_result(job.spec, accuracy, 0.9)
        result.curve.insert(0, CurvePoint(5, 0.5, 0.5, 0.7, 0.6, accuracy, 0.4, job.spec.lr))
        return JobOutput(job, result)

    monkeypatch.setattr(protocol, "execute", fake_execute)
    store = ResultStore(tmp_path / "res")
    run_experiment(exp, store, ScriptedExecutor())
    statuses = {s.result.spec.id: s.result.status for s in store.trials("tuned")}
    assert statuses[hopeless] == "pruned"
    assert [sid for sid, status in statuses.items() if status == "pruned"] == [hopeless]
    assert (hopeless, 10) not in stopped_at  # stopped at step 5, not run to the end
    pruned = next(s.result for s in store.trials("tuned") if s.result.spec.id == hopeless)
    assert pruned.final_accuracy is None and pruned.steps == 5 and [p.step for p in pruned.curve] == [5]
    executor = ScriptedExecutor()
    assert run_experiment(exp, store, executor).ran == 0
    store.close()


def test_report_of_a_tuned_experiment_with_a_pruned_trial(tmp_path, monkeypatch):
    """A pruned trial's curve lacks evaluation losses and rates: the report still renders, the tuning table
    counts it, and the sensitivity plot is drawn."""
    from mnistbench import api

    test_hopeless_trial_is_stopped_and_stored_as_pruned(tmp_path, monkeypatch)
    paths = api.write_report("tuned", tmp_path / "res", tmp_path / "report")
    md = paths.markdown.read_text()
    assert "| sgd | idx:/nowhere (50%) |" in md and "| 5 (1 pruned) |" in md
    assert (tmp_path / "report" / "figures" / "sensitivity-lr.png").is_file()
    # The search points live in the tuning table and the sensitivity plot; the results table and the comparisons
    # are about the chosen configurations' reruns.
    before_tuning, after_tuning = md.split("## Tuned techniques")
    assert "· tuned" in before_tuning and "· tuning " not in before_tuning
    assert "· tuning " not in after_tuning.split("## Comparisons")[-1].split("## Figures")[0]


def test_cli_results_of_a_tuned_experiment_list_the_choices_not_the_search_points(tmp_path, monkeypatch, cli):
    """`mnistbench results` of a tuned study shows what the search chose, rerun on held-out seeds, and says how
    many search points it left to the report's tuning table (as the report does)."""
    test_hopeless_trial_is_stopped_and_stored_as_pruned(tmp_path, monkeypatch)
    out = cli("results", "tuned", "--results", tmp_path / "res")
    assert out.returncode == 0, out.stderr
    assert "sgd · tuned" in out.stdout and "· tuning" not in out.stdout
    assert "5 search points" in out.stdout and "the search's choices rerun on held-out seeds" in out.stdout


def test_with_several_tuning_seeds_the_mean_over_seeds_wins():
    exp = tuned(optimizers='["sgd"]', trials=2, extra="trial_seeds = 2")
    planned = tuning_trials(exp)
    assert sorted(t.spec.seed for t in planned) == [0, 0, 1, 1]
    first, second = sorted({t.point for t in planned})
    # Point `first` has the single best seed (0.95) but the lower mean (0.70 against 0.80).
    acc = {(first, 0): 0.95, (first, 1): 0.45, (second, 0): 0.80, (second, 1): 0.80}
    results = {t.spec.id: fake_result(t.spec, acc[(t.point, t.spec.seed)], 0.9) for t in planned}
    choice = choose_best("sgd", planned, results)
    assert choice.score == pytest.approx(0.80) and choice.values == planned[-1].values
    assert exp.tuning.rerun_seed_list(3) == [2, 3, 4]


def test_a_study_that_ranks_by_time_chooses_by_validation_time():
    """AlgoPerf's rule: the point that reaches the target soonest on validation wins, accuracy breaking ties;
    choosing by accuracy would pick the other end here."""
    planned = [t for t in tuning_trials(tuned()) if t.config == "sgd"]
    lrs = sorted(t.spec.lr for t in planned)
    results = {}
    for t in planned:
        i = lrs.index(t.spec.lr)
        r = fake_result(t.spec, 0.9 + 0.01 * i, 0.5)  # accuracy grows with lr ...
        r.time_to_target_s = 10.0 - i if i < len(lrs) - 1 else None  # ... so does speed, but the largest misses
        results[t.spec.id] = r
    by_time = choose_best("sgd", planned, results, by="time_to_target")
    assert by_time.values == {"lr": lrs[-2]}  # the fastest point that reached the target
    assert choose_best("sgd", planned, results).values == {"lr": lrs[-1]}  # by accuracy: the one that never did
    from mnistbench.run.experiments import load_experiment

    assert load_experiment("optimizers").tuning.choose_by == "time_to_target"
