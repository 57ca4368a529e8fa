"""Stored trials into MLflow: one run per trial in an MLflow experiment named after ours; a second export adds
nothing (runs carry the trial's spec id, and only finished runs count as exported)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from ..core.result import TrialResult
from .destinations import Exported
from ..errors import BadInput
from ..extras import require
from .tables import flatten

SPEC_TAG = "mnistbench.spec_id"
ATTEMPT_TAG = "mnistbench.result_digest"  # a rerun of a trial is a new attempt: a new run beside the old one
# MLflow's limits for one log_batch call.
MAX_METRICS, MAX_PARAMS = 1000, 100


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _metrics(result: TrialResult, start_ms: int):
    """Final figures at the last step; the curve per evaluation at its step, with a timestamp of start plus the
    timed training seconds, so MLflow's 'relative time' axis is the honest clock (evaluation excluded)."""
    from mlflow.entities import Metric

    out = []
    last = result.steps
    finals = {"final_accuracy": result.final_accuracy, "final_loss": result.final_loss,
              "time_to_target_s": result.time_to_target_s, "steps_to_target": result.steps_to_target,
              "epochs_to_target": result.epochs_to_target, "train_seconds": result.train_seconds,
              "eval_seconds": result.eval_seconds, "wall_seconds": result.wall_seconds}
    end_ms = start_ms + int(result.train_seconds * 1000)
    out += [Metric(k, float(v), end_ms, last) for k, v in finals.items() if v is not None]
    for p in result.curve:
        at = start_ms + int(p.train_seconds * 1000)
        if not p.partial:  # a partial evaluation's accuracy is over the images it saw, not the split
            out += [Metric("curve/eval_accuracy", p.eval_accuracy, at, p.step),
                    Metric("curve/eval_loss", p.eval_loss, at, p.step)]
        out += [Metric("curve/train_loss", p.train_loss, at, p.step),
                Metric("curve/lr", p.lr, at, p.step),
                Metric("curve/timed_seconds", p.train_seconds, at, p.step),
                Metric("curve/epoch", p.epoch, at, p.step)]
    return out


def _digest(result: TrialResult) -> str:
    blob = json.dumps(result.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def export(experiment: str, trials: list[tuple[str, TrialResult]], tracking_uri: str | None = None) -> Exported:
    mlflow = require("mlflow", "mlflow", "exporting to MLflow")
    from mlflow.entities import Param, RunStatus
    from mlflow.tracking import MlflowClient

    # A server that does not answer would otherwise be retried for minutes; a user's own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:  # the first contact: whatever fails here is about the URI (scheme, path, server), and nothing is written
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else client.create_experiment(
            experiment, tags={"mnistbench.experiment": experiment})
    except Exception as exc:  # noqa: BLE001 - MLflow raises its own, OS and HTTP errors alike here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BadInput(f"cannot use the MLflow tracking URI {tracking_uri or mlflow.get_tracking_uri()!r}: {first}",
                       "pass --tracking-uri sqlite:///PATH/mlflow.db (in a folder you can write) or an http(s) "
                       "server that answers") from None
    done = set()
    for run in client.search_runs([exp_id], max_results=50000):
        if ATTEMPT_TAG not in run.data.tags:
            continue  # someone else's run in the same MLflow experiment
        if run.info.status == "RUNNING":  # an export interrupted half-way: start that trial over
            client.delete_run(run.info.run_id)
        else:
            done.add(run.data.tags[ATTEMPT_TAG])
    added = 0
    for label, result in trials:
        spec, digest = result.spec, _digest(result)
        if digest in done:
            continue
        start_ms = int(time.time() * 1000)
        env = {k: str(v) for k, v in flatten("env", result.environment, {}).items()}
        tags = {SPEC_TAG: spec.id, ATTEMPT_TAG: digest, "mnistbench.experiment": experiment, "mnistbench.label": label,
                "mnistbench.seed": str(spec.seed), "mnistbench.status": result.status,
                "mnistbench.config_key": spec.config_key(),
                "mnistbench.git_revision": str(result.environment.get("mnistbench_git")), **env}
        run = client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=f"{label} seed {spec.seed}")
        run_id = run.info.run_id
        params = [Param(k, str(v)) for k, v in flatten("", spec.model_dump(mode="json"), {}).items()]
        for chunk in _chunks(params, MAX_PARAMS):
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks(_metrics(result, start_ms), MAX_METRICS):
            client.log_batch(run_id, metrics=chunk)
        status = RunStatus.to_string(RunStatus.FAILED if result.status == "failed" else RunStatus.FINISHED)
        client.set_terminated(run_id, status, end_time=start_ms + int(result.wall_seconds * 1000))
        added += 1
    return Exported(added, len(trials) - added, tracking_uri or mlflow.get_tracking_uri())
