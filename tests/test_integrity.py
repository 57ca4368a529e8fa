"""Promises about measurement and storage, each tested so that breaking it fails the test: the training clock
sees neither evaluation nor loading; a kill inside the commit leaves every trial whole or absent; a real
full disk (a size-limited file) is one line and loses nothing."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import time

import pytest

from mnistbench import api, make_spec, run_trial
from mnistbench.core import trial
from mnistbench.run.store import KILL_IN_WRITE

from .test_experiments import assert_one_line_error, cli, integrity, stored, write_experiment

# --- The training clock times training only -----------------------------------------------------------------

EVAL_SLEEP, LOAD_SLEEP = 1.0, 3.0  # each far above 20 tiny training steps, even on a busy machine


def test_training_clock_never_sees_evaluation_or_loading(synthetic_name, monkeypatch):
    """Evaluation and data loading are made measurably slow; the training clock must not see it."""
    real_evaluate, real_load = trial.evaluate_toward, trial.load

    def slow_evaluate(*args, **kwargs):
        time.sleep(EVAL_SLEEP)
        return real_evaluate(*args, **kwargs)

    def slow_load(*args, **kwargs):
        time.sleep(LOAD_SLEEP)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trial, "evaluate_toward", slow_evaluate)  # every evaluation of the loop goes through it
    monkeypatch.setattr(trial, "load", slow_load)
    # lr 1e-6 never reaches the target, so evaluation keeps its 4-step cadence (and the epoch end at 19).
    spec = make_spec(dataset=synthetic_name, model="compact", lr=1e-6, batch_size=32, steps=20, eval_every=4,
                     eval_batch_size=100, threads=1, target=0.99)
    result = run_trial(spec)  # loads its own data, through the slow loader
    evaluations = len(result.curve)
    assert evaluations == 6 and result.eval_seconds >= evaluations * EVAL_SLEEP  # slept, counted as evaluation
    # Not on the training clock: the evaluations inside it would add 6 s, the loading 3 s; the 20 steps
    # themselves take well under a second even on a busy 2-core machine.
    assert result.train_seconds < 2.5
    assert result.wall_seconds >= result.train_seconds + evaluations * EVAL_SLEEP


# --- A kill inside the commit of a trial --------------------------------------------------------------------

INFERENCE = '\n[[inference]]\nconfig = "sgd"\nbatch_size = 100\nrepeats = 1\nwarmup = 0\n'


def _counts(results) -> dict[str, int]:
    conn = sqlite3.connect(results / "results.sqlite", timeout=30)
    try:
        return {
            "trials": conn.execute("SELECT count(*) FROM trials").fetchone()[0],
            "curves without a trial": conn.execute(
                "SELECT count(*) FROM curves c WHERE NOT EXISTS (SELECT 1 FROM trials t WHERE "
                "t.experiment = c.experiment AND t.spec_id = c.spec_id)").fetchone()[0],
            "trials without a curve": conn.execute(
                "SELECT count(*) FROM trials t WHERE NOT EXISTS (SELECT 1 FROM curves c WHERE "
                "c.experiment = t.experiment AND c.spec_id = t.spec_id)").fetchone()[0],
            "sgd trials without inference": conn.execute(
                "SELECT count(*) FROM trials t WHERE t.label = 'sgd' AND NOT EXISTS (SELECT 1 FROM inference i "
                "WHERE i.experiment = t.experiment AND i.spec_id = t.spec_id)").fetchone()[0],
            "inference without a trial": conn.execute(
                "SELECT count(*) FROM inference i WHERE NOT EXISTS (SELECT 1 FROM trials t WHERE "
                "t.experiment = i.experiment AND t.spec_id = i.spec_id)").fetchone()[0],
        }
    finally:
        conn.close()


# A trial's transaction: 1 drop old curve, 2 the trial, 3 its claim released, 4 its curve, 5 its inference.
@pytest.mark.parametrize("after", [2, 4])  # a trial without its curve; a trial and curve without inference
def test_kill_inside_the_commit_leaves_each_trial_whole_or_absent(synthetic_name, tmp_path, after):
    path = write_experiment(tmp_path, synthetic_name, configs=1, seeds=2, steps=10, extra=INFERENCE)
    results = tmp_path / "r"
    proc = cli("run", path, "--results", results, env={**os.environ, KILL_IN_WRITE: str(after)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # killed inside the first trial's transaction
    assert integrity(results) == "ok"
    assert _counts(results) == {"trials": 0, "curves without a trial": 0, "trials without a curve": 0,
                                "sgd trials without inference": 0, "inference without a trial": 0}
    api.run(str(path), results_dir=results)  # the next run stores both trials whole
    assert _counts(results) == {"trials": 2, "curves without a trial": 0, "trials without a curve": 0,
                                "sgd trials without inference": 0, "inference without a trial": 0}
    assert api.load_results("tiny", results).throughput  # the inference rows reach the results


# --- A real full disk: a file size limit on the writing process ---------------------------------------------

def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_real_size_limit_on_the_store_is_one_line_and_loses_nothing(synthetic_name, tmp_path):
    if not hasattr(resource, "RLIMIT_FSIZE") or not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no RLIMIT_FSIZE/SIGXFSZ on this platform to make a real full disk")
    path = write_experiment(tmp_path, synthetic_name, configs=2, seeds=4, steps=10)
    results = tmp_path / "r"
    api.run(str(path), seeds=1, results_dir=results)  # 2 trials stored, then the store is closed
    before = stored(results)
    assert len(before) == 2
    # The write-ahead log starts empty; 16 pages of room fill up within a few of the 6 trials left, so
    # SQLite meets the limit in its own write path (no injected error).
    proc = cli("run", path, "--results", results, preexec_fn=_limit_file_size(16 * 4096))
    line = assert_one_line_error(proc, "cannot write to", "stored results are intact", code=1)
    assert "disk" in line  # "database or disk is full" or "disk I/O error", as SQLite met it
    after = stored(results)
    assert set(before) <= set(after) and len(after) < 8 and integrity(results) == "ok"
    done = api.run(str(path), results_dir=results)  # room again: the run resumes where it stopped
    assert done.run_summary.skipped == len(after) and len(stored(results)) == 8
    assert set(after) <= set(stored(results))
