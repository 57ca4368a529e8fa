"""Job functions for the worker-death tests: they run in spawned worker processes, so they live in a module."""

from __future__ import annotations

import ctypes
import os
import signal

from mnistbench.run.jobs import Job, JobOutput, execute


def die_by_seed(job: Job) -> JobOutput:
    """Seed 1 is killed as the OOM killer kills; seed 2 segfaults; the others train."""
    if job.spec.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if job.spec.seed == 2:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return execute(job)
