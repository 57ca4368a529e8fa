"""What no other test runs: every registered model, optimizer and schedule built once; bf16, channels-last,
label smoothing and torch.compile trials; the per-step and metric schedules; evaluation on a validation split;
[[inference]] rows from the store to the report; the two-phase `select` flow on tiny data."""

from __future__ import annotations

import math

import pytest
import torch

from mnistbench import api, load, make_spec, run_trial
from mnistbench.core.models import MODELS, build_model
from mnistbench.core.recipes import OPTIMIZERS, SCHEDULES, Horizon, make_optimizer, make_schedule
from mnistbench.core.trial import evaluate

from .test_experiments import assert_one_line_error, cli, stored, write_experiment

from .test_trial import TINY, data, spec  # noqa: F401 - `data` is a fixture


# --- Every registry entry, once -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_and_classifies_a_batch(name):
    torch.manual_seed(0)
    model = build_model(name)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step(name):
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = make_optimizer(name, [weight], 0.1, {})
    for _ in range(2):  # SOAP's first step only builds its preconditioner, as the paper's does
        optimizer.zero_grad()
        (weight ** 2).sum().backward()
        optimizer.step()
    assert not torch.equal(weight.detach(), torch.ones(4))


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_builds_and_steps(name):
    optimizer = make_optimizer("sgd", [torch.nn.Parameter(torch.ones(1))], 0.1, {})
    schedule = make_schedule(name, optimizer, {}, Horizon(steps_per_epoch=10, total_steps=30))
    assert schedule.unit in ("step", "epoch", "metric")
    for _ in range(10):
        optimizer.step()
        schedule.after_step()
    schedule.after_epoch(0.5)
    assert math.isfinite(optimizer.param_groups[0]["lr"])


# --- Trial options no other test runs -----------------------------------------------------------------------

@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_device_has_it(synthetic_name, data, monkeypatch, native):
    """"auto" resolves per machine, and the trial stores what it resolved to (the report's mix check reads it)."""
    from mnistbench.core import trial as trial_module

    monkeypatch.setattr(trial_module, "resolve_precision",
                        lambda asked, device: ("bf16" if native else "fp32") if asked == "auto" else asked)
    seen = []
    real_autocast = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: seen.append(k.get("dtype")) or real_autocast(*a, **k))
    result = run_trial(spec(synthetic_name, steps=4, eval_every=2, precision="auto"), data)
    assert result.environment["precision"] == ("bf16" if native else "fp32")
    assert (torch.bfloat16 in seen) == native


@pytest.mark.parametrize("machine, flags, native", [
    ("x86_64", {"_is_avx512_bf16_supported": True}, True),   # Cooper Lake, Zen 4
    ("x86_64", {"_is_amx_tile_supported": True}, True),      # Sapphire Rapids
    ("x86_64", {}, False),                                   # AVX2, or AVX-512 without BF16 (Skylake-Ice Lake)
])
def test_native_bf16_on_a_cpu_is_avx512_bf16_or_amx_not_any_avx512(monkeypatch, machine, flags, native):
    from mnistbench.core import hardware

    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda value=flags.get(check, False): value, raising=False)
    # oneDNN's own check says yes on any AVX-512 CPU: it must not decide on x86
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert hardware.native_bf16(torch.device("cpu")) is native
    assert hardware.resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert hardware.resolve_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("capability, native", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_native_bf16_on_a_gpu_needs_ampere_or_later(monkeypatch, capability, native):
    """A V100 (7.0) or T4 (7.5) runs bf16 by emulation, though torch.cuda.is_bf16_supported() says yes."""
    from mnistbench.core import hardware

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hardware.native_bf16(torch.device("cuda")) is native


def test_bf16_trial_trains_and_evaluates(synthetic_name, data):
    result = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, steps=10, eval_every=5,
                            precision="bf16", target=0.3), data)
    assert result.status == "reached" and result.final_accuracy >= 0.3
    assert all(math.isfinite(p.train_loss) for p in result.curve)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("training", [True, False])
def test_images_stored_in_bf16_give_every_model_what_autocast_would(name, training):
    """A bf16 trial keeps its images in bf16 (`input_dtype`): every model's first layer, under autocast, must
    compute from them exactly what it computes from the fp32 images (it rounds them the same way itself)."""
    torch.manual_seed(0)
    model = build_model(name).train(training)
    images = torch.randn(64, 1, 28, 28)
    entry = MODELS.get(name)
    if entry.fit is not None:
        entry.fit(model, images)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)  # dropout's masks alike
        from_fp32 = model(images)
        torch.manual_seed(1)
        from_bf16 = model(images.to(torch.bfloat16))
    assert torch.equal(from_fp32, from_bf16)


def test_a_bf16_trial_keeps_its_images_in_bf16_and_fits_on_the_fp32_ones(synthetic_name, data, monkeypatch):
    from mnistbench.core import trial as trial_module
    from mnistbench.core.models import ModelEntry, compact_cnn

    fitted, trained = [], []
    monkeypatch.setitem(MODELS.entries, "fitted", ModelEntry(compact_cnn, "a model with a fit", "compact",
                                                              fit=lambda model, images: fitted.append(images.dtype)))
    step = trial_module.training_step
    monkeypatch.setattr(trial_module, "training_step",
                        lambda forward, x, *rest: trained.append(x.dtype) or step(forward, x, *rest))
    run_trial(spec(synthetic_name, model="fitted", steps=2, eval_every=0, precision="bf16"), data)
    run_trial(spec(synthetic_name, model="fitted", steps=2, eval_every=0, precision="fp32"), data)
    assert fitted == [torch.float32, torch.float32]
    assert set(trained[:3]) == {torch.bfloat16} and set(trained[3:]) == {torch.float32}  # warm-up + 2 steps each


def test_channels_last_trial_matches_the_default_layout(synthetic_name, data):
    plain = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, steps=10, eval_every=5), data)
    last = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, steps=10, eval_every=5,
                          channels_last=True), data)
    conv = next(m for m in last.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # Same numbers up to the rounding of a different reduction order.
    assert [p.train_loss for p in last.curve] == pytest.approx([p.train_loss for p in plain.curve], rel=1e-3)


def test_label_smoothing_changes_the_loss(synthetic_name, data):
    plain = run_trial(spec(synthetic_name, steps=5, eval_every=5), data)
    smooth = run_trial(spec(synthetic_name, steps=5, eval_every=5, label_smoothing=0.2), data)
    # Same seed, same first weights: the smoothed loss of a near-uniform model differs from plain cross-entropy.
    assert smooth.curve[0].train_loss != pytest.approx(plain.curve[0].train_loss, rel=1e-3)
    assert smooth.curve[0].eval_loss != smooth.curve[0].train_loss  # evaluation keeps plain cross-entropy


def test_compiled_trial_reports_its_warm_up_off_the_clock(synthetic_name, data, monkeypatch):
    # The project's compile path (warm-up per batch shape before the clock, weights restored) runs in full;
    # only the code generator is the eager one, since inductor's C++ build takes minutes on a busy 2-core CPU.
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="eager", **kw))
    torch._dynamo.reset()
    plain = run_trial(spec(synthetic_name, model="speedrun", optimizer="adam", lr=3e-3, steps=4, eval_every=2), data)
    result = run_trial(spec(synthetic_name, model="speedrun", optimizer="adam", lr=3e-3, steps=4, eval_every=2,
                            compile=True), data)
    assert result.compile_seconds > 0 and plain.compile_seconds == 0
    # The warm-up's forward and backward left no trace: training starts from the same weights.
    assert [p.train_loss for p in result.curve] == pytest.approx([p.train_loss for p in plain.curve], rel=1e-4)


# --- Schedules through a trial ------------------------------------------------------------------------------

def test_onecycle_and_warm_up_schedules_rise_then_fall(synthetic_name, data):
    for name in ("onecycle", "warmup-linear", "warmup-cosine"):
        args = {"warmup_fraction": 0.3} if name.startswith("warmup") else {"pct_start": 0.3}
        result = run_trial(spec(synthetic_name, lr=0.05, steps=40, eval_every=4, schedule=name,
                                schedule_args=args, target=0.999), data)
        lrs = [p.lr for p in result.curve]
        peak = lrs.index(max(lrs))
        assert 0 < peak < len(lrs) - 1, (name, lrs)
        assert lrs[0] < max(lrs) and lrs[-1] < max(lrs), (name, lrs)
        assert max(lrs) <= 0.05 + 1e-12, (name, lrs)


def test_plateau_steps_on_the_validation_accuracy(synthetic_name):
    data = load(synthetic_name, val_size=100)
    # lr 1e-7 cannot improve the validation accuracy: with patience 0 the rate halves at every epoch end after
    # the first (which sets the best so far). Each point shows the rate its interval ran at.
    result = run_trial(spec(synthetic_name, lr=1e-7, epochs=4, eval_every=0, eval_on="val", val_size=100,
                            schedule="plateau", schedule_args={"patience": 0, "factor": 0.5}), data)
    assert [p.lr for p in result.curve] == pytest.approx([1e-7, 1e-7, 5e-8, 2.5e-8], rel=1e-9, abs=0)


# --- Evaluation on a validation split -----------------------------------------------------------------------

def test_evaluation_on_a_validation_split_and_final_accuracy_on_test(synthetic_name):
    data = load(synthetic_name, val_size=100)
    assert len(data.val) == 100 and len(data.train) == 500
    result = run_trial(spec(synthetic_name, optimizer="adam", lr=3e-3, steps=12, eval_every=6, eval_on="val",
                            val_size=100, target=0.999), data)
    nocast = torch.autocast("cpu", enabled=False)
    val_accuracy, _ = evaluate(result.model, data.val, 100, nocast)
    test_accuracy, _ = evaluate(result.model, data.test, 100, nocast)
    assert result.curve[-1].eval_accuracy == val_accuracy  # the curve is on the validation split
    assert result.final_accuracy == test_accuracy  # the final accuracy is on test


# --- [[inference]] from the store to the report -------------------------------------------------------------

INFERENCE = '\n[[inference]]\nconfig = "sgd"\nbatch_size = 50\nrepeats = 2\nwarmup = 1\n'


def test_inference_rows_are_stored_and_reported(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=2, seeds=2, steps=10, extra=INFERENCE)
    results = tmp_path / "r"
    api.run(str(path), results_dir=results)
    loaded = api.load_results("tiny", results)
    (row,) = loaded.throughput  # one configuration, one batch size, averaged over its 2 trained models
    assert (row.label, row.batch_size, row.seeds) == ("sgd", 50, 2) and row.images_per_second > 0
    md = api.write_report("tiny", results, tmp_path / "report").markdown.read_text()
    assert "## Inference" in md and "| sgd | 50 | 2 |" in md
    # Timed with the threads the trial trained with (the file fixes 1), and the count is stored with it.
    trained = {t.environment["torch_threads"] for t in loaded.trials}
    assert trained == {1} and {inf.threads for _, inf in loaded.inference} == {1}


# --- The two-phase select flow ------------------------------------------------------------------------------

SWEEP = """name = "sweep"
seeds = 2

[defaults]
dataset = "{dataset}"
model = "compact"
optimizer = "adam"
batch_size = 32
steps = 12
eval_every = 6
eval_batch_size = 100
threads = 1
val_size = 100
eval_on = "val"
target = 0.999

[[grid]]
label = "adam, lr {{lr}}"
vary = {{ lr = [1e-7, 0.003] }}

[select]
group_by = ["optimizer"]
label = "best lr for {{group}}"
"""


def test_select_picks_on_validation_then_reruns_the_winner_with_held_out_seeds_on_test(synthetic_name, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(dataset=synthetic_name))
    results = tmp_path / "r"
    summary = api.run(str(path), results_dir=results).run_summary
    rows = stored(results)
    # Phase one: each lr once (seed 0, validation); phase two: the winner (lr 0.003 learns, 1e-7 cannot) with
    # held-out seeds 1 and 2 on the test set: the winning trial itself is never among the reported seeds.
    assert summary.ran == 4 and len(rows) == 4
    assert sorted((r[2], r[3]) for r in rows) == [("adam, lr 0.003", 0), ("adam, lr 1e-07", 0),
                                                  ("best lr for adam", 1), ("best lr for adam", 2)]
    res = api.load_results("sweep", results)
    reported = [t for s in res.reported for t in s.results]
    assert sorted(t.spec.seed for t in reported) == [1, 2]
    assert all(t.spec.lr == 0.003 and t.spec.eval_on == "test" for t in reported)
    assert not res.partial


def test_select_that_would_choose_on_the_test_set_is_refused_before_anything_runs(synthetic_name, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(dataset=synthetic_name).replace('eval_on = "val"', 'eval_on = "test"'))
    proc = cli("run", path, "--results", tmp_path / "r")
    assert_one_line_error(proc, 'eval_on = "test" would make it on the test set')
    assert not (tmp_path / "r").exists()

def test_reruns_of_the_old_select_are_set_apart_with_a_note(synthetic_name, tmp_path):
    """A store whose [select] reruns were chosen the old way (validation split, seeds from 0): read with a note,
    never mixed with reruns on held-out seeds."""
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(dataset=synthetic_name))
    results = tmp_path / "r"
    api.run(str(path), results_dir=results)
    # What the old flow stored: the winner rerun with seed 1 on the validation split.
    res = api.load_results("sweep", results)
    winner = next(t for s in res.reported for t in s.results if t.spec.seed == 1)
    old = winner.spec.model_copy(update={"eval_on": "val"})
    from mnistbench.run.store import ResultStore

    store = ResultStore(results)
    old_result = type(winner).from_dict({**winner.to_dict(), "spec": old.model_dump(mode="json")})
    store.add_trial("sweep", "best lr for adam", old_result)
    store.close()
    res = api.load_results("sweep", results)
    assert sorted(t.spec.seed for s in res.reported for t in s.results) == [1, 2]  # the new reruns only
    md = api.write_report("sweep", results, tmp_path / "report").markdown.read_text()
    assert "earlier mnistbench, whose `[select]` chose and reported on the validation split" in md
