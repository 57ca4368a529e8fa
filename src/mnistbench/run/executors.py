"""Executors run Jobs and yield their outputs as they finish: in this process, in a local process pool,
or on a Ray cluster. The driver (runner.py) alone writes to the store, so executors never touch it."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator, Protocol

from ..errors import BadInput
from .jobs import Job, JobOutput, execute, failed_output
from ..registry import Registry
from ..core.hardware import resolve_threads
from ..core.trial import Progress


class Executor(Protocol):
    def run(self, jobs: Iterable[Job]) -> Iterator[JobOutput]:
        """Yield outputs as trials finish. `jobs` is lazy (each job is claimed when taken): an executor
        takes only as many as it can start, or all of them when it submits everything at once."""


@dataclass
class InProcess:
    """One trial at a time, here; the only executor that can show the running trial's own bar."""

    progress: Callable[[Job], Callable[[Progress], None] | None] | None = None

    def run(self, jobs: Iterable[Job]) -> Iterator[JobOutput]:
        for job in jobs:
            job = replace(job, threads=resolve_threads(job.spec.threads))  # alone here: every usable core
            yield execute(job, self.progress(job) if self.progress else None)


def _init_worker() -> None:
    import signal

    # Ctrl-C reaches the whole process group: the driver alone handles it (and stops the workers), so
    # workers neither print tracebacks of their own nor break the pool under it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _reaped(processes: list, seconds: float = 10.0):
    """The dead worker, once its exit code is known. The pool's own manager thread reaps it too: when it wins
    that race our join() returns at once with no code, and the code appears when that thread records it."""
    deadline = time.monotonic() + seconds
    while processes[0].exitcode is None and time.monotonic() < deadline:
        processes[0].join(timeout=0.1)
    return processes[0]


def _death_reason(process) -> str:
    """Why a worker process ended, in words (its exit code is minus the signal that killed it)."""
    import signal

    code = getattr(process, "exitcode", None)
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        why = {"SIGKILL": " (as the OOM killer does when memory runs out)", "SIGSEGV": " (a segmentation fault)"}
        return f"killed by {name}{why.get(name, '')}"
    return f"exited with code {code}" if code is not None else "ended abruptly"


@dataclass
class LocalPool:
    """N worker processes, each its own one-process pool: a worker that dies (OOM killer, segfault) takes down
    only its own trial, which is stored as failed with the reason, and a fresh worker takes the next trial."""

    workers: int
    target: Callable[[Job], JobOutput] = execute  # what a worker runs per job (a picklable, top-level function)

    def run(self, jobs: Iterable[Job]) -> Iterator[JobOutput]:
        new_pool = lambda: ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_init_worker)
        pools = [new_pool() for _ in range(self.workers)]
        queue = iter(jobs)
        running: dict = {}  # future -> (slot, job)
        processes: dict[int, list] = {}  # slot -> its worker process

        def start(slot: int) -> None:
            job = next(queue, None)  # taken (and so claimed) only when a worker is free for it
            if job is not None:
                # Workers share the cores: each trial gets its slice (unless its spec sets its own count), or
                # they would oversubscribe and all slow down; the count travels with the job and is stored.
                job = replace(job, threads=resolve_threads(job.spec.threads, self.workers))
                running[pools[slot].submit(self.target, job)] = (slot, job)
                # Kept to read its exit code should it die: a broken pool forgets its processes.
                processes[slot] = list((pools[slot]._processes or {}).values())

        try:
            for slot in range(self.workers):
                start(slot)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    slot, job = running.pop(future)
                    try:
                        output = future.result()
                    except BrokenProcessPool:
                        reason = _death_reason(_reaped(processes[slot])) if processes[slot] else "ended abruptly"
                        output = failed_output(job, f"the worker process running this trial died: {reason}")
                        pools[slot].shutdown(wait=False)
                        pools[slot] = new_pool()
                    yield output
                    start(slot)
        except BaseException:
            # Interrupted (Ctrl-C, a store error, the caller stopped): trials still running would only be
            # thrown away, and waiting for them would delay the exit by a whole trial, so stop them now.
            for pool in pools:
                for process in list((pool._processes or {}).values()):
                    process.terminate()
            raise
        finally:
            for pool in pools:
                pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class RayCluster:
    """Ray: a local cluster started on demand, or an existing one at `address`."""

    address: str | None = None
    cpus_per_trial: int = 1  # threads of a trial whose spec does not set its own; Ray reserves as many CPUs

    def run(self, jobs: Iterable[Job]) -> Iterator[JobOutput]:
        try:
            import ray
        except ImportError:
            raise BadInput("the ray executor needs Ray", "pip install 'mnistbench[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        try:
            remote = ray.remote(execute)
            pending = {}
            for job in jobs:
                # The task reserves exactly the CPUs its trial's threads will use, so Ray never packs more
                # threads onto a node than it has cores, and the count is the one stored with the result.
                threads = job.spec.threads or self.cpus_per_trial
                job = replace(job, threads=threads)
                pending[remote.options(num_cpus=threads).remote(job)] = job
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    yield ray.get(done[0])
                except ray.exceptions.RayError as exc:  # a worker or node lost: this trial only
                    yield failed_output(job, f"the Ray worker running this trial was lost: "
                                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            if started_here:
                ray.shutdown()


@dataclass(frozen=True)
class ExecutorEntry:
    build: Callable[..., Executor]
    description: str


EXECUTORS: Registry[ExecutorEntry] = Registry("executor")
EXECUTORS.add("local", ExecutorEntry(lambda workers=1, address=None, progress=None:
                                     InProcess(progress) if workers <= 1 else LocalPool(workers),
                                     "this process, or a process pool with --workers N"))
EXECUTORS.add("ray", ExecutorEntry(lambda workers=1, address=None, progress=None: RayCluster(address),
                                   "Ray: a local cluster, or an existing one with --address"))
