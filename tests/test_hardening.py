"""Hardening: fuzzed experiment files, kills at random moments, two runs on one folder, Ctrl-C, a store
that cannot be written, diverging trials, and reports of missing or partial results."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import re
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mnistbench import api, make_spec
from mnistbench.errors import BadInput, ConfigError, MnistbenchError, StoreError
from mnistbench.run.experiments import Experiment, parse_experiment
from mnistbench.run.store import ResultStore

from .conftest import write_dataset
from .test_experiments import (assert_one_line_error, cli, expected_ids, integrity, start_cli, stored,
                               wait_for_trials, write_experiment)

# 9. The experiment-file loader never fails with anything but a ConfigError.

KEYS = ["name", "description", "seeds", "defaults", "config", "grid", "inference", "select", "label", "group",
        "fields", "vary", "fixed", "model", "optimizer", "lr", "batch_size", "steps", "epochs", "schedule",
        "optimizer_args", "schedule_args", "momentum", "betas", "target", "eval_on", "val_size", "seed", "config",
        "group_by", "repeats", "source", "dataset", "precision", "threads", "bogus", ""]
WORDS = ["compact", "seed-simple", "sgd", "adam", "step", "cosine", "mnist", "idx:/nowhere", "val", "test", "fp32",
         "bf16", "{lr}", "{model}", "{lr.x}", "{0}", "{lr[0]}", "{lr:d}", "{", "}", "a", "a", "", "ü\x00"]
scalars = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.booleans(),
                    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1), st.floats(),
                    st.sampled_from([0, 1, 2, -1, 0.0, 1e6, 0.001, 32]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)),
    max_leaves=25)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


def toml_value(v) -> str:
    """A tiny TOML writer (inline tables and arrays), enough to turn any generated value into a file."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (\uXXXX escapes included)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def assert_loads_or_config_error(text: str) -> None:
    try:
        experiment = parse_experiment(text, "fuzz.toml")
    except ConfigError as exc:
        assert isinstance(exc, MnistbenchError) and exc.exit_code == 2
        assert "\n" not in exc.one_line() and exc.message
    else:
        assert isinstance(experiment, Experiment)
        experiment.trials()  # a loaded experiment can always be planned


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
@example('name = "x"\n' + "a = " + "[" * 600 + "]" * 600)  # nested deeper than tomllib can recurse
@example('name = "x"\n[[grid]]\nlabel = "{lr.x}"\nvary = { lr = [0.1] }\n')  # attribute of a float
@example('name = "x"\n[[grid]]\nlabel = "{lr[0]}"\nvary = { lr = [0.1] }\n')  # index of a float
@example('name = "x"\n[[config]]\nlabel = "a"\nfields = { model = "nope" }\n')
def test_any_text_loads_or_is_a_config_error(text):
    assert_loads_or_config_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=5), max_size=3),
       st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=5), max_size=2))
@example({"name": "x", "defaults": {"model": "compact", "steps": 10}}, [{"label": "a", "fields": {"lr": 0.1}}], [])
def test_any_toml_document_loads_or_is_a_config_error(document, configs, grids):
    document = {**document}
    if configs:
        document["config"] = configs
    if grids:
        document["grid"] = grids
    text = "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in document.items())
    assert_loads_or_config_error(text)


# 10. Kill -9 at random moments, several times: every trial stored exactly once.

def claims(results: Path) -> list[tuple]:
    conn = sqlite3.connect(results / "results.sqlite", timeout=30)
    try:
        return conn.execute("SELECT spec_id, owner FROM claims").fetchall()
    finally:
        conn.close()


def owned_by(owner: str, proc) -> bool:
    """Claims are owned by "host:pid:start-time"."""
    return owner.split(":")[1] == str(proc.pid)


def wait_for_claims(results: Path, proc, timeout: float = 60) -> None:
    """Until the run has planned and claimed its trials (training is about to start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(owned_by(owner, proc) for _, owner in claims(results)):  # not a killed run's
                return
        except sqlite3.OperationalError:
            pass  # the store is being created
        time.sleep(0.02)


def test_random_kills_then_resume_store_every_trial_exactly_once(synthetic_name, tmp_path):
    seed = int(os.environ.get("MNISTBENCH_TEST_SEED", time.time_ns() % 10_000))
    print(f"kill moments drawn with MNISTBENCH_TEST_SEED={seed}")  # shown on failure: rerun with it set
    rng = random.Random(seed)
    path = write_experiment(tmp_path, synthetic_name, steps=30)
    results = tmp_path / "r"
    kills = 0
    for _ in range(3):
        proc = start_cli("run", path, "--results", results)
        wait_for_claims(results, proc)
        time.sleep(rng.uniform(0.0, 1.5))  # training all 6 takes about 3 s
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += proc.returncode == -signal.SIGKILL
        if len(stored(results)) == 6:
            break
    assert kills >= 1, "every run ended before it could be killed"
    final = api.run(str(path), results_dir=results)
    assert final.run_summary.ran == 6 - final.run_summary.skipped and not final.run_summary.held_elsewhere
    rows = stored(results)
    assert len(rows) == 6 and {r[1] for r in rows} == expected_ids(path)
    assert integrity(results) == "ok" and claims(results) == []
    conn = sqlite3.connect(results / "results.sqlite")
    orphans = conn.execute("SELECT count(*) FROM curves WHERE spec_id NOT IN (SELECT spec_id FROM trials)").fetchone()
    conn.close()
    assert orphans == (0,)  # a killed write left no half-written trial behind


# 11. Two runs on one folder at once: no trial runs twice, nothing is corrupted; stale claims are recovered.

LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+) seed (\d+): (\w+)", re.M)


def _open_store(folder: Path) -> bool:
    try:
        ResultStore(folder).close()
        return True
    except StoreError:
        return False


def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    # Switching a new file to WAL fails at once with 'database is locked' while another process does the same;
    # before the store retried, 2 to 10 of these 320 opens failed.
    folders = [tmp_path / str(i) for i in range(40)]  # each opened by 8 processes at once (chunksize 1)
    with multiprocessing.get_context("fork").Pool(8) as pool:
        opened = pool.map(_open_store, [f for f in folders for _ in range(8)], chunksize=1)
    assert all(opened), f"{opened.count(False)} of {len(opened)} opens failed"


def test_two_runs_at_once_never_run_a_trial_twice(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, steps=30)  # long enough for both to get trials
    results = tmp_path / "r"
    procs = [start_cli("run", path, "--results", results) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    ran = [{(m[2], int(m[3])) for m in LINE.findall(out)} for out, _ in outputs]
    assert ran[0] and ran[1], f"one process ran every trial, so nothing was shared: {ran}"
    assert not ran[0] & ran[1], "a trial ran in both processes"
    assert len(ran[0] | ran[1]) == 6
    rows = stored(results)
    assert {(r[2], r[3]) for r in rows} == ran[0] | ran[1] and len(rows) == 6
    assert integrity(results) == "ok" and claims(results) == []
    # Each process stored the same thread count a solo run would: the concurrency itself is what tells them
    # apart, stored with every trial, with the load average at its start and end.
    trials = api.load_results(str(path), results).trials
    assert any(t.environment["shared_with"] >= 1 for t in trials)
    assert all(t.environment["load_start"] is not None and t.environment["load_end"] is not None for t in trials)


def test_times_shared_with_other_trials_are_not_compared_with_solo_ones(tmp_path):
    from mnistbench.report.comparison import compare

    from .test_report import ADAM, SGD, group

    alone, shared = group([4.0, 4.2, 3.9], [0.99] * 3, **ADAM), group([9.8, 9.5, 10.1], [0.99] * 3, **SGD)
    for r in alone:
        r.environment["shared_with"] = 0
    for r in shared:
        r.environment["shared_with"] = 1
    c = compare(alone, shared, "time_to_target", "A", "B")
    assert c.p is None and "mixed environments" in c.sentence and "sharing" in c.sentence


def test_workers_times_fixed_threads_beyond_the_cores_is_refused(synthetic_name, tmp_path):
    from mnistbench.core.hardware import usable_cores

    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=2)
    cores = usable_cores()
    proc = cli("run", path, "--workers", "2", "--set", f"threads={cores}", "--results", tmp_path / "r")
    assert_one_line_error(proc, f"--workers 2 x threads {cores}", f"on {cores} usable cores")
    assert not (tmp_path / "r").exists()


def test_claims_of_a_killed_run_are_recovered(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, steps=30)
    results = tmp_path / "r"
    proc = start_cli("run", path, "--results", results)
    try:
        wait_for_trials(results, 1, proc)
        wait_for_claims(results, proc)  # trials are claimed one at a time: killed while training the next
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    kept = stored(results)
    left = claims(results)
    assert left and all(owned_by(owner, proc) for _, owner in left)  # the dead run still holds them
    again = api.run(str(path), results_dir=results)
    assert again.run_summary.held_elsewhere == 0 and again.run_summary.ran == 6 - len(kept)
    assert len(stored(results)) == 6 and claims(results) == [] and set(kept) <= set(stored(results))


# 12. Ctrl-C: exit 130, a message on how to resume, finished trials kept.

def test_ctrl_c_keeps_finished_trials_and_says_how_to_resume(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, steps=30)
    results = tmp_path / "r"
    # As a terminal's Ctrl-C: SIGINT must not be inherited as ignored (as in a background job).
    proc = start_cli("run", path, "--results", results,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_trials(results, 1, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    kept = stored(results)
    assert 1 <= len(kept) < 6 and claims(results) == []  # claims released at once for others
    again = api.run(str(path), results_dir=results)
    assert again.run_summary.skipped == len(kept) and again.run_summary.ran == 6 - len(kept)
    assert len(stored(results)) == 6 and set(kept) <= set(stored(results))


# 13. A store that cannot be written, a full disk: one line, nothing stored is lost.

def test_unwritable_results_folder_is_one_line_and_loses_nothing(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=1, seeds=1, steps=10)
    results = tmp_path / "r"
    api.run(str(path), results_dir=results)
    before = stored(results)

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("precious")
    with pytest.raises(StoreError, match="cannot create the results folder"):
        api.run(str(path), seeds=2, results_dir=a_file)
    assert a_file.read_text() == "precious"

    if os.geteuid() == 0:  # root writes through chmod: forbid the files SQLite must create instead
        blocker = results / "results.sqlite-wal"
        blocker.mkdir()
        undo = blocker.rmdir
    else:
        results.chmod(0o555)
        undo = lambda: results.chmod(0o755)  # noqa: E731
    try:
        proc = cli("run", path, "--results", results, "--seeds", 2)
    finally:
        undo()
    assert_one_line_error(proc, "cannot open the results store", str(results), code=1)
    assert stored(results) == before and integrity(results) == "ok"


FULL_DISK = """
import sqlite3, sys
from mnistbench.cli.app import main
from mnistbench.run.store import ResultStore

real_write, inserts = ResultStore._write, []

def full_after_one_trial(self, statements):
    if any("INTO trials" in sql for sql, _ in statements):
        inserts.append(1)
        if len(inserts) > 1:
            with self._transaction():  # fails inside a real transaction, as SQLite does
                raise sqlite3.OperationalError("database or disk is full")
    return real_write(self, statements)

ResultStore._write = full_after_one_trial
sys.argv = ["mnistbench", *sys.argv[1:]]
main()
"""


def test_full_disk_is_one_line_and_loses_nothing(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=2, seeds=2, steps=10)
    results = tmp_path / "r"
    import subprocess

    proc = subprocess.run([sys.executable, "-c", FULL_DISK, "run", str(path), "--results", str(results)],
                          capture_output=True, text=True, timeout=240)
    assert_one_line_error(proc, "cannot write to", "database or disk is full", "stored results are intact", code=1)
    rows = stored(results)
    assert len(rows) == 1 and integrity(results) == "ok" and claims(results) == []

    done = api.run(str(path), results_dir=results)  # space freed: the run resumes where it stopped
    assert done.run_summary.skipped == 1 and len(stored(results)) == 4 and set(rows) <= set(stored(results))


def test_full_disk_through_the_api_raises_a_store_error(synthetic_name, tmp_path, monkeypatch):
    from mnistbench.run.store import ResultStore

    path = write_experiment(tmp_path, synthetic_name, configs=1, seeds=2, steps=10)
    results = tmp_path / "r"
    api.run(str(path), seeds=1, results_dir=results)
    before = stored(results)
    real_write = ResultStore._write

    def full(self, statements):
        if any("INTO trials" in sql for sql, _ in statements):
            with self._transaction():
                raise sqlite3.OperationalError("database or disk is full")
        return real_write(self, statements)

    monkeypatch.setattr(ResultStore, "_write", full)
    with pytest.raises(StoreError) as caught:
        api.run(str(path), results_dir=results)
    assert "disk is full" in caught.value.one_line() and "\n" not in caught.value.one_line()
    assert stored(results) == before and integrity(results) == "ok"


# 14. A diverging trial is stored as such and the experiment goes on.

def test_diverging_trial_is_stored_and_the_experiment_goes_on(synthetic_name, tmp_path):
    path = tmp_path / "diverge.toml"
    path.write_text(f"""name = "diverge"
[defaults]
dataset = "{synthetic_name}"
batch_size = 32
steps = 10
eval_every = 5
eval_batch_size = 100
threads = 1
target = 0.5

[[config]]
label = "blows up"
fields = {{ model = "seed-simple", optimizer = "sgd", lr = 1e6 }}

[[config]]
label = "fine"
fields = {{ model = "compact", optimizer = "adam", lr = 0.003 }}
""")
    res = api.run(str(path), results_dir=tmp_path / "r")
    statuses = {r[2]: r[4] for r in stored(tmp_path / "r")}
    assert statuses["blows up"] == "diverged" and statuses["fine"] in ("reached", "budget")
    assert res.run_summary.ran == 2 and not res.run_summary.failed
    shown = cli("results", "diverge", "--results", tmp_path / "r")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"blows up.*diverged 1", shown.stdout)
    again = api.run(str(path), results_dir=tmp_path / "r")  # a diverged trial is a result, not retried
    assert again.run_summary.ran == 0


# 15. Reports: no results is one line; partial results are marked as such.

def test_report_without_results_is_one_line(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=1, seeds=1, steps=10)
    api.run(str(path), results_dir=tmp_path / "r")
    assert_one_line_error(cli("report", "nothing-here", "--results", tmp_path / "r"),
                          "no results for experiment 'nothing-here'", "mnistbench run nothing-here")
    assert not (tmp_path / "r" / "nothing-here-report").exists()


def test_report_of_an_unfinished_experiment_is_marked_partial(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=2, seeds=2, steps=10)
    results = tmp_path / "r"

    def interrupt_after_the_first(event):
        if event.output is not None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.run(str(path), results_dir=results, on_event=interrupt_after_the_first)
    assert len(stored(results)) == 1 and api.load_results("tiny", results).partial
    html = api.write_report("tiny", results, tmp_path / "report").html.read_text()
    assert "Partial results: the experiment has not finished" in html

    api.run(str(path), results_dir=results)
    assert not api.load_results("tiny", results).partial
    html = api.write_report("tiny", results, tmp_path / "report2").html.read_text()
    assert "Partial results" not in html


# 14. A worker that dies or is lost fails only its own trial; a failed inference measurement keeps the training.

def _jobs(dataset: str, seeds: range, inference=None):
    from mnistbench.core.spec import make_spec
    from mnistbench.run.jobs import Job

    return [Job(f"seed {s}", make_spec(dataset=dataset, model="compact", steps=3, seed=s), inference) for s in seeds]


def test_a_worker_killed_or_segfaulting_fails_only_its_trial(synthetic_name):
    from mnistbench.run.executors import LocalPool

    from .workers_that_die import die_by_seed

    outputs = {o.job.spec.seed: o.result for o in LocalPool(2, die_by_seed).run(_jobs(synthetic_name, range(4)))}
    assert sorted(outputs) == [0, 1, 2, 3]
    assert outputs[0].status != "failed" and outputs[3].status != "failed"  # the run went on after the deaths
    assert outputs[1].status == "failed" and "killed by SIGKILL" in outputs[1].error and "OOM" in outputs[1].error
    assert outputs[2].status == "failed" and "SIGSEGV" in outputs[2].error


def test_a_lost_ray_worker_fails_only_its_trial(synthetic_name, monkeypatch):
    import types

    from mnistbench.run.executors import RayCluster
    from mnistbench.run.jobs import execute

    class WorkerCrashedError(Exception):
        pass

    class Ref:
        def __init__(self, job):
            self.job = job

    def get(ref):
        if ref.job.spec.seed == 1:
            raise WorkerCrashedError("The worker died unexpectedly while executing this task.\nmore detail")
        return execute(ref.job)

    remote = lambda fn: types.SimpleNamespace(options=lambda **_: types.SimpleNamespace(remote=Ref))  # noqa: E731
    fake = types.SimpleNamespace(is_initialized=lambda: True, remote=remote, get=get,
                                 wait=lambda refs, num_returns: (refs[:1], refs[1:]),
                                 exceptions=types.SimpleNamespace(RayError=Exception))
    monkeypatch.setitem(sys.modules, "ray", fake)
    outputs = {o.job.spec.seed: o.result for o in RayCluster().run(_jobs(synthetic_name, range(3)))}
    assert [outputs[s].status == "failed" for s in range(3)] == [False, True, False]
    assert "Ray worker running this trial was lost: WorkerCrashedError: The worker died unexpectedly" in \
        outputs[1].error


def test_an_inference_error_keeps_the_trained_result(synthetic_name, tmp_path, monkeypatch):
    import mnistbench.run.jobs as jobs
    from mnistbench.run.experiments import Inference

    def broken(*_a, **_k):
        raise RuntimeError("out of memory while measuring")

    monkeypatch.setattr(jobs, "measure_inference", broken)
    [output] = [jobs.execute(job) for job in _jobs(synthetic_name, range(1), Inference(config="seed 0"))]
    assert output.result.status in ("reached", "budget") and output.result.final_accuracy is not None
    assert output.inference is None and "inference measurement failed" in output.result.error
    assert "out of memory while measuring" in output.result.error


def test_mps_sums_in_float32_elsewhere_in_float64():
    import torch

    from mnistbench.core.trial import accumulator_dtype

    assert accumulator_dtype(torch.device("mps")) == torch.float32  # MPS has no float64
    assert accumulator_dtype(torch.device("cpu")) == torch.float64


# 15. The command line itself, fuzzed: any argument vector built from the real command and option names with
# random values ends in exit 0, 1, 2 or 130, never a traceback (nor "internal error"), with `click` unimportable.

def _command_options() -> dict[tuple[str, ...], list[str]]:
    import typer.main

    from mnistbench.cli.app import app, main

    with pytest.raises(SystemExit):
        main(["--version"])  # registers every command
    commands: dict[tuple[str, ...], list[str]] = {}

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        opts = [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
        commands[path] = [o for o in opts if o != "--debug"]  # --debug asks for the traceback

    walk(typer.main.get_command(app), ())
    return commands


COMMANDS = _command_options()
VALUES = st.one_of(st.sampled_from(["0", "1", "-1", "2", "inf", "-inf", "nan", "1e308", "0.5", "abc", "", "x=1",
                                    "momentum=inf", "mnist", "nope", "idx:/nowhere", "compact", "seed-simple",
                                    "adam", "smoke", "step", "val", "bf16", "cuda", "csv", "json", "/no/such/x.json",
                                    "models", "--", "-"]),
                   st.text(alphabet="abc-=.:/0123456789", max_size=6))


@st.composite
def argument_vectors(draw):
    path = draw(st.sampled_from(sorted(COMMANDS)))
    args = list(path)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            args.append(draw(VALUES))  # a stray or positional value
        elif COMMANDS[path]:
            args.append(draw(st.sampled_from(COMMANDS[path])))
            if kind > 1:
                args.append(draw(VALUES))
    if path == ("run",) and "--dry-run" not in args:
        args.append("--dry-run")  # never a real run
    return args


@pytest.fixture
def quick_cli(monkeypatch):
    """No training, no estimate steps, no downloads: what is under test is argument handling."""
    import mnistbench.core.trial as trial
    import mnistbench.data.datasets as datasets
    import mnistbench.run.estimate as estimate
    from mnistbench.data.sources import Source, Unavailable

    def no_trial(*_a, **_k):
        raise KeyboardInterrupt  # stands for the user stopping the run: exit 130

    def unavailable():
        raise Unavailable("offline in the tests")

    # Small synthetic images cached under the name "mnist", stamped as verified: commands get past loading.
    folder = write_dataset(datasets.cache_root() / "mnist", n_train=100, n_test=50)
    (folder / "VERIFIED.json").write_text(json.dumps({p.name: {"size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
                                                      for p in folder.iterdir()}))
    monkeypatch.setattr(trial, "run_trial", no_trial)
    monkeypatch.setattr(estimate, "_step_seconds", lambda *a: 0.01)
    for name in ("mirror_source", "pip_sdist_source", "debian_source"):
        monkeypatch.setattr(datasets, name, lambda *a: Source("offline", unavailable))
    monkeypatch.delenv("MNISTBENCH_DEBUG", raising=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(argument_vectors())
@example(["train", "--epochs", "inf"])
@example(["train", "--batch-size", "abc"])
@example(["run", "smoke", "--seeds", "-1", "--dry-run"])
@example(["bogus"])
@example([])
def test_any_argument_vector_exits_cleanly(quick_cli, capsys, monkeypatch, tmp_path, args):
    from .test_cli import run_main

    monkeypatch.chdir(tmp_path)  # whatever a command writes lands here
    code, out, err = run_main(args, capsys, monkeypatch)
    assert code in (0, 1, 2, 130), (args, code, err)
    assert "Traceback" not in out + err and "internal error" not in err, (args, err)


def test_a_store_from_a_newer_mnistbench_is_refused_untouched(synthetic_name, tmp_path):
    """A higher schema version means a layout this code does not know: `results`, `report` and `run` refuse it in
    one line, and the file's bytes stay what they were (no migration down, no WAL switch, no new rows)."""
    import hashlib

    from mnistbench.run.store import SCHEMA_VERSION

    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=1)
    results = tmp_path / "r"
    assert cli("run", path, "--results", results).returncode == 0
    db = results / "results.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode=DELETE")  # one file to hash, as a copied store would come
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for args in (["results", "tiny"], ["report", "tiny"], ["run", path]):
        proc = cli(*args, "--results", results)
        assert_one_line_error(proc, "written by a newer mnistbench", f"store schema {SCHEMA_VERSION + 1}")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in results.iterdir()) == ["results.sqlite"]


# --- Checkpoints: whatever a file holds, it loads and builds, or it is one line ----------------------------------

def _checkpoint_bytes() -> bytes:
    from mnistbench.core.checkpoint import to_bytes
    from mnistbench.core.models import build_model

    torch.manual_seed(0)
    return to_bytes(build_model("compact"), make_spec(model="compact"), 0.13, 0.31)


def _saved(payload) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


VALID = None


def _hostile_checkpoints():
    from mnistbench.core.checkpoint import FORMAT

    global VALID
    VALID = VALID or _checkpoint_bytes()
    junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                     st.lists(st.integers(), max_size=3))
    spec_text = st.one_of(st.text(max_size=60), st.just('{"model": "compact"}'), st.just('{"model": "nope"}'),
                          st.just('{"lr": -1}'), st.just("[1, 2]"), st.just("null"))
    fields = st.fixed_dictionaries({"format": st.just(FORMAT)}, optional={
        "spec": st.one_of(spec_text, junk), "mean": junk, "std": junk,
        "state_dict": st.one_of(junk, st.just({"0.weight": torch.zeros(2)}), st.just({}))})
    return st.one_of(
        st.binary(max_size=300),
        st.integers(0, len(VALID) - 1).map(lambda k: VALID[:k]),  # truncated
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)).map(  # one byte changed
            lambda t: VALID[:t[0]] + bytes([t[1]]) + VALID[t[0] + 1:]),
        fields.map(_saved),
        st.dictionaries(st.text(max_size=10), junk, max_size=3).map(_saved))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_checkpoint_file_loads_and_builds_or_is_bad_input(tmp_path_factory, data):
    from mnistbench.core.checkpoint import load_file

    blob = data.draw(_hostile_checkpoints())
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    path.write_bytes(blob)
    try:
        load_file(path, model=data.draw(st.sampled_from([None, "compact"]))).build()
    except BadInput:
        pass
