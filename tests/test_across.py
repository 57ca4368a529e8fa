"""One experiment read from several stores (`results --results A --results B`): trials keep their machine,
pool across stores only within one environment, and each environment is set against the first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mnistbench import api
from mnistbench.run.store import ResultStore
from tests.test_cli import run_main
from tests.test_report import ENV, make_result

FAST = {**ENV, "cpu": "Fast CPU"}
SLOW = {**ENV, "cpu": "Slow CPU"}


def store(folder: Path, trials: list) -> Path:
    """A store of experiment 'x' holding (label, result) pairs."""
    s = ResultStore(folder)
    for label, r in trials:
        s.add_trial("x", label, r)
    s.close()
    return folder


def sgd(seed: int, env: dict, epoch_seconds: float = 4.0, **kw):
    return "SGD", make_result(seed, environment=dict(env), epoch_seconds=epoch_seconds, **kw)


def adam(seed: int, env: dict, epoch_seconds: float = 4.0):
    return "Adam", make_result(seed, environment=dict(env), epoch_seconds=epoch_seconds, optimizer="adam", lr=0.001)


def test_trials_from_two_machines_are_never_pooled_and_each_is_set_against_the_first(tmp_path):
    a = store(tmp_path / "a", [sgd(s, FAST) for s in range(3)] + [adam(s, FAST) for s in range(3)])
    b = store(tmp_path / "b", [sgd(s, SLOW, epoch_seconds=8.0) for s in range(3)])
    across = api.load_across("x", [a, b])
    got = [(r.configuration, r.environment.split(" · ")[0], r.n, r.stores) for r in across.rows]
    assert got == [("SGD", "Fast CPU", 3, str(a)), ("SGD", "Slow CPU", 3, str(b)), ("Adam", "Fast CPU", 3, str(a))]
    ratios = [r.step_time_ratio for r in across.rows]
    assert ratios[0] == pytest.approx(1.0) and ratios[1] == pytest.approx(2.0) and ratios[2] == pytest.approx(1.0)


def test_one_environment_split_over_two_stores_pools_into_one_row_and_a_copied_trial_counts_once(tmp_path):
    a = store(tmp_path / "a", [sgd(s, FAST) for s in range(3)])
    b = store(tmp_path / "b", [sgd(s, FAST) for s in range(2, 5)])  # seed 2 is in both stores
    across = api.load_across("x", [a, b])
    [row] = across.rows
    assert (row.n, row.stores, across.duplicates) == (5, f"{a}, {b}", 1)


def test_threads_or_torch_are_environments_of_their_own(tmp_path):
    a = store(tmp_path / "a", [sgd(s, FAST) for s in range(2)])
    b = store(tmp_path / "b", [sgd(s, {**FAST, "torch_threads": 1}) for s in range(2)])
    c = store(tmp_path / "c", [sgd(s, {**FAST, "torch": "2.12.0"}) for s in range(2)])
    envs = [r.environment for r in api.load_across("x", [a, b, c]).rows]
    assert envs == ["Fast CPU · 2 threads · torch 2.13.0", "Fast CPU · 1 threads · torch 2.13.0",
                    "Fast CPU · 2 threads · torch 2.12.0"]


def test_the_cli_reads_several_stores_side_by_side_and_refuses_what_it_cannot_do(tmp_path, capsys, monkeypatch):
    a = store(tmp_path / "a", [sgd(s, FAST) for s in range(2)])
    b = store(tmp_path / "b", [sgd(s, SLOW, epoch_seconds=6.0) for s in range(2)])
    both = ["--results", a, "--results", b]
    code, out, err = run_main(["results", "x", *both], capsys, monkeypatch)
    assert code == 0, err
    assert "Fast CPU" in out and "Slow CPU" in out and "1.50x" in out
    code, out, _ = run_main(["results", "x", *both, "--format", "json"], capsys, monkeypatch)
    assert [r["environment"].split(" · ")[0] for r in json.loads(out)] == ["Fast CPU", "Slow CPU"]
    for argv in (["results", *both],  # no experiment named
                 ["results", "x", "--results", a, "--results", a],  # one store twice
                 ["results", "x", *both, "--per-trial", "--format", "csv"],
                 ["results", "y", *both]):  # not stored
        code, out, err = run_main(argv, capsys, monkeypatch)
        assert code == 2 and "Traceback" not in out + err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_store_missing_trials_of_its_definition_is_named_partial(tmp_path, synthetic_name):
    exp = tmp_path / "e.toml"
    exp.write_text(f'name = "x"\nseeds = 2\n[defaults]\ndataset = "{synthetic_name}"\nmodel = "compact"\n'
                   'batch_size = 32\nsteps = 4\neval_every = 0\neval_batch_size = 100\n'
                   '[[config]]\nlabel = "SGD"\nfields = { optimizer = "sgd", lr = 0.05 }\n')
    full = tmp_path / "full"
    api.run(str(exp), results_dir=full)
    half = tmp_path / "half"
    shutil.copytree(full, half)
    conn = __import__("sqlite3").connect(half / "results.sqlite")
    with conn:
        conn.execute("DELETE FROM trials WHERE seed = 1")
    conn.close()
    across = api.load_across(str(exp), [full, half])
    assert across.partial_stores == [str(half)] and across.duplicates == 1
