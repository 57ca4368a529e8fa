"""Runs you can watch while they train (`run --live-tensorboard DIR`): every evaluation of every trial written to
TensorBoard the moment it happens, in the folders `export-results --to tensorboard` later fills with the stored
trial (which replaces the live events with the finished record)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..core.trial import Progress
from ..run.jobs import Job
from ..extras import require
from .to_tensorboard import run_folder


class LiveTensorBoard:
    """A progress callback per job that streams its curve: evaluation accuracy, training loss and the timed
    clock against the step. The writers stay open while the run lasts; `close()` (or the with-block) ends them."""

    def __init__(self, folder: Path | str, experiment: str):
        require("torch.utils.tensorboard", "tensorboard", "watching a run in TensorBoard")
        require("tensorboard", "tensorboard", "watching a run in TensorBoard")
        self.folder, self.experiment = Path(folder), experiment
        self.writers: dict[Path, object] = {}

    def for_job(self, job: Job) -> Callable[[Progress], None]:
        from torch.utils.tensorboard import SummaryWriter

        where = run_folder(self.folder, self.experiment, job.label, job.spec.seed)

        def write(p: Progress) -> None:
            writer = self.writers.get(where)
            if writer is None:
                writer = self.writers[where] = SummaryWriter(str(where))
            evaluated = () if p.seen is not None else (("curve/eval_accuracy", p.accuracy),)  # partial: a prefix's
            for tag, value in (*evaluated, ("curve/train_loss", p.train_loss), ("curve/timed_seconds", p.train_seconds)):
                writer.add_scalar(tag, value, p.step)
            writer.flush()  # on disk now: TensorBoard shows the point while the trial trains on

        return write

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def __enter__(self) -> "LiveTensorBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
