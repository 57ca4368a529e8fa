"""Experiments end to end: TOML files and their errors, dry runs, resume, kill -9, executors, exports, API."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistbench import api
from mnistbench.errors import ConfigError
from mnistbench.run.experiments import load_experiment

TINY = """name = "{name}"
seeds = {seeds}

[defaults]
dataset = "{dataset}"
model = "compact"
batch_size = 32
steps = {steps}
eval_every = 10
eval_batch_size = 100
threads = 1
target = 0.5
"""
RECIPES = [("sgd", 'optimizer = "sgd", lr = 0.05, optimizer_args = { momentum = 0.9 }'),
           ("adam", 'optimizer = "adam", lr = 0.003'),
           ("adamw", 'optimizer = "adamw", lr = 0.003')]


def write_experiment(folder: Path, dataset: str, name: str = "tiny", seeds: int = 2, configs: int = 3,
                     steps: int = 20, extra: str = "") -> Path:
    """A small experiment file: `configs` recipes x `seeds` seeds of a compact CNN on synthetic data."""
    text = TINY.format(name=name, seeds=seeds, dataset=dataset, steps=steps)
    for label, fields in RECIPES[:configs]:
        text += f'\n[[config]]\nlabel = "{label}"\nfields = {{ {fields} }}\n'
    path = folder / f"{name}.toml"
    path.write_text(text + extra)
    return path


def cli(*args, timeout=240, **kw):
    return subprocess.run([sys.executable, "-m", "mnistbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def start_cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistbench", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def assert_one_line_error(proc, *fragments, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def stored(results: Path, experiment: str | None = None) -> list[tuple]:
    """(experiment, spec_id, label, seed, status) of every stored trial, read with plain sqlite3."""
    conn = sqlite3.connect(results / "results.sqlite", timeout=30)
    try:
        sql = "SELECT experiment, spec_id, label, seed, status FROM trials"
        rows = conn.execute(sql + (" WHERE experiment = ?" if experiment else ""),
                            (experiment,) if experiment else ()).fetchall()
    finally:
        conn.close()
    return sorted(rows)


def integrity(results: Path) -> str:
    conn = sqlite3.connect(results / "results.sqlite", timeout=30)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def count_trials(results: Path) -> int:
    """How many trials are stored, while another process may be writing (0 before the store exists)."""
    if not (results / "results.sqlite").exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{results / 'results.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM trials").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def wait_for_trials(results: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = count_trials(results)
        if have >= n:
            return have
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {n} trials were stored: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no {n} trials stored within {timeout} s")


def expected_ids(path: Path, seeds: int | None = None) -> set[str]:
    return {spec.id for _, spec in load_experiment(str(path)).trials(seeds)}


def folder_digest(folder: Path) -> dict[str, str]:
    """Every file of a folder and the sha256 of its bytes (read without sqlite, which could touch them)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A store holding the whole `tiny` experiment (3 configurations x 2 seeds), run once for the module."""
    from tests.conftest import write_dataset

    root = tmp_path_factory.mktemp("finished")
    dataset = f"idx:{write_dataset(root / 'data')}"
    path = write_experiment(root, dataset)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTBENCH_CACHE", str(root / "cache"))
        mp.setenv("MNISTBENCH_OFFLINE", "1")
        assert api.run(str(path), results_dir=root / "results").run_summary.ran == 6
    return path, root / "results", dataset


# 1. Bad experiment files: one line naming the file and the key, exit 2, nothing written.

HEADER = 'name = "bad"\n[defaults]\ndataset = "DATASET"\nmodel = "compact"\nsteps = 10\n'
BAD_FILES = {
    "malformed": ('name = "bad" [', ["not valid TOML", "line 1"]),
    "unknown top-level key": ('name = "bad"\nbogus = 1\n[[config]]\nlabel = "a"\n', ["bogus: unknown key"]),
    "unknown key in a config": (HEADER + '[[config]]\nlabel = "a"\ncolour = "red"\n', ["config.0.colour: unknown key"]),
    "unknown field in a config": (HEADER + '[[config]]\nlabel = "a"\nfields = { lrr = 0.1 }\n',
                                  ["config 'a'", "lrr: unknown key"]),
    "negative lr": (HEADER + '[[config]]\nlabel = "a"\nfields = { lr = -1 }\n', ["config 'a'", "lr:", "greater than 0"]),
    "batch 0": (HEADER + '[[config]]\nlabel = "a"\nfields = { batch_size = 0 }\n', ["config 'a'", "batch_size:"]),
    "unknown model": (HEADER.replace('"compact"', '"resnet9000"') + '[[config]]\nlabel = "a"\n',
                      ["config 'a'", "unknown model 'resnet9000'", "compact"]),
    "unknown optimizer": (HEADER + '[[config]]\nlabel = "a"\nfields = { optimizer = "lionheart" }\n',
                          ["config 'a'", "unknown optimizer 'lionheart'"]),
    "option the optimizer does not take": (
        HEADER + '[[config]]\nlabel = "a"\nfields = { optimizer = "adam", optimizer_args = { momentum = 0.9 } }\n',
        ["config 'a'", "optimizer 'adam' does not take 'momentum'"]),
    "inference of an undefined config": (HEADER + '[[config]]\nlabel = "a"\n[[inference]]\nconfig = "b"\n',
                                         ["inference", "'b'", "not defined"]),
    "duplicate labels": (HEADER + '[[config]]\nlabel = "a"\n[[config]]\nlabel = "a"\nfields = { lr = 0.1 }\n',
                         ["labels must be unique", "a"]),
    "grid label over an unknown field": (HEADER + '[[grid]]\nlabel = "{batch}"\nvary = { batch_size = [32, 64] }\n',
                                         ["grid label '{batch}'", "batch_size"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_experiment_file_is_rejected_naming_file_and_key(case, synthetic_name, tmp_path):
    text, fragments = BAD_FILES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("DATASET", synthetic_name))
    with pytest.raises(ConfigError) as caught:
        api.run(str(path), results_dir=tmp_path / "r")
    line = caught.value.one_line()
    assert caught.value.exit_code == 2 and "\n" not in line
    for fragment in [str(path), *fragments]:
        assert fragment in line, (fragment, line)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["malformed", "unknown top-level key", "negative lr", "unknown optimizer",
                                  "duplicate labels"])
def test_bad_experiment_file_is_one_cli_line_and_leaves_the_store_alone(case, finished, tmp_path):
    _, results, dataset = finished
    text, fragments = BAD_FILES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("DATASET", dataset))
    before = folder_digest(results)
    assert before and "results.sqlite" in before
    assert_one_line_error(cli("run", path, "--results", results), str(path), *fragments)
    assert folder_digest(results) == before  # the existing store is untouched, byte for byte


def test_missing_experiment_file_is_one_line_and_creates_no_results_folder(tmp_path):
    assert_one_line_error(cli("run", tmp_path / "missing.toml", "--results", tmp_path / "fresh"), "missing.toml",
                          "not found")
    assert not (tmp_path / "fresh").exists()


# 2. --dry-run lists every trial and runs nothing.

SEED_DRY_RUN = """
import sys
import mnistbench.run.estimate

# The listing is under test here; measuring steps of the seed's big models at batch 512 takes 15 s on 2 cores.
mnistbench.run.estimate.estimate_seconds = lambda specs: [60.0] * len(specs)
from mnistbench.cli.app import main

sys.argv = ["mnistbench", "run", "seed", "--dry-run", "--results", sys.argv[1]]
main()
"""


def test_dry_run_of_the_seed_experiment_lists_its_eight_configurations(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SEED_DRY_RUN, str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    labels = ["SimpleCNN + SGD", "SimpleCNN + Adam", "OptimizedCNN + Adam", "OptimizedCNN + SGD",
              "OptimizedCNN + Adam + LR Scheduler", "OptimizedCNN + Adam, batch 64", "OptimizedCNN + Adam, batch 256",
              "OptimizedCNN + Adam, batch 512"]
    assert "seed: 8 trials" in proc.stdout and "estimated total: 8.0 min" in proc.stdout
    rows = [l for l in proc.stdout.splitlines() if l.startswith("│")]
    assert len(rows) == 8
    for label in labels:
        assert any(f"│ {label} " in r for r in rows), label
    assert not (tmp_path / "r").exists()  # nothing ran, nothing was stored


def test_dry_run_lists_every_seed_and_runs_nothing(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name)
    proc = cli("run", path, "--dry-run", "--seeds", 3, "--results", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert "tiny: 9 trials" in proc.stdout and "estimated total" in proc.stdout
    rows = [l for l in proc.stdout.splitlines() if l.startswith("│")]
    assert sorted((r.split("│")[2].strip(), r.split("│")[3].strip()) for r in rows) == sorted(
        (label, str(seed)) for label, _ in RECIPES for seed in range(3))
    assert not (tmp_path / "r").exists()


# 3. Resume: stored trials are skipped; --rerun adds a new attempt of each; more seeds run only the new ones.

def test_rerun_skips_stored_trials_and_rerun_flag_adds_attempts(finished, tmp_path):
    path, results, _ = finished
    copy = tmp_path / "results"
    copy.mkdir()
    (copy / "results.sqlite").write_bytes((results / "results.sqlite").read_bytes())
    before = stored(copy)
    assert len(before) == 6

    again = api.run(str(path), results_dir=copy)
    assert (again.run_summary.ran, again.run_summary.skipped) == (0, 6)
    assert stored(copy) == before

    ran = []
    forced = api.run(str(path), results_dir=copy, rerun=True, on_event=lambda e: e.output and ran.append(e.output))
    assert (forced.run_summary.ran, forced.run_summary.skipped) == (6, 0)
    assert sorted(o.result.spec.id for o in ran) == sorted(r[1] for r in before)
    assert stored(copy) == sorted(before + before)  # every old attempt kept beside its new one
    assert len(forced.trials) == 6 and integrity(copy) == "ok"  # results count each trial once


def test_more_seeds_run_only_the_new_ones(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=2)
    results = tmp_path / "r"
    first = api.run(str(path), seeds=2, results_dir=results)
    assert first.run_summary.ran == 4 and first.run_summary.skipped == 0
    ran = []
    more = api.run(str(path), seeds=3, results_dir=results, on_event=lambda e: e.output and ran.append(e.output))
    assert more.run_summary.ran == 2 and more.run_summary.skipped == 4
    assert {o.result.spec.seed for o in ran} == {2}
    assert {r[1] for r in stored(results)} == expected_ids(path, 3) and len(stored(results)) == 6
    assert [[r.spec.seed for r in s.results] for s in more.summaries] == [[0, 1, 2]] * 2
    # The table follows the experiment's order of configurations, not the order trials finished in.
    head, *configs = path.read_text().split("\n[[config]]")
    path.write_text(head + "".join("\n[[config]]" + c for c in reversed(configs)))
    again = api.run(str(path), seeds=3, results_dir=results)
    assert again.run_summary.ran == 0
    assert [s.label for s in again.summaries] == [label for label, _ in reversed(RECIPES[:2])]


# 4. kill -9 mid-run, then resume: every trial exactly once, the file intact.

def kill_after_first_trial(path: Path, results: Path):
    """Start `mnistbench run`, SIGKILL it once a trial is stored; returns the dead process."""
    proc = start_cli("run", path, "--results", results)
    try:
        wait_for_trials(results, 1, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    return proc


def test_sigkill_then_resume_stores_every_trial_once(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, steps=30)
    results = tmp_path / "r"
    proc = kill_after_first_trial(path, results)
    assert proc.returncode == -signal.SIGKILL
    partial = len(stored(results))
    assert 1 <= partial < 6, "kill came too late to test anything"

    resumed = api.run(str(path), results_dir=results)
    assert (resumed.run_summary.skipped, resumed.run_summary.ran) == (partial, 6 - partial)
    rows = stored(results)
    assert len(rows) == 6 and {r[1] for r in rows} == expected_ids(path)
    assert integrity(results) == "ok"


# 5, 6. Executors: a local process pool and Ray store the same trials as the in-process executor.

def test_process_pool_stores_the_same_trials(finished, tmp_path):
    path, results, _ = finished
    proc = cli("run", path, "--results", tmp_path / "r", "--workers", 2)
    assert proc.returncode == 0, proc.stderr
    assert [r[1:] for r in stored(tmp_path / "r")] == [r[1:] for r in stored(results)]


def test_ray_stores_the_same_trials(finished, tmp_path):
    pytest.importorskip("ray")
    path, results, _ = finished
    # Ray's cluster start alone took 230 s on a loaded 2-core machine: the trials are not what takes time here
    proc = cli("run", path, "--results", tmp_path / "r", "--executor", "ray", "--keep-models", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "ran 6 trials" in proc.stdout
    ours = stored(tmp_path / "r")
    assert {r[1] for r in ours} == {r[1] for r in stored(results)} == expected_ids(path)
    assert [r[1:4] for r in ours] == [r[1:4] for r in stored(results)]  # same ids, labels and seeds
    # --keep-models on Ray: each task ships its model's bytes back, and the driver keeps one per trial that
    # predict can load (one Ray start serves both checks: it is the slow part).
    from .test_interop_models import model_rows

    kept = model_rows(tmp_path / "r")
    assert len(kept) == 6 and all((tmp_path / "r" / path_).is_file() for _, path_ in kept), kept
    label = kept[0][0]
    predicted = cli("predict", f"tiny:{label}:0", path.parent / "data" / "t10k-images-idx3-ubyte",
                    "--results", tmp_path / "r")
    assert predicted.returncode == 0, predicted.stderr


# 7. Exports and the unknown-experiment error.

def test_results_export_csv_and_json(finished):
    _, results, _ = finished
    as_csv = cli("results", "tiny", "--results", results, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["configuration"] for r in rows] == ["sgd", "adam", "adamw"]
    assert all(r["n"] == "2" for r in rows) and all(0 <= float(r["accuracy_mean"]) <= 1 for r in rows)

    as_json = cli("results", "tiny", "--results", results, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [r["configuration"] for r in data] == ["sgd", "adam", "adamw"] and data[0]["optimizer"] == "SGD"


def test_results_of_an_unknown_experiment_is_one_line_with_a_hint(finished):
    _, results, _ = finished
    proc = cli("results", "nope", "--results", results)
    assert_one_line_error(proc, "no results for experiment 'nope'", "Hint:", "mnistbench run nope", "tiny")


# 8. The Python API.

def test_api_run_returns_results_with_rows(synthetic_name, tmp_path):
    path = write_experiment(tmp_path, synthetic_name, configs=2, seeds=1, steps=10)
    res = api.run(str(path), results_dir=tmp_path / "r")
    assert res.experiment == "tiny" and not res.partial
    assert [r.configuration for r in res.rows] == ["sgd", "adam"] and all(r.n == 1 for r in res.rows)
    assert len(res.trials) == 2 and res.run_summary.ran == 2
    again = api.load_results("tiny", tmp_path / "r")
    assert [r.configuration for r in again.rows] == ["sgd", "adam"]


def test_set_overrides_every_configuration_and_is_stored_with_the_definition(synthetic_name, tmp_path):
    """`run --set FIELD=VALUE` (the main job's fast path: `--set precision=auto`) applies over every
    configuration's own fields, is validated like the file, and the stored definition says what ran."""
    path = write_experiment(tmp_path, synthetic_name, name="over", seeds=1, configs=2, steps=20)
    proc = cli("run", path, "--set", "steps=6", "--set", "precision=auto", "--results", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    res = api.load_results("over", tmp_path / "r")
    assert {t.spec.steps for t in res.trials} == {6} and {t.spec.precision for t in res.trials} == {"auto"}
    assert res.definition.overrides == {"steps": 6, "precision": "auto"} and not res.partial
    for bad, fragment in (("nosuch=1", "nosuch"), ("precision=fp8", "precision"), ("steps", "KEY=VALUE")):
        proc = cli("run", path, "--set", bad, "--results", tmp_path / "bad")
        assert_one_line_error(proc, fragment)
    assert not (tmp_path / "bad").exists()
