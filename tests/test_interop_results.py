"""Results elsewhere: per-trial CSV / JSON / Parquet, MLflow (a real SQLite store), TensorBoard event files,
and the one-line error naming the extra when an integration is not installed."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest

from mnistbench import api
from mnistbench.errors import BadInput

from .conftest import write_dataset
from .test_experiments import write_experiment
from .test_interop_models import cli  # noqa: F401 - the in-process CLI fixture


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A tiny experiment: 2 configurations (one with optimizer_args, one without) x 2 seeds, 20 steps."""
    root = tmp_path_factory.mktemp("stored")
    data = write_dataset(root / "data", n_train=300, n_test=100)
    path = write_experiment(root, f"idx:{data}", seeds=2, configs=2, steps=20)
    results = root / "results"
    api.run(str(path), results_dir=results)
    return root, results, {(r.spec.optimizer, r.spec.seed): r for r in api.load_results("tiny", results).trials}


def test_per_trial_csv_and_json_flatten_the_spec(stored, cli):
    root, results, trials = stored
    proc = cli("results", "tiny", "--format", "csv", "--per-trial", "--results", results)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 4
    for row in rows:
        trial = trials[(row["spec.optimizer"], int(row["seed"]))]
        assert row["spec_id"] == trial.spec.id and float(row["final_accuracy"]) == trial.final_accuracy
        assert float(row["spec.lr"]) == trial.spec.lr and row["label"] == row["spec.optimizer"]
        assert row["spec.optimizer_args.momentum"] == ("0.9" if row["spec.optimizer"] == "sgd" else "")
        assert row["env.cpu"] == trial.environment["cpu"]
    proc = cli("results", "tiny", "--format", "json", "--per-trial", "--results", results)
    rows = json.loads(proc.stdout)
    assert len(rows) == 4 and {r["spec.optimizer_args.momentum"] for r in rows} == {0.9, None}
    assert cli("results", "tiny", "--per-trial", "--results", results).returncode == 2  # a table has no per-trial form


def test_parquet_has_one_row_per_trial(stored, cli, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    root, results, trials = stored
    proc = cli("results", "tiny", "--format", "parquet", "--out", tmp_path / "t.parquet", "--results", results)
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert len(table) == 4
    for row in table:
        trial = trials[(row["spec.optimizer"], row["seed"])]
        assert row["final_accuracy"] == trial.final_accuracy and row["spec.batch_size"] == 32
        assert row["time_to_target_s"] == trial.time_to_target_s
    assert cli("results", "tiny", "--format", "parquet", "--results", results).returncode == 0
    assert (results / "tiny.parquet").exists()  # the default place


def test_mlflow_export_one_run_per_trial_read_back_idempotent(stored, cli, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root, results, trials = stored
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = cli("export-results", "tiny", "--to", "mlflow", "--tracking-uri", uri, "--results", results)
    assert proc.returncode == 0, proc.stderr
    assert "4 trials written" in proc.stdout
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 4
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        trial = trials[(params["optimizer"], int(params["seed"]))]
        assert tags["mnistbench.spec_id"] == trial.spec.id and run.info.status == "FINISHED"
        assert tags["mnistbench.git_revision"] == str(trial.environment["mnistbench_git"])
        assert tags["env.torch"] == trial.environment["torch"]
        assert float(params["lr"]) == trial.spec.lr and params["model"] == "compact"
        assert metrics["final_accuracy"] == pytest.approx(trial.final_accuracy)
        if trial.time_to_target_s is not None:
            assert metrics["time_to_target_s"] == pytest.approx(trial.time_to_target_s)
        for name, field in (("curve/eval_accuracy", "eval_accuracy"), ("curve/timed_seconds", "train_seconds")):
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
            assert [s for s, _ in history] == [p.step for p in trial.curve]
            assert [v for _, v in history] == pytest.approx([getattr(p, field) for p in trial.curve])
    again = api.export_results("tiny", "mlflow", uri, results)
    assert (again.added, again.already) == (0, 4)
    assert len(client.search_runs([experiment.experiment_id])) == 4


def test_tensorboard_export_curves_and_hparams_read_back(stored, cli, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    root, results, trials = stored
    for _ in range(2):  # exporting again rewrites each trial's events instead of doubling them
        proc = cli("export-results", "tiny", "--to", "tensorboard", tmp_path / "tb", "--results", results)
        assert proc.returncode == 0, proc.stderr
    runs = sorted(p for p in (tmp_path / "tb" / "tiny").glob("*/seed-*"))
    assert len(runs) == 4
    for run in runs:
        events = EventAccumulator(str(run)).Reload()
        assert len(list(run.iterdir())) == 1  # one event file per trial
        trial = trials[(run.parent.name, int(run.name.split("-")[1]))]
        accuracy = events.Scalars("curve/eval_accuracy")
        assert [e.step for e in accuracy] == [p.step for p in trial.curve]
        assert [e.value for e in accuracy] == pytest.approx([p.eval_accuracy for p in trial.curve])
        assert events.Scalars("final/accuracy")[0].value == pytest.approx(trial.final_accuracy)
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["optimizer"].string_value == trial.spec.optimizer
        assert start.hparams["lr"].number_value == pytest.approx(trial.spec.lr)


@pytest.mark.parametrize("module, extra, call", [
    ("mlflow", "mlflow", lambda r, t: api.export_results("tiny", "mlflow", f"sqlite:///{t}/m.db", r)),
    ("tensorboard", "tensorboard", lambda r, t: api.export_results("tiny", "tensorboard", t / "tb", r)),
    ("pyarrow", "parquet", lambda r, t: __import__("mnistbench.interop.tables", fromlist=["x"]).write_parquet(
        api.trial_rows("tiny", r), t / "x.parquet")),
])
def test_a_missing_integration_names_its_extra(stored, tmp_path, monkeypatch, module, extra, call):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(BadInput) as err:
        call(stored[1], tmp_path)
    line = err.value.one_line()
    assert f"pip install 'mnistbench[{extra}]'" in line and "\n" not in line


def test_export_results_bad_destination_is_one_line(stored, cli):
    from .test_experiments import assert_one_line_error

    assert_one_line_error(cli("export-results", "tiny", "--to", "excel", "--results", stored[1]),
                          "unknown export destination 'excel'")
    assert_one_line_error(cli("export-results", "nope", "--to", "tensorboard", "--results", stored[1]),
                          "no results for experiment 'nope'")


def test_a_tracking_uri_or_folder_that_cannot_be_used_is_one_line(stored, cli, tmp_path):
    from .test_experiments import assert_one_line_error

    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    (tmp_path / "a-file").write_text("in the way")
    for uri in (f"sqlite:///{tmp_path}/a-file/mlflow.db", "nope://x", str(tmp_path / "a-file" / "mlruns")):
        assert_one_line_error(cli("export-results", "tiny", "--to", "mlflow", "--tracking-uri", uri,
                                  "--results", stored[1]), "cannot use the MLflow tracking URI")
    assert_one_line_error(cli("export-results", "tiny", "--to", "tensorboard", tmp_path / "a-file" / "tb",
                              "--results", stored[1]), "cannot write TensorBoard events", "a-file")
    assert (tmp_path / "a-file").read_text() == "in the way"


def test_a_run_can_be_watched_live_in_tensorboard(synthetic_name, tmp_path):
    """`run --live-tensorboard DIR`: every evaluation of every trial is in TensorBoard's event files while the run
    goes on (flushed at each point), in the folders `export-results --to tensorboard` uses."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from .test_experiments import cli as subprocess_cli

    path = write_experiment(tmp_path, synthetic_name, seeds=1, configs=2, steps=20)
    proc = subprocess_cli("run", path, "--results", tmp_path / "r", "--live-tensorboard", tmp_path / "tb")
    assert proc.returncode == 0, proc.stderr
    for trial in api.load_results("tiny", tmp_path / "r").trials:
        label = "sgd" if trial.spec.optimizer == "sgd" else "adam"
        events = EventAccumulator(str(tmp_path / "tb" / "tiny" / label / "seed-0"))
        events.Reload()
        points = [(e.step, round(e.value, 6)) for e in events.Scalars("curve/eval_accuracy")]
        assert points == [(p.step, round(p.eval_accuracy, 6)) for p in trial.curve]
    proc = subprocess_cli("run", path, "--results", tmp_path / "r", "--live-tensorboard", tmp_path / "tb",
                          "--workers", "2")
    assert proc.returncode == 2 and "in this process" in proc.stderr


def test_live_points_are_on_disk_before_the_trial_ends(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mnistbench.core.spec import TrialSpec
    from mnistbench.core.trial import Progress
    from mnistbench.interop.live import LiveTensorBoard
    from mnistbench.run.jobs import Job

    with LiveTensorBoard(tmp_path, "exp") as live:
        write = live.for_job(Job("adam", TrialSpec(seed=3)))
        write(Progress(step=10, total_steps=100, epoch=0.1, train_loss=1.5, accuracy=0.42, train_seconds=0.7))
        events = EventAccumulator(str(tmp_path / "exp" / "adam" / "seed-3"))  # the writer is still open
        events.Reload()
        assert [(e.step, round(e.value, 4)) for e in events.Scalars("curve/eval_accuracy")] == [(10, 0.42)]
