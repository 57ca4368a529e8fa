"""The machine's compute settings a trial runs under: usable cores and thread counts, the allocator setting, and
the precision a device computes natively. What a result was measured on is described in environment.py."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from contextlib import contextmanager
from typing import Iterator

import torch


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_threads(requested: int | None, share: int = 1) -> int:
    """The explicit thread count of one trial: the spec's own, or this machine's usable cores divided among
    the `share` trials that run side by side on it (never less than one)."""
    return requested or max(1, usable_cores() // max(1, share))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a trial with exactly `n` intra-op threads and restore the previous count afterwards, so a count
    set for one trial never leaks into the next one (or into a notebook) in the same process."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


_malloc_kept: bool | None = None  # None: not asked yet in this process


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel, once per process.

    A training step allocates and frees activations of tens of megabytes. glibc serves blocks over its
    mmap threshold (32 MB at most) with fresh mmaps and trims the heap when its free top grows, so every
    step page-faults its activations in again and the kernel zero-fills them: on the 2-core AMD EPYC this
    was a quarter of a SimpleCNN step's time in system calls, and most of why batch 512 trained slower per
    image than batch 128 (`benchmarks/allocator.py` measures it). Serving every block from the heap and
    never trimming it keeps the high-water mark of the process resident instead: a few hundred megabytes
    for these models. No number computed changes, only where memory comes from and that the process keeps
    its peak. The setting holds for the rest of the process (a notebook's kernel included: glibc cannot put
    its dynamic thresholds back). Returns whether it took (False off glibc: macOS, Windows and musl have
    their own allocators)."""
    global _malloc_kept
    if _malloc_kept is None:
        _malloc_kept = _mallopt_keep()
    return _malloc_kept


def _mallopt_keep() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the allocator this process actually runs (no ldconfig lookup)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 matmuls and convolutions in hardware: CUDA GPUs of compute capability 8
    or more (Ampere on), x86 CPUs with AVX-512 BF16 or AMX, and Arm CPUs where oneDNN has bf16 kernels.
    Elsewhere bf16 autocast is emulated and slower than fp32 (1.9x on the 2-core AMD EPYC, AVX2 only).
    Neither `torch.cuda.is_bf16_supported()` (true on a V100 or T4, by emulation) nor oneDNN's x86 bf16 check
    (true on any AVX-512 CPU: Skylake to Ice Lake emulate it) answers this question."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        cpu = torch.cpu
        return any(getattr(cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(asked: str, device: torch.device) -> str:
    """The precision a trial computes in: the spec's, with "auto" meaning bf16 where `device` has it natively
    and fp32 elsewhere. The resolved one is stored with the trial, so the report tells machines apart."""
    if asked != "auto":
        return asked
    return "bf16" if native_bf16(device) else "fp32"


def freed_memory_kept() -> bool:
    """Whether this process trains with keep_freed_memory (stored with every trial as an environment factor)."""
    return bool(_malloc_kept)


def random_streams_kept(device: torch.device):
    """Run a block without moving the random streams a timed run draws from (dropout masks): the CPU's, and the
    device's on CUDA."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
