"""Checkpoint files that describe themselves: the trained weights with the spec and the input statistics beside
them, as plain tensors and strings (loadable with weights_only=True), and read back from a path."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import BadInput
from .models import MODELS, build_model
from .spec import TrialSpec

FORMAT = "mnistbench-model/1"


@dataclass
class SavedModel:
    """Weights plus what is needed to use them: the spec (model name, dataset) and the normalization."""

    spec: TrialSpec
    mean: float
    std: float
    state_dict: dict[str, torch.Tensor]
    origin: str  # the path or reference it was read from, for messages

    def build(self) -> nn.Module:
        model = build_model(self.spec.model)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise BadInput(f"{self.origin} does not hold weights of model '{self.spec.model}' "
                           f"({str(exc).splitlines()[0]})", "pass the --model it was trained with") from None
        return model.eval()


def to_bytes(model: nn.Module, spec: TrialSpec, mean: float, std: float) -> bytes:
    """The saved-model file's content. Plain tensors and strings only, so it loads with weights_only=True
    (no pickled code runs when a file is read) and travels back from any executor as bytes."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "spec": json.dumps(spec.model_dump(mode="json")), "mean": float(mean),
                "std": float(std), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
               buffer)
    return buffer.getvalue()


def _described(blob: dict, path: Path) -> SavedModel:
    """A model file's own description, checked whole: a file that says it is ours but whose spec, statistics or
    weights do not read as such (damaged, or written by hand to mislead) is refused in one line."""
    try:
        spec = TrialSpec(**json.loads(blob["spec"]))
        mean, std = float(blob["mean"]), float(blob["std"])
        state = blob["state_dict"]
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError("normalization")
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise ValueError("weights")
    except Exception as exc:  # noqa: BLE001 - a missing key, bad JSON, a bad spec: one answer for the user
        raise BadInput(f"{path} says it is a mnistbench model, but its description does not read "
                       f"({type(exc).__name__})", "write it again with run --keep-models or train "
                       "--save-checkpoint") from None
    return SavedModel(spec, mean, std, state, str(path))


def load_file(path: Path, model: str | None = None, dataset: str | None = None) -> SavedModel:
    """A saved model, or a bare state_dict (`train --save-checkpoint`), which needs the model's name."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadInput(f"no model file {path}", "pass a checkpoint path or EXPERIMENT:LABEL[:SEED]") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same answer for the user
        raise BadInput(f"cannot read {path} as a model ({type(exc).__name__})",
                       "pass a .pt written by mnistbench (run --keep-models or train --save-checkpoint)") from None
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        saved = _described(blob, path)
        if model is not None and model != saved.spec.model:
            raise BadInput(f"{path} holds a '{saved.spec.model}' model, not '{model}'", "leave out --model")
        return saved
    if isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values()):
        if model is None:
            raise BadInput(f"{path} is a bare state_dict: it does not say which model it is",
                           f"pass --model NAME (one of: {', '.join(MODELS.names())})")
        from ..data import resolve

        name = dataset or "mnist"
        mean_std = resolve(name).mean_std
        if mean_std is None:
            raise BadInput(f"the statistics of dataset '{name}' are not known without its training split",
                           "use a model kept by `run --keep-models`, which carries them")
        spec = TrialSpec(model=model, dataset=name)
        return SavedModel(spec, *mean_std, blob, str(path))
    raise BadInput(f"{path} is not a mnistbench model", "pass a .pt written by run --keep-models or train")
