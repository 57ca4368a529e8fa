"""Stored trials as TensorBoard event files: one run folder per trial (EXPERIMENT/LABEL/seed-N) with its curves
and an HParams entry (spec -> final accuracy, time to target), so the HParams tab compares every trial."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

from ..core.result import TrialResult
from ..errors import BadInput
from ..extras import require
from .tables import flatten
from .destinations import Exported

# Scalars whose values also fill the HParams table's metric columns.
FINAL_TAGS = {"final/accuracy": "final_accuracy", "final/time_to_target_s": "time_to_target_s",
              "final/train_seconds": "train_seconds"}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "_"


def run_folder(out: Path | str, experiment: str, label: str, seed: int) -> Path:
    """OUT/EXPERIMENT/LABEL/seed-N: where a trial's events go, live (interop/live.py) or exported."""
    return Path(out) / _safe(experiment) / _safe(label) / f"seed-{seed}"


def _hparam(value):
    """HParams take numbers, text and flags; anything else (None, JSON lists) is shown as text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _write(run_dir: Path, label: str, result: TrialResult) -> None:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    base = time.time()  # wall times are base + timed training seconds: the 'relative' axis is the honest clock
    writer = SummaryWriter(str(run_dir))
    try:
        for p in result.curve:
            at = base + p.train_seconds
            evaluated = () if p.partial else (("curve/eval_accuracy", p.eval_accuracy), ("curve/eval_loss", p.eval_loss))
            for tag, value in (*evaluated, ("curve/train_loss", p.train_loss), ("curve/lr", p.lr),
                               ("curve/timed_seconds", p.train_seconds)):
                writer.add_scalar(tag, value, p.step, walltime=at)
        finals = {tag: getattr(result, attr) for tag, attr in FINAL_TAGS.items() if getattr(result, attr) is not None}
        for tag, value in finals.items():
            writer.add_scalar(tag, value, result.steps, walltime=base + result.train_seconds)
        params = {k: _hparam(v) for k, v in flatten("", result.spec.model_dump(mode="json"), {}).items()}
        params.update(label=label, status=result.status)
        experiment, start, end = hparams(params, finals)
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()


def export(experiment: str, trials: list[tuple[str, TrialResult]], out: Path) -> Exported:
    """Write (or rewrite) one run folder per trial under OUT/EXPERIMENT. Each is written beside its place and
    swapped in, so exporting again replaces a trial's events instead of doubling them."""
    require("tensorboard", "tensorboard", "exporting to TensorBoard")
    root = Path(out) / _safe(experiment)
    try:  # before any event is written: a file in the way or a folder without permission is bad input
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write TensorBoard events under {out}: {exc.strerror} ({exc.filename})",
                       "pass a folder you can write to") from None
    for leftover in root.glob("*/.seed-*.tmp"):  # from an export that was interrupted: TensorBoard would show it
        shutil.rmtree(leftover, ignore_errors=True)
    for label, result in trials:
        run_dir = run_folder(out, experiment, label, result.spec.seed)
        tmp = run_dir.with_name(f".{run_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _write(tmp, label, result)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        tmp.rename(run_dir)
    return Exported(len(trials), 0, str(root))
