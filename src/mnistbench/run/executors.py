"""Executors run Jobs and yield their outputs as they finish: in this process, in a local process pool,
or on a Ray cluster. The driver (runner.py) alone writes to the store, so executors never touch it."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator, Protocol

from ..errors import BadInput
from .jobs import Job, JobOutput, execute
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


@dataclass
class LocalPool:
    workers: int

    def run(self, jobs: Iterable[Job]) -> Iterator[JobOutput]:
        pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_worker)
        try:
            # Workers share the cores: each trial gets its slice (unless its spec sets its own count), or
            # they would oversubscribe and all slow down; the count travels with the job and is stored.
            pending = {pool.submit(execute, replace(job, threads=resolve_threads(job.spec.threads, self.workers)))
                       for job in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:
            # Interrupted (Ctrl-C, a store error, the caller stopped): trials still running would only be
            # thrown away, and waiting for them would delay the exit by a whole trial, so stop them now.
            for process in list((pool._processes or {}).values()):
                process.terminate()
            raise
        finally:
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
            pending = []
            for job in jobs:
                # The task reserves exactly the CPUs its trial's threads will use, so Ray never packs more
                # threads onto a node than it has cores, and the count is the one stored with the result.
                threads = job.spec.threads or self.cpus_per_trial
                pending.append(remote.options(num_cpus=threads).remote(replace(job, threads=threads)))
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
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
