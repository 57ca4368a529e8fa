"""Read and write IDX files (raw or gzip), validating everything the format promises."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
NUM_CLASSES = 10


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (detected by its magic, not its name)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", "check the path or run `mnistbench data fetch`") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: damaged gzip data ({exc})", "delete the file and fetch it again"
        ) from None


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a uint8 array, checking magic, type and size against the header."""
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)", "fetch it again")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _UBYTE or ndim == 0:
        magic = struct.unpack(">I", data[:4])[0]
        raise DataError(
            f"{path}: not an unsigned-byte IDX file (magic number {magic:#010x})",
            "expected 0x00000803 for images or 0x00000801 for labels",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header", "fetch the file again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    # Python's integers: np.prod over four 32-bit dimensions wraps around 2**63 and could match a short file.
    expected = header + math.prod(dims)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: header promises {expected} bytes for shape {dims}, file has {len(data)}",
            "delete it and fetch it again",
        )
    # A zero size makes the file's length check pass whatever the others say, but numpy refuses a shape whose
    # other sizes multiply past what it can address (0 x 2e9 x 4e9): no real dataset comes near 2**48 bytes.
    if math.prod(d for d in dims if d) > 2**48:
        raise DataError(f"{path}: impossible shape {dims} in the header", "delete it and fetch it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_shape(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file's header declares, reading only the header (gzip is streamed)."""
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            head = fh.read(4)
            ndim = head[3] if len(head) == 4 else 0
            head += fh.read(4 * ndim)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", "check the path or run `mnistbench data fetch`") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})", "delete the file and fetch it again") from None
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != _UBYTE or ndim == 0 or len(head) < 4 + 4 * ndim:
        raise DataError(f"{path}: not an unsigned-byte IDX file", "expected 0x00000803 for images or 0x00000801 "
                        "for labels")
    return struct.unpack(f">{ndim}I", head[4:])


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_bytes(path), path)


def _magic(array: np.ndarray) -> int:
    return (_UBYTE << 8) | array.ndim


def read_images(path: Path) -> np.ndarray:
    array = read_idx(path)
    if _magic(array) != IMAGES_MAGIC:
        raise DataError(
            f"{path}: expected an image file (magic 0x00000803, 3 dimensions), found {array.ndim} dimension(s)",
            "the images and labels files may be swapped",
        )
    return array


def read_labels(path: Path) -> np.ndarray:
    array = read_idx(path)
    if _magic(array) != LABELS_MAGIC:
        raise DataError(
            f"{path}: expected a label file (magic 0x00000801, 1 dimension), found {array.ndim} dimension(s)",
            "the images and labels files may be swapped",
        )
    if array.size and int(array.max()) >= NUM_CLASSES:
        bad = int(np.argmax(array >= NUM_CLASSES))
        raise DataError(
            f"{path}: label {int(array[bad])} at index {bad} is outside 0..{NUM_CLASSES - 1}",
            "the file is corrupt; fetch it again",
        )
    return array


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) and labels (N,) of one split, with their counts checked against each other."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels",
            "the two files do not belong together; fetch the dataset again",
        )
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, _UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as IDX; gzip when asked, or when the name ends in .gz."""
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
