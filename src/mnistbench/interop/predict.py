"""Predict digits from image files: PNG / JPEG prepared the way MNIST's digits were, or IDX files as they are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BadInput
from ..core.checkpoint import SavedModel

SIDE = 28  # MNIST's canvas
BOX = 20  # MNIST's digits were scaled to fit a 20x20 box, keeping their aspect ratio
INK = 0.25  # a pixel darker (after inversion: brighter) than this share of the brightest one is the digit


@dataclass
class Prediction:
    source: str  # file, and "#i" for the i-th image of an IDX file
    top: list[tuple[int, float]]  # (class, probability), most likely first


def mnist_like(image: np.ndarray) -> np.ndarray:
    """A grey image (H, W) in [0, 1] of any size and polarity -> 28x28 white-on-black in [0, 1], as NIST's
    digits became MNIST's: inverted when the background is light, cropped to the digit, scaled so its longer
    side is 20 pixels (anti-aliased), and placed so its centre of mass is the canvas's centre."""
    from PIL import Image
    from scipy import ndimage

    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: MNIST's digits are light on black
        image, border = 1.0 - image, 1.0 - border
    image = np.clip(image - np.median(border), 0.0, None)  # the paper, whatever its shade, becomes black
    peak = image.max()
    if peak <= 0.05:
        raise ValueError("no digit found (the image is blank)")
    image = image / peak
    rows, cols = np.nonzero(image > INK)
    crop = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(size, Image.LANCZOS),
                       dtype=np.float32) / 255.0
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    top, left = (SIDE - size[1]) // 2, (SIDE - size[0]) // 2
    canvas[top:top + size[1], left:left + size[0]] = small
    cy, cx = ndimage.center_of_mass(canvas)
    shift = (round((SIDE - 1) / 2 - cy), round((SIDE - 1) / 2 - cx))  # whole pixels: no extra blur
    return np.clip(ndimage.shift(canvas, shift, order=0, mode="constant", cval=0.0), 0.0, 1.0)


def read_picture(path: Path) -> np.ndarray:
    """A PNG / JPEG (or anything Pillow reads) as grey values in [0, 1]; transparency is laid on white."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "P") and ("A" in img.mode or "transparency" in img.info):
                white = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, img.convert("RGBA"))
            grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise BadInput(f"no image file {path}", "check the path") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadInput(f"cannot read image {path} ({type(exc).__name__})", "pass a PNG, JPEG or IDX file") from None
    return grey


def _is_idx(path: Path) -> bool:
    head = path.open("rb").read(4) if path.exists() else b""
    gz = head[:2] == b"\x1f\x8b"
    return gz or (len(head) == 4 and head[:2] == b"\x00\x00" and head[2] == 0x08)


def _expand(paths) -> list[Path]:
    """The files named, a folder standing for the files in it (sorted; hidden ones left out)."""
    out = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not inside:
                raise BadInput(f"the folder {path} holds no files", "pass PNG, JPEG or IDX files, or a folder of them")
            out += inside
        else:
            out.append(path)
    return out


def load_inputs(paths: list[Path], saved: SavedModel) -> tuple[list[str], torch.Tensor]:
    """Every image named, as one normalized (N, 1, 28, 28) batch with the model's dataset statistics."""
    from ..data import read_images

    sources, images = [], []
    for path in _expand(map(Path, paths)):
        if _is_idx(path):
            try:
                pixels = read_images(path)
            except Exception as exc:  # noqa: BLE001 - a damaged IDX file is bad input, whatever broke
                raise BadInput(f"cannot read IDX file {path} ({exc})", "pass an IDX image file (idx3)") from None
            if pixels.ndim != 3 or pixels.shape[1:] != (SIDE, SIDE):
                raise BadInput(f"{path} holds images of shape {'x'.join(map(str, pixels.shape[1:]))}, but the model "
                               f"was trained on {saved.spec.dataset} ({SIDE}x{SIDE})",
                               "pass images of the model's dataset")
            images.append(pixels.astype(np.float32) / 255.0)
            sources += [f"{path}#{i}" for i in range(len(pixels))]
        else:
            try:
                images.append(mnist_like(read_picture(path))[None])
            except ValueError as exc:
                raise BadInput(f"{path}: {exc}", "pass an image with a digit on a plain background") from None
            sources.append(str(path))
    batch = torch.from_numpy(np.concatenate(images)).unsqueeze(1)
    return sources, (batch - saved.mean) / saved.std


@torch.inference_mode()
def predict(saved: SavedModel, paths: list[Path], top: int = 1, dataset: str | None = None) -> list[Prediction]:
    """Class probabilities of each image, the `top` most likely first."""
    if dataset is not None and dataset != saved.spec.dataset:
        raise BadInput(f"the model {saved.origin} was trained on '{saved.spec.dataset}', not '{dataset}'",
                       f"use a model trained on {dataset}, or leave out --dataset")
    if not 1 <= top <= 10:
        raise BadInput(f"--top {top} is out of range", "use 1 to 10")
    sources, batch = load_inputs(paths, saved)
    model = saved.build()
    probabilities = torch.softmax(model(batch).float(), dim=1)
    values, classes = probabilities.topk(top, dim=1)
    return [Prediction(src, [(int(c), float(v)) for c, v in zip(cs, vs)])
            for src, cs, vs in zip(sources, classes.tolist(), values.tolist())]
