"""Describe the machine, the software and the code a result was measured on (stored beside every result)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import torch

from . import hardware


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=2).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        return None


@lru_cache(maxsize=1)
def code_version() -> tuple[str | None, bool | None]:
    """The project's git revision (12 hex digits) and whether tracked files differ from it, when run from
    a checkout; (None, None) from an installed package. Read once per process: a trial is attributed to
    the code its process imported, not to edits made to the tree while it ran."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=2)
        if rev.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=2).stdout.strip()
        return rev.stdout.strip(), bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


def git_revision() -> str | None:
    """The revision with '+dirty' appended when the tree was modified: one readable token."""
    rev, dirty = code_version()
    return None if rev is None else rev + ("+dirty" if dirty else "")


def package_version() -> str:
    from .. import __version__

    return __version__


def load_average() -> float | None:
    """The one-minute load average (None where the OS has none): a trial alone on 2 cores reads about 2."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def describe() -> dict[str, object]:
    """The notebook's hardware section as a flat dict (JSON-safe), for display and for the store."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return {
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": hardware.usable_cores(),
        "ram_gb": _ram_gb(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_build": "cuda " + torch.version.cuda if torch.version.cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
        "malloc_kept": hardware.freed_memory_kept(),  # whether this process's trials ran with keep_freed_memory
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "mps_available": mps,
        "mnistbench_git": git_revision(),  # revision+dirty in one token, as older stores have it
        "mnistbench_version": package_version(),
        "git_revision": code_version()[0],
        "git_dirty": code_version()[1],
    }
