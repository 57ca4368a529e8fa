"""Live progress for trials and experiments: a Rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .console import console, interactive
from ..core.trial import Progress as TrialProgress


class TrialBar:
    """A progress callback for run_trial: step, epoch, loss, last accuracy and ETA."""

    def __init__(self, bar: Progress | None, label: str):
        self.bar, self.label, self.task = bar, label, None

    def __call__(self, p: TrialProgress) -> None:
        info = f"epoch {p.epoch:.2f} loss {p.train_loss:.4f} " + (
            f"acc {p.accuracy:.4f}" if p.seen is None else f"below target (stopped after {p.seen:,} images)")
        if self.bar is None:
            if abs(p.epoch - round(p.epoch)) < 1e-9 or p.step == p.total_steps:
                console.print(f"{self.label}: step {p.step}/{p.total_steps} {info} "
                              f"({p.train_seconds:.1f} s timed)", highlight=False)
            return
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=p.total_steps, info="")
        self.bar.update(self.task, completed=p.step, info=info)

    def close(self) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.remove_task(self.task)


@contextlib.contextmanager
def live_bars() -> Iterator[Progress | None]:
    """A shared Rich Progress while the output is a terminal; None (plain lines) otherwise."""
    if not interactive():
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
        yield bar
