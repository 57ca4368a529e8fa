"""A Job is one trial (plus, optionally, an inference measurement of its trained model), runnable in any
process: executors ship Jobs out and get JobOutputs back, with plain data only (no modules, no tensors)."""

from __future__ import annotations

import contextlib
import dataclasses
import traceback
from dataclasses import dataclass
from typing import Callable

import torch

from ..data import Data, load
from .experiments import Inference
from ..core.hardware import resolve_threads, torch_threads
from ..core.inference import InferenceResult, measure_inference
from ..core.models import uses_channels_last
from ..core.result import COMPLETE, TrialResult
from ..core.spec import TrialSpec
from ..core.trial import Progress, resolve_device, run_trial

_DATA: dict[tuple[str, int], Data] = {}  # one load per process and dataset: workers reuse it across jobs


@dataclass(frozen=True)
class Job:
    label: str
    spec: TrialSpec
    inference: Inference | None = None
    # Intra-op threads the trial runs with, resolved by the executor that places it (it knows how many
    # trials share the machine); None: resolved where it runs, as for a trial alone on the machine.
    threads: int | None = None
    keep_model: bool = False  # ship the trained weights back (run --keep-models)


@dataclass
class JobOutput:
    job: Job
    result: TrialResult
    inference: InferenceResult | None = None
    # The saved-model file's bytes (core.checkpoint.to_bytes), not a path: the driver alone writes to the
    # results folder, in the trial's transaction, and a Ray worker on another machine has no such folder.
    model_file: bytes | None = None


def _data(spec: TrialSpec) -> Data:
    """The dataset in memory, loaded once per process and dataset: the trial that loads it reports the
    seconds it took, the ones that reuse it report 0 (they loaded nothing)."""
    key = (spec.dataset, spec.val_size)
    if key in _DATA:
        return dataclasses.replace(_DATA[key], load_seconds=0.0)
    _DATA.clear()
    _DATA[key] = load(spec.dataset, val_size=spec.val_size)
    return _DATA[key]


def failed_output(job: Job, reason: str) -> JobOutput:
    """The output of a job that could not finish (its worker died): stored as failed, retried next run."""
    return JobOutput(job, _failed(job.spec, reason))


def _failed(spec: TrialSpec, error: str) -> TrialResult:
    from ..core.environment import describe

    return TrialResult(spec=spec, status="failed", final_accuracy=None, final_loss=None, time_to_target_s=None,
                       steps_to_target=None, epochs_to_target=None, steps=0, train_seconds=0.0, eval_seconds=0.0,
                       wall_seconds=0.0, load_seconds=0.0, compile_seconds=0.0, device=spec.device,
                       environment=describe(), error=error)


def execute(job: Job, progress: Callable[[Progress], None] | None = None) -> JobOutput:
    """Run a job. A crash inside training becomes a `failed` result (retried on the next run), so one bad
    trial never takes an experiment down; bad input was rejected long before, when specs were built."""
    # Every trial runs with an explicit thread count (set here, restored after), so no trial inherits the
    # count a previous one left in this process; run_trial records it in the environment it stores.
    with torch_threads(job.threads or resolve_threads(job.spec.threads)):
        try:
            data = _data(job.spec)
            result = run_trial(job.spec, data, progress)
        except Exception as exc:  # noqa: BLE001 - recorded, shown, and retried, never swallowed
            return JobOutput(job, _failed(job.spec, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"))
        inference = None
        # Inside the same thread setting as training (and under the spec's own count, as run_trial uses it), so
        # the throughput is measured with the threads the trial stores; the count is stored with it too.
        if job.inference is not None and result.status != "diverged":
            try:
                with torch_threads(job.spec.threads) if job.spec.threads else contextlib.nullcontext():
                    inference = _measure(job, result, data)
            except Exception as exc:  # noqa: BLE001 - the trained result stands; the reason is stored with it
                result.error = (f"inference measurement failed, the trained result is kept: "
                                f"{type(exc).__name__}: {exc}")
    model_file = None
    if job.keep_model and result.status in COMPLETE:  # a diverged model's weights are no use
        from ..core.checkpoint import to_bytes

        model_file = to_bytes(result.model, job.spec, data.mean, data.std)
    result.model = None  # modules never leave the process
    return JobOutput(job, result, inference, model_file)


def _measure(job: Job, result: TrialResult, data: Data) -> InferenceResult:
    device = resolve_device(job.spec.device)
    test = data.test.to(device)
    if uses_channels_last(job.spec.model, device, job.spec.channels_last):  # the layout it trained in
        test.images = test.images.contiguous(memory_format=torch.channels_last)
    return measure_inference(result.model, test, job.inference.batch_size, job.inference.repeats,
                             job.inference.warmup, job.spec.precision)
