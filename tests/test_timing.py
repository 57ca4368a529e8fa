"""Timing you can defend: untimed warm-up on a throwaway copy, time-to-target found between evaluations by
a search over weight snapshots, and divergence caught between evaluations."""

from __future__ import annotations

import math

import pytest
import torch

from mnistbench import load, make_spec, run_trial
from mnistbench.core import trial as trial_module
from mnistbench.core.horizon import horizon
from mnistbench.core.models import MODELS, ModelEntry, build_model
from mnistbench.core.result import TrialResult
from mnistbench.core.target import Snapshot, max_search_evaluations, search_crossing
from mnistbench.cli.train import result_rows
from mnistbench.report.render import write_report
from mnistbench.run.store import ResultStore


@pytest.fixture
def data(synthetic_name):
    return load(synthetic_name)


def spec(synthetic_name, **over):
    return make_spec(dataset=synthetic_name, **{**dict(model="compact", threads=1, eval_batch_size=100), **over})


# -- the snapshot search -------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 10, 13, 33])
def test_search_finds_the_first_crossing_of_a_monotone_curve_within_its_bound(k):
    for first in range(1, k + 1):  # candidates[0] is the known miss, candidates[k] the known hit
        candidates = [Snapshot(10 * i, 0.5 * i) for i in range(k + 1)]
        seen = []
        crossing = search_crossing(candidates, lambda c: seen.append(c.step) or c.step >= 10 * first)
        assert crossing.hit.step == 10 * first and crossing.resolution_steps == 10
        assert crossing.resolution_seconds == 0.5
        assert crossing.evaluations == len(seen) <= max_search_evaluations(k) == k - 1


def test_search_returns_the_first_crossing_when_accuracy_dips():
    """Accuracy near the target is noisy: a bisection lands on the later crossing (step 6) here."""
    accuracy = [0.50, 0.96, 0.975, 0.96, 0.96, 0.96, 0.971, 0.98, 0.98]
    candidates = [Snapshot(i, float(i)) for i in range(len(accuracy))]
    crossing = search_crossing(candidates, lambda c: accuracy[c.step] >= 0.97)
    assert (crossing.hit.step, crossing.miss.step) == (2, 1)
    assert crossing.evaluations == 2  # stops at the first hit: its cost is what it scanned


def test_default_cadence_is_four_evaluations_per_epoch():
    """469 steps an epoch: 117, 234, 352, 469, never two evaluations one step apart (was 117 ... 468, 469)."""
    h = horizon(make_spec(epochs=2), 60000)
    points, step = [], 0
    while step < h.total_steps:
        step = h.next_cadence(step)
        points.append(step)
    assert points == [117, 234, 352, 469, 586, 703, 821, 938]
    assert all(h.at_cadence(p) for p in points) and not any(h.at_cadence(p) for p in (1, 118, 468, 470))
    assert h.cadence_evaluations() == 3 + 2  # the first epoch's cadence, then each epoch end


def test_time_to_target_is_resolved_between_evaluations_on_a_known_curve(synthetic_name, data):
    # 600 images at batch 4: 150 steps per epoch, so snapshots every 3 steps (1/50 epoch), evaluations every 30.
    base = dict(batch_size=4, optimizer="sgd", lr=2e-4, steps=90, target=0.9)
    known = run_trial(spec(synthetic_name, **base, eval_every=1), data)  # evaluated after every step
    true_first = next(p.step for p in known.curve if not p.partial and p.eval_accuracy >= 0.9)  # partial: a miss
    result = run_trial(spec(synthetic_name, **base, eval_every=30), data)
    h = horizon(result.spec, len(data.train))
    assert (h.eval_every, h.snapshot_every) == (30, 3)
    assert true_first % 30  # the crossing falls between two cadence evaluations: the search has work to do
    assert result.status == "reached"
    assert 0 < result.target_resolution_steps <= h.snapshot_every <= h.steps_per_epoch / 50
    assert result.steps_to_target - result.target_resolution_steps < true_first <= result.steps_to_target
    assert 0 < result.target_resolution_s < result.time_to_target_s < result.curve[-1].train_seconds
    search = result.evaluations - len(result.curve)  # the budget ends on an evaluation: no separate final one
    assert 0 < search <= max_search_evaluations(h.snapshots_per_interval)
    # Snapshots and the search never touch the training: the shared evaluation points agree exactly.
    by_step = {p.step: (p.eval_accuracy, p.eval_loss) for p in known.curve}
    assert all(by_step[p.step] == (p.eval_accuracy, p.eval_loss) for p in result.curve if p.step in by_step)


def test_new_result_fields_survive_the_store_and_show_in_train_and_the_report(synthetic_name, data, tmp_path):
    result = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, batch_size=32, steps=19, target=0.5), data)
    assert result.status == "reached" and result.warmup_seconds > 0
    rows = dict(result_rows(result))
    assert rows["target resolved to"] == f"1 steps / {result.target_resolution_s:.3f} s"
    assert rows["warm-up (excluded)"] == f"{result.warmup_seconds:.2f} s"
    md = write_report("x", [result], tmp_path / "report").markdown.read_text()
    assert "resolved to within 1 step (" in md and "warmed up untimed on a throwaway copy" in md
    again = TrialResult.from_dict(result.to_dict())
    store = ResultStore(tmp_path)
    store.add_trial("x", "tiny", result)
    stored = next(iter(store.trials("x"))).result
    for r in (again, stored):
        assert (r.target_resolution_steps, r.target_resolution_s, r.warmup_seconds, r.evaluations) == (
            result.target_resolution_steps, result.target_resolution_s, result.warmup_seconds, result.evaluations)


# -- warm-up ---------------------------------------------------------------------------------------------

class Recording(torch.nn.Module):
    """The compact model, recording (batch size, training mode) of every forward call."""

    calls: list[tuple[int, bool]] = []

    def __init__(self):
        super().__init__()
        self.inner = build_model("seed-bn")  # has dropout: its masks draw from the global random stream

    def forward(self, x):
        Recording.calls.append((x.shape[0], self.training))
        return self.inner(x)


@pytest.fixture
def recording_model():
    MODELS.add("test-recording", ModelEntry(Recording, "records its calls", family="test-recording"))
    Recording.calls.clear()
    yield "test-recording"
    del MODELS.entries["test-recording"]


def test_warm_up_runs_every_batch_shape_and_an_evaluation_batch_before_the_first_step(synthetic_name, data,
                                                                                   recording_model):
    # 600 images at batch 32: 18 full batches and a last one of 24; evaluation batches of 100.
    result = run_trial(spec(synthetic_name, model=recording_model, batch_size=32, epochs=1, eval_every=0), data)
    assert result.warmup_seconds > 0
    assert sorted(Recording.calls[:3]) == [(24, True), (32, True), (100, False)]
    assert Recording.calls[3:4] == [(32, True)]  # then the timed run starts


def test_warm_up_leaves_the_timed_run_unchanged(synthetic_name, data, recording_model, monkeypatch):
    # Dropout, BatchNorm buffers and Adam's state would all show a difference in the curve.
    s = spec(synthetic_name, model=recording_model, optimizer="adam", lr=1e-3, batch_size=32, steps=24,
             eval_every=6)
    warmed = run_trial(s, data)
    monkeypatch.setattr(trial_module, "_warm_up", lambda *a, **k: 0.0)
    cold = run_trial(s, data)
    curve = lambda r: [(p.step, p.train_loss, p.eval_accuracy, p.eval_loss) for p in r.curve]
    assert warmed.warmup_seconds > 0 and cold.warmup_seconds == 0
    assert curve(warmed) == curve(cold)
    assert all(torch.equal(a, b) for a, b in zip(warmed.model.state_dict().values(), cold.model.state_dict().values()))


# -- divergence between evaluations ------------------------------------------------------------------------

def test_divergence_ends_the_trial_between_evaluations(synthetic_name, data):
    # 75 steps per epoch and evaluation only at its end: the loss check (every 25 steps) stops it well before.
    s = spec(synthetic_name, model="seed-simple", batch_size=8, lr=1e6, epochs=2, eval_every=0)
    result = run_trial(s, data)
    h = horizon(s, len(data.train))
    assert result.status == "diverged" and result.time_to_target_s is None
    assert result.steps == h.check_every < h.steps_per_epoch and result.curve == []


def test_divergence_after_the_target_ends_the_trial(synthetic_name, data, monkeypatch):
    # After the target, evaluation runs only at epoch ends; a loss that turns NaN later must still end it.
    s = spec(synthetic_name, optimizer="adam", lr=3e-3, batch_size=8, epochs=2, target=0.3, eval_every=5)
    original = torch.nn.CrossEntropyLoss.forward
    calls = []

    def poisoned(self, out, y):
        calls.append(1)
        loss = original(self, out, y)
        return loss * float("nan") if len(calls) > 110 else loss  # warm-up calls included: NaN from about step 108

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    result = run_trial(s, data)
    assert result.status == "diverged" and result.steps_to_target is not None
    assert result.steps_to_target < 100 < result.steps <= 125 < 150


def test_the_search_asks_only_whether_a_snapshot_meets_the_target_and_stops_when_decided(synthetic_name, data):
    """meets_target gives evaluate()'s answer at every target, reading fewer batches when the answer is early."""
    from mnistbench.core.trial import autocast_for, correct_needed, evaluate, meets_target

    model = build_model("compact")
    held_out = data.test
    accuracy = evaluate(model, held_out, 50, autocast_for("fp32", torch.device("cpu")))[0]
    n = len(held_out)
    for target in sorted({0.0, 0.1, accuracy - 1 / n, accuracy, accuracy + 1 / n, 0.97, 1.0}):
        target = min(1.0, max(0.0, target))
        assert meets_target(model, held_out, 50, autocast_for("fp32", torch.device("cpu")), target) == (accuracy >= target)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    meets_target(model, held_out, 50, autocast_for("fp32", torch.device("cpu")), 0.999)  # an untrained model: far off
    assert len(calls) < math.ceil(n / 50)
    assert [correct_needed(t, 10000) for t in (0.97, 0.9, 0.29)] == [9700, 9000, 2900]
    assert all(c / 10000 >= t > (c - 1) / 10000 for t in (0.97, 0.9, 0.29, 0.57) for c in [correct_needed(t, 10000)])
