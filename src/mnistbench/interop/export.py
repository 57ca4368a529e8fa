"""Export a trained model: ONNX (torch.onnx, dynamo exporter) or a torch.export program (.pt2), both with a
dynamic batch dimension. The exported model takes normalized images, as in training; the normalization is
written into the ONNX file's metadata and printed, so a deployment can reproduce it."""

from __future__ import annotations

import logging
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import BadInput
from ..registry import Registry
from ..extras import require
from ..core.checkpoint import SavedModel

EXAMPLE_BATCH = 2  # a batch of 1 would let the exporter specialize the batch dimension away


def _example() -> torch.Tensor:
    return torch.zeros(EXAMPLE_BATCH, 1, 28, 28)


def _dynamic_batch() -> tuple[dict[int, object]]:
    return ({0: torch.export.Dim("batch", min=1, max=65536)},)


def _metadata(saved: SavedModel) -> dict[str, str]:
    return {"mnistbench.model": saved.spec.model, "mnistbench.dataset": saved.spec.dataset,
            "mnistbench.mean": repr(saved.mean), "mnistbench.std": repr(saved.std),
            "mnistbench.input": "float32 (N, 1, 28, 28): pixels / 255, minus mean, over std",
            "mnistbench.output": "logits (N, classes); softmax for probabilities"}


def export_onnx(saved: SavedModel, model: nn.Module, out: Path) -> None:
    require("onnxscript", "export", "ONNX export")  # torch.onnx's exporter needs it (and onnx)
    onnx = require("onnx", "export", "ONNX export")
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about every torchvision operator it skips: noise for a CNN
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(model, (_example(),), dynamic_shapes=_dynamic_batch(),
                                        input_names=["images"], output_names=["logits"], dynamo=True, verbose=False)
    finally:
        quiet.setLevel(level)
    program.optimize()
    proto = program.model_proto
    for key, value in _metadata(saved).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))


def export_pt2(saved: SavedModel, model: nn.Module, out: Path) -> None:
    program = torch.export.export(model, (_example(),), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(out), extra_files={k: v for k, v in _metadata(saved).items()})


@dataclass(frozen=True)
class ExportFormat:
    write: Callable[[SavedModel, nn.Module, Path], None]
    suffix: str
    description: str


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")
EXPORT_FORMATS.add("onnx", ExportFormat(export_onnx, ".onnx", "ONNX (onnxruntime and others); extra [export]"))
EXPORT_FORMATS.add("pt2", ExportFormat(export_pt2, ".pt2", "torch.export program (torch.export.load)"))


def export_model(saved: SavedModel, fmt: str, out: Path | None = None) -> Path:
    """Write `saved` in format `fmt`; `out` defaults to the model's name beside the working folder."""
    entry = EXPORT_FORMATS.get(fmt)
    out = Path(out) if out else Path(f"{saved.spec.model}-{saved.spec.dataset.replace(':', '_').replace('/', '_')}"
                                      f"{entry.suffix}")
    if out.is_dir():
        raise BadInput(f"{out} is a folder", f"pass a file name ending in {entry.suffix}")
    try:  # a missing folder is made; one that cannot be (a file in the way, no permission) is bad input
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror} ({exc.filename})",
                       "choose a path in a folder you can write to") from None
    # Written beside its place and renamed over it: a failure leaves the old file (if any) whole, never half a model.
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}{out.suffix}")
    try:
        entry.write(saved, saved.build(), tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc.strerror or exc}", "choose a path with room you can write to") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
