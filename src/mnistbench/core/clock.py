"""The one timing primitive: a stopwatch that synchronizes the device at every start and stop."""

from __future__ import annotations

import time

import torch


def synchronize(device: torch.device) -> None:
    # Without this a GPU clock measures how fast kernels are *queued*, not run.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Stopwatch:
    """Accumulates only the intervals between start() and stop()."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.elapsed = 0.0
        self._started: float | None = None

    def start(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        assert self._started is not None, "stop() without start()"
        self.elapsed += time.perf_counter() - self._started
        self._started = None
        return self.elapsed

    def __enter__(self) -> "Stopwatch":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def now() -> float:
    """Wall time for bookkeeping (never for a reported training figure)."""
    return time.perf_counter()
