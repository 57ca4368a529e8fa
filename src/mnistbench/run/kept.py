"""Models kept by `run --keep-models`: each written whole under the results folder before the store row that
names it commits, leftovers of earlier attempts removed once it does."""

from __future__ import annotations

import uuid
from pathlib import Path

from ..files import write_atomic

MODELS_DIR = "models"  # inside a results folder: models/EXPERIMENT/SPEC_ID-ATTEMPT.pt


def keep(results_dir: Path, experiment: str, spec_id: str, data: bytes) -> tuple[str, str]:
    """Write a trial's model under a new name (an earlier attempt's file stays valid until the store row
    moves to this one); returns (path relative to the results folder, sha256) for the store."""
    relative = Path(MODELS_DIR) / experiment / f"{spec_id}-{uuid.uuid4().hex[:8]}.pt"
    return relative.as_posix(), write_atomic(Path(results_dir) / relative, data)


def forget_others(results_dir: Path, kept: str) -> None:
    """After the store names `kept`, files of other attempts of the same trial are leftovers: remove them."""
    path = Path(results_dir) / kept
    spec_id = path.name.rsplit("-", 1)[0]
    for other in path.parent.glob(f"{spec_id}-*.pt"):
        if other != path:
            other.unlink(missing_ok=True)
