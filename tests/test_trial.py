"""run_trial on tiny synthetic data: reaching the target, determinism, divergence, cadence, bad specs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mnistbench import load, make_spec, run_trial
from mnistbench.core.trial import training_loss
from mnistbench.data import Split
from mnistbench.errors import ConfigError, UnknownName

TINY = dict(model="compact", batch_size=32, threads=1, eval_batch_size=100)


@pytest.fixture
def data(synthetic_name):
    return load(synthetic_name)


def spec(synthetic_name, **over):
    return make_spec(dataset=synthetic_name, **{**TINY, **over})


def test_reaches_target_and_times_only_training(synthetic_name, data):
    result = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, epochs=2, target=0.9), data)
    assert result.status == "reached" and result.final_accuracy >= 0.9
    assert 0 < result.time_to_target_s <= result.train_seconds < result.wall_seconds
    # The snapshot search puts the crossing between the last evaluation that missed and the first that met.
    first = next(i for i, p in enumerate(result.curve) if p.eval_accuracy >= 0.9)
    before = result.curve[first - 1] if first else None
    assert (before.step if before else 0) < result.steps_to_target <= result.curve[first].step
    assert (before.train_seconds if before else 0) < result.time_to_target_s <= result.curve[first].train_seconds
    assert result.target_resolution_steps == 1 and 0 < result.target_resolution_s < result.time_to_target_s
    assert [e.epoch for e in result.epochs] == [1.0, 2.0]
    assert math.isclose(sum(e.epoch_seconds for e in result.epochs), result.train_seconds, rel_tol=1e-6)


def test_cadence_is_finer_than_an_epoch_until_the_target(synthetic_name, data):
    result = run_trial(spec(synthetic_name, lr=1e-6, epochs=2, eval_every=3, target=0.99), data)
    steps = [p.step for p in result.curve]
    assert steps[:6] == [3, 6, 9, 12, 15, 18] and steps[-1] == 38  # 19 steps per epoch
    assert result.status == "budget" and result.time_to_target_s is None


def test_a_cadence_evaluation_that_cannot_meet_the_target_stops_and_says_so(synthetic_name, data, tmp_path):
    from mnistbench.core.trial import evaluate
    from mnistbench.run.store import ResultStore

    # lr 1e-6 stays near chance: each cadence pass can stop after the misses 99% allows on 200 test images (2),
    # while epoch ends and the budget's end see the whole split.
    result = run_trial(spec(synthetic_name, lr=1e-6, epochs=2, eval_every=3, target=0.99), data)
    cadence = [p for p in result.curve if p.step not in (19, 38)]
    ends = [p for p in result.curve if p.step in (19, 38)]
    assert cadence and all(p.partial and p.seen < len(data.test) and p.eval_accuracy is None for p in cadence)
    assert ends and not any(p.partial for p in ends)
    assert result.final_accuracy == pytest.approx(evaluate(result.model, data.test, 100, _no_autocast())[0])
    # Stored and read back with it, so the report can leave partial points out of the curves.
    store = ResultStore(tmp_path)
    store.add_trial("e", "label", result)
    back = next(store.trials("e")).result
    store.close()
    assert [p.seen for p in back.curve] == [p.seen for p in result.curve]


def test_a_diverged_trial_never_reports_a_partial_pass_as_its_final_accuracy(synthetic_name, data, monkeypatch):
    from mnistbench.core import trial as trial_module

    # The loss turns NaN after 12 steps: the cadence passes before it (every 3 steps, all partial at a 99% target
    # on a near-chance model) are the only evaluations it had, so it has no whole test evaluation to report.
    real = trial_module.training_step
    steps = []

    def poisoned(*args, **kw):
        steps.append(1)
        loss = real(*args, **kw)
        return loss * float("nan") if len(steps) > 12 else loss

    monkeypatch.setattr(trial_module, "training_step", poisoned)
    result = run_trial(spec(synthetic_name, lr=1e-6, epochs=1, eval_every=3, target=0.99), data)
    assert result.status == "diverged" and any(p.partial for p in result.curve)
    assert result.final_accuracy is None


def _no_autocast():
    import contextlib

    return contextlib.nullcontext()


def test_a_stopped_evaluation_never_stops_one_that_could_meet_the_target(synthetic_name, data):
    from hypothesis import given, settings, strategies as st

    from mnistbench.core.trial import evaluate, evaluate_toward

    # A "model" that answers the labels, wrong on a chosen set of images: the stop must agree with the full pass.
    test = data.test
    n = len(test)

    class Fixed(torch.nn.Module):
        def __init__(self, wrong):
            super().__init__()
            self.wrong = wrong
            self.seen = 0

        def forward(self, x):
            idx = torch.arange(self.seen, self.seen + len(x))
            self.seen += len(x)
            labels = test.labels[idx].clone()
            labels[self.wrong[idx]] = (labels[self.wrong[idx]] + 1) % 10
            return torch.nn.functional.one_hot(labels, 10).float()

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.booleans(), min_size=n, max_size=n), st.sampled_from([0.5, 0.9, 0.97, 0.99, 1.0]),
           st.sampled_from([1, 7, 64, 250]))
    def check(wrong, target, batch):
        wrong = torch.tensor(wrong)
        full, _ = evaluate(Fixed(wrong), test, batch, _no_autocast())
        accuracy, _, seen = evaluate_toward(Fixed(wrong), test, batch, _no_autocast(), target)
        if seen < n:  # stopped: the whole split could not have met the target, and its prefix did not either
            assert full < target and accuracy < target
        else:
            assert accuracy == full

    check()


def _indexed_split(n: int) -> Split:
    """`n` images, image i carrying its index in its first pixel (so a stand-in model knows which it reads)."""
    return Split(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 28, 28).contiguous(),
                 torch.arange(n) % 10)


class _Misses(torch.nn.Module):
    """A stand-in model over an `_indexed_split`: it answers each image's label, except on the images `wrong`
    marks, and counts the images it reads."""

    def __init__(self, split: Split, wrong: torch.Tensor):
        super().__init__()
        self.split, self.wrong, self.images = split, wrong, 0

    def forward(self, x):
        idx = x[:, 0, 0, 0].long()
        self.images += len(x)
        labels = self.split.labels[idx].clone()
        labels[self.wrong[idx]] = (labels[self.wrong[idx]] + 1) % 10
        return torch.nn.functional.one_hot(labels, 10).float()


def test_the_search_order_changes_when_a_snapshot_is_decided_never_the_decision():
    from hypothesis import given, settings, strategies as st

    from mnistbench.core.trial import evaluate_toward, hardest_first, meets_target

    n = 300
    split = _indexed_split(n)

    @settings(max_examples=80, deadline=None)
    @given(st.lists(st.booleans(), min_size=n, max_size=n), st.permutations(range(n)),
           st.sampled_from([0.5, 0.9, 0.97, 1.0]), st.sampled_from([1, 16, 250]))
    def check(wrong, order, target, batch):
        wrong = torch.tensor(wrong)
        truth = (n - int(wrong.sum())) / n >= target
        assert meets_target(_Misses(split, wrong), split, batch, _no_autocast(), target,
                            torch.tensor(order)) == truth
        assert meets_target(_Misses(split, wrong), split, batch, _no_autocast(), target) == truth
        # A cadence pass read in any order stops only when the whole split cannot meet the target.
        accuracy, _, seen = evaluate_toward(_Misses(split, wrong), split, batch, _no_autocast(), target,
                                            order=torch.tensor(order))
        if seen < n:
            assert not truth
        else:
            assert accuracy == (n - int(wrong.sum())) / n

    check()
    # Missed images first: a model that misses the same images is refused after reading about as many.
    wrong = torch.zeros(n, dtype=torch.bool)
    wrong[torch.arange(40, 300, 13)] = True  # 20 misses: 93.3%
    margins = torch.where(wrong, -1.0, 1.0)
    first, plain = _Misses(split, wrong), _Misses(split, wrong)
    assert not meets_target(first, split, 10, _no_autocast(), 0.97, hardest_first(margins))
    assert not meets_target(plain, split, 10, _no_autocast(), 0.97)
    assert first.images <= 20 and plain.images >= 100, (first.images, plain.images)


def test_the_search_reads_first_what_the_last_snapshot_missed():
    """LastMargins: after a near miss has been read, the next snapshot, missing much the same images, is decided
    after reading about as many as it misses; with the hit's margins alone (where those images look easy) it
    takes most of the split. The margins meets_target hands back are those of the images it read, in order."""
    from mnistbench.core.trial import LastMargins, _margins, meets_target

    n = 1000
    split = _indexed_split(n)

    def misses(first: int, last: int) -> torch.Tensor:
        wrong = torch.zeros(n, dtype=torch.bool)
        wrong[first:last] = True
        return wrong

    hit = misses(0, 20)  # 98%: the hit misses images 0-19
    near = misses(500, 540)  # 96%, twice: the earlier snapshots miss 40 images the hit gets right
    kept = LastMargins(n, torch.device("cpu"))
    read = []
    meets_target(_Misses(split, hit), split, 50, _no_autocast(), 0.0, None, read)  # target 0: decided at once...
    assert len(torch.cat(read)) == 50  # ...after one batch: margins of the images read, no more
    with torch.inference_mode():
        out = _Misses(split, hit)(split.images)
    kept.record([_margins(out, split.labels)], None)  # the hit read everything
    first, second, alone = _Misses(split, near), _Misses(split, near), _Misses(split, near)
    order = kept.order()
    read = []
    assert not meets_target(first, split, 10, _no_autocast(), 0.97, order, read)
    kept.record(read, order)
    assert torch.equal(kept.margins[order[:first.images]], torch.cat(read))
    assert not meets_target(second, split, 10, _no_autocast(), 0.97, kept.order())
    assert not meets_target(alone, split, 10, _no_autocast(), 0.97, order)  # the hit's margins alone
    assert second.images <= 40 and alone.images >= 500, (second.images, alone.images)


def test_same_seed_same_curve(synthetic_name, data):
    same = dict(model="seed-bn", optimizer="sgd", optimizer_args={"momentum": 0.9}, steps=12, eval_every=4)
    runs = [run_trial(spec(synthetic_name, **same, seed=7), data) for _ in range(2)]
    other = run_trial(spec(synthetic_name, **same, seed=8), data)  # only the seed differs
    curve = lambda r: [(p.step, p.train_loss, p.eval_accuracy, p.eval_loss) for p in r.curve]
    assert curve(runs[0]) == curve(runs[1])
    assert curve(runs[0]) != curve(other)


def test_divergence_is_reported(synthetic_name, data):
    result = run_trial(spec(synthetic_name, model="seed-simple", lr=1e6, steps=20, eval_every=5), data)
    assert result.status == "diverged" and result.time_to_target_s is None


def test_a_diverged_trial_never_stores_a_validation_accuracy_as_its_final_test_accuracy(synthetic_name):
    from mnistbench import load

    held = load(synthetic_name, val_size=100)
    result = run_trial(spec(synthetic_name, model="seed-simple", lr=1e6, steps=20, eval_every=1, eval_on="val",
                            val_size=100), held)
    assert result.curve  # evaluated on the validation split before it diverged ...
    assert result.status == "diverged" and result.final_accuracy is None and result.final_loss is None  # ... not test


def test_stop_at_target(synthetic_name, data):
    result = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, epochs=3, target=0.5,
                            stop_at_target=True, eval_every=2), data)
    # Training stops at the evaluation that met the target; the search may place the crossing before it.
    assert result.status == "reached" and result.steps_to_target <= result.steps == result.curve[-1].step < 57


def test_schedules_change_the_rate(synthetic_name, data):
    result = run_trial(spec(synthetic_name, schedule="step", schedule_args={"step_size": 1, "gamma": 0.5},
                            lr=0.04, epochs=2, eval_every=0), data)
    assert [p.lr for p in result.curve] == [0.04, 0.02]  # the rate the interval before each point ran at


@pytest.mark.parametrize("over, match", [
    ({"optimizer": "nope"}, "unknown optimizer 'nope'"),
    ({"model": "nope"}, "unknown model 'nope'"),
    ({"lr": -0.1}, "lr: Input should be greater than 0"),
    ({"batch_size": 0}, "batch_size"),
    ({"target": 1.5}, "target"),
    ({"target": 0}, "target"),
    ({"optimizer": "adam", "optimizer_args": {"momentum": 0.9}}, "'adam' does not take 'momentum'"),
    ({"schedule": "step", "schedule_args": {"warmup": 3}}, "does not take 'warmup'"),
    ({"nonsense": 1}, "nonsense: unknown key"),
    ({"grow_by": 3}, "grow_by and grow_lr apply from grow_at on"),
    ({"grow_at": 0.5, "grow_lr": 1.5, "grow_by": 1, "eval_every": 0}, "grow_by"),
    ({"grow_at": 1.0, "eval_every": 0}, "grow_at"),
    ({"grow_at": 0.5}, "grow_at needs eval_every = 0"),
    ({"grow_at": 0.5, "eval_every": 0, "ema": 0.9}, "does not combine with ema"),
    ({"grow_at": 0.5, "eval_every": 0, "optimizer": "sf-adamw", "lr": 0.01}, "does not combine with 'sf-adamw'"),
])
def test_bad_specs_are_config_errors(over, match):
    with pytest.raises((ConfigError, UnknownName), match=match):
        make_spec(**over)


def test_spec_id_is_stable_and_content_based():
    a, b = make_spec(lr=0.1, seed=1), make_spec(seed=1, lr=0.1)
    assert a.id == b.id and a.id != make_spec(lr=0.1, seed=2).id
    assert a.config_key() == make_spec(lr=0.1, seed=2).config_key()


# --- A batch that grows (grow_at) ----------------------------------------------------------------------------

def _recorded_steps(monkeypatch):
    """(batch size, rate) of every training step a trial takes from here on, its warm-up's included."""
    from mnistbench.core import trial as trial_module

    seen, step = [], trial_module.training_step

    def recording(forward, x, y, loss_fn, optimizer, autocast):
        seen.append((len(x), optimizer.param_groups[0]["lr"]))
        return step(forward, x, y, loss_fn, optimizer, autocast)

    monkeypatch.setattr(trial_module, "training_step", recording)
    return seen


def test_a_growing_batch_merges_the_late_batches_at_the_scaled_rate_of_the_schedule(synthetic_name, data,
                                                                                    monkeypatch):
    """From grow_at of the budget on, grow_by batches make one step; the schedule still counts batches (the
    rate follows the images seen) and a merged step takes grow_lr times its rate."""
    seen = _recorded_steps(monkeypatch)
    recipe = dict(optimizer="sgd", lr=0.1, schedule="warmup-linear", steps=10, eval_every=0)
    plain = run_trial(spec(synthetic_name, **recipe), data)
    rates = [lr for _, lr in seen[-10:]]
    seen.clear()
    grown = run_trial(spec(synthetic_name, **recipe, grow_at=0.6, grow_lr=1.5), data)
    steps = seen[-6 - 2:]  # after the warm-up's
    assert [n for n, _ in steps] == [32] * 6 + [64] * 2
    assert [lr for _, lr in steps] == pytest.approx(rates[:6] + [1.5 * rates[6], 1.5 * rates[8]])
    assert grown.steps == plain.steps == 10  # the budget counts batches


def test_a_growing_batch_reports_the_training_loss_per_batch(synthetic_name, data):
    """The same batches at a rate too small to move the weights: the same mean training loss, merged or not."""
    recipe = dict(model="summary", optimizer="sgd", lr=1e-12, steps=10, eval_every=0)  # no BatchNorm: a batch
    # of 96 then normalizes as three of 32 do
    plain = run_trial(spec(synthetic_name, **recipe), data)
    grown = run_trial(spec(synthetic_name, **recipe, grow_at=0.4, grow_by=3), data)
    assert grown.curve[-1].train_loss == pytest.approx(plain.curve[-1].train_loss, rel=1e-5)


def test_an_epoch_end_cuts_a_merged_step_and_the_next_one_ends_its_group(synthetic_name, data, monkeypatch):
    """600 images in batches of 32: 19 batches an epoch, the last of 24. Merging from batch 14, the epoch's end
    (after batch 18) cuts the group 18-19 in two steps; pairs resume from batch 20."""
    seen = _recorded_steps(monkeypatch)
    result = run_trial(spec(synthetic_name, optimizer="sgd", lr=0.05, steps=30, eval_every=0, grow_at=0.5), data)
    sizes = [n for n, _ in seen[-23:]]
    assert sizes == [32] * 14 + [64, 64, 24, 32] + [64] * 5
    assert result.steps == 30 and len(result.epochs) == 2


def test_a_merged_step_never_spans_an_evaluation_or_a_check():
    from mnistbench.core.horizon import horizon

    h = horizon(make_spec(steps=100, batch_size=10, grow_at=0.35, grow_by=3, eval_every=0), n_train=10_000)
    assert h.grow_from % 3 == 0 and h.check_every % 3 == 0  # merges start where checks fall
    assert h.grow_from == 33 and h.batches_at(32, 100) == 1 and h.batches_at(33, 100) == 3  # 35 rounded down
    assert h.batches_at(33, 34) == 1 and h.batches_at(33, 35) == 2  # cut short only by the loop's next stop...
    assert h.batches_at(34, 100) == 2 and h.batches_at(35, 100) == 1  # ...and the next step ends the group
    assert all(h.batches_at(b, 100) == 3 for b in range(33, 97, 3))
    assert {30, 20, 10} <= h.batch_sizes(10, 10_000)
    with pytest.raises(ConfigError, match="eval_every = 0"):
        make_spec(steps=100, grow_at=0.5, eval_every=10)  # evaluations between would cut the merged steps


def test_the_rate_of_a_merged_step_is_restored_exactly():
    from mnistbench.core.trial import rate_scaled

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with rate_scaled(optimizer, 3.0):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3)
    assert optimizer.param_groups[0]["lr"] == 0.1  # 0.1 * 3 / 3 would be 0.10000000000000002


def test_the_dry_run_estimate_times_merged_steps_at_their_own_size(synthetic_name, monkeypatch):
    import mnistbench.run.estimate as estimate

    monkeypatch.setattr(estimate, "_step_seconds", lambda spec, found, cache, batch: 1.0 if batch == 32 else 1.5)
    monkeypatch.setattr(estimate, "_eval_image_seconds", lambda *a: 0.0)
    recipe = dict(steps=10, eval_every=0)
    plain, grown = estimate.estimate_seconds([spec(synthetic_name, **recipe),
                                              spec(synthetic_name, **recipe, grow_at=0.6)])
    assert (plain, grown) == (10.0, 6 * 1.0 + 2 * 1.5)  # six steps of 32, two of 64


@pytest.mark.parametrize("smoothing,dtype", [(0.1, torch.float32), (0.3, torch.float32), (0.1, torch.bfloat16)])
def test_the_training_loss_is_cross_entropy_with_the_specs_label_smoothing(smoothing, dtype):
    """Value and gradient of torch's own label-smoothed cross-entropy, computed in fp32 whatever the logits' type."""
    torch.manual_seed(0)
    logits = torch.randn(64, 10).to(dtype).float().requires_grad_()
    labels = torch.randint(0, 10, (64,))
    if dtype != torch.float32:
        low = logits.detach().to(dtype).requires_grad_()
        (low_grad,) = torch.autograd.grad(training_loss(smoothing)(low, labels), low)
        (fp32_grad,) = torch.autograd.grad(training_loss(smoothing)(logits, labels), logits)
        assert torch.allclose(low_grad.float(), fp32_grad, atol=1e-3)
    ours = training_loss(smoothing)(logits, labels)
    (grad,) = torch.autograd.grad(ours, logits)
    torchs = nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, labels)
    (expected,) = torch.autograd.grad(torchs, logits)
    assert torch.allclose(ours, torchs, atol=1e-6) and torch.allclose(grad, expected, atol=1e-7)
