"""Workloads (dataset + model + validation target + budget), `list workloads`, and a tuned experiment end to end
on tiny synthetic data: search on validation, reruns on test, resume, and the report's profiles."""

from __future__ import annotations

import sqlite3

import pytest

from mnistbench import api
from mnistbench.errors import ConfigError, UnknownName
from mnistbench.run.experiments import load_experiment, parse_experiment
from mnistbench.workloads import WORKLOADS, apply_workload

from .test_experiments import assert_one_line_error, cli


def test_builtin_workloads_fix_dataset_model_validation_target_and_budget():
    assert {"mnist", "fashion-mnist"} <= set(WORKLOADS.names())
    assert WORKLOADS.get("mnist").targets == (0.97, 0.99)
    fields = apply_workload({"workload": "fashion-mnist", "optimizer": "adam"})
    assert fields == {"dataset": "fashion-mnist", "model": "summary", "target": 0.88, "epochs": 3, "batch_size": 128,
                      "val_size": 10000, "eval_on": "val", "optimizer": "adam"}


def test_fields_given_beside_a_workload_win():
    fields = apply_workload({"workload": "mnist", "target": 0.99, "model": "compact"})
    assert fields["target"] == 0.99 and fields["model"] == "compact" and fields["dataset"] == "mnist"


def test_an_idx_workload_takes_its_target_and_split_from_the_file(tmp_path):
    fields = apply_workload({"workload": f"idx:{tmp_path}", "target": 0.8, "val_size": 50})
    assert fields["dataset"] == f"idx:{tmp_path}" and fields["target"] == 0.8 and fields["val_size"] == 50
    with pytest.raises(ConfigError, match="no built-in target"):
        apply_workload({"workload": f"idx:{tmp_path}"})


def test_unknown_workload_names_the_known_ones():
    with pytest.raises(UnknownName) as info:
        apply_workload({"workload": "cifar"})
    assert "mnist" in str(info.value.hint) or "mnist" in info.value.message


def test_unknown_workload_in_an_experiment_file_is_one_cli_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[[config]]\nlabel = "a"\nfields = { workload = "cifar" }\n')
    proc = cli("run", path, "--results", tmp_path / "res", "--dry-run")
    assert_one_line_error(proc, "bad.toml", "cifar")
    assert not (tmp_path / "res").exists()


def test_list_workloads_shows_the_registry():
    proc = cli("list", "workloads")
    assert proc.returncode == 0, proc.stderr
    for text in ("mnist", "fashion-mnist", "0.97, 0.99", "idx:PATH"):
        assert text in proc.stdout


def test_builtin_optimizers_study_tunes_five_optimizers_on_two_workloads():
    exp = load_experiment("optimizers")
    planned = exp.trials()
    assert {c.group for c in exp.configs()} == {"SGD", "SGD + Nesterov", "Adam", "AdamW", "RMSprop"}
    assert {s.dataset for _, s in planned} == {"mnist", "fashion-mnist"}
    assert all(s.eval_on == "val" and s.val_size == 10000 and s.model == "summary" for _, s in planned)
    assert len(planned) == 10 * exp.tuning.trials and exp.seeds == 5


TUNED = """name = "tiny-tuned"
seeds = 2

[defaults]
workload = "idx:{folder}"
target = 0.5
val_size = 100
model = "compact"
batch_size = 32
steps = 12
eval_every = 6
eval_batch_size = 100
threads = 1

[[config]]
label = "sgd on synthetic"
group = "sgd"
fields = {{ optimizer = "sgd", optimizer_args = {{ momentum = 0.9 }} }}

[[config]]
label = "adam on synthetic"
group = "adam"
fields = {{ optimizer = "adam" }}

[tuning]
trials = 2
space = {{ lr = {{ low = 1e-3, high = 0.1, scale = "log" }} }}
"""


def test_tiny_tuned_experiment_end_to_end(synthetic, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TUNED.format(folder=synthetic))
    results = tmp_path / "res"
    proc = cli("run", path, "--results", results)
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(results / "results.sqlite")
    rows = conn.execute("SELECT label, seed, status, spec FROM trials").fetchall()
    conn.close()
    search = [r for r in rows if "tuning" in r[0]]
    reruns = [r for r in rows if r[0].endswith("· tuned")]
    assert len(search) == 4 and len(reruns) == 2 * 2
    assert all('"eval_on": "val"' in r[3] for r in search) and all('"eval_on": "val"' not in r[3] for r in reruns)
    assert sorted(r[1] for r in reruns) == [1, 1, 2, 2]

    assert api.run(str(path), results_dir=results).run_summary.ran == 0  # resume: nothing left, same winners
    api.write_report("tiny-tuned", results)
    md = (results / "tiny-tuned-report" / "report.md").read_text()
    assert "## Tuned techniques" in md and "Tuning protocol" in md and "the test split is never read" in md
    assert "| sgd | idx:" in md and "| adam | idx:" in md, md
    figures = results / "tiny-tuned-report" / "figures"
    assert (figures / "performance-profile.png").is_file() and (figures / "sensitivity-lr.png").is_file()
    assert "Performance profiles" in (results / "tiny-tuned-report" / "report.html").read_text()


def test_tuning_and_select_together_are_refused():
    text = ('name = "x"\n[defaults]\nworkload = "mnist"\n[[config]]\nlabel = "a"\n'
            '[select]\ngroup_by = ["optimizer"]\n[tuning]\ntrials = 2\nspace = { lr = { low = 0.01, high = 0.1 } }\n')
    with pytest.raises(ConfigError, match="either select"):
        parse_experiment(text, "x.toml")
