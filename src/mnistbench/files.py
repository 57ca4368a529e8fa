"""Writing files so that a crash never leaves half of one under the real name (the dataset cache, kept models)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> str:
    """Write to a temporary file, fsync, rename over `path`, fsync the folder: a crash leaves the old file or
    the new one whole, never a part (at most a stray .tmp file that nothing reads). Returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return hashlib.sha256(data).hexdigest()
