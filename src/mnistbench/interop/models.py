"""Saved models: the trained weights with the spec and the input statistics beside them, written atomically,
and found again from a checkpoint path or EXPERIMENT:LABEL[:SEED] in a results folder."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.models import MODELS, build_model
from ..core.spec import TrialSpec
from ..errors import BadInput
from ..files import write_atomic

FORMAT = "mnistbench-model/1"
MODELS_DIR = "models"  # inside a results folder: models/EXPERIMENT/SPEC_ID-ATTEMPT.pt


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


def keep(results_dir: Path, experiment: str, spec_id: str, data: bytes) -> tuple[str, str]:
    """Write a trial's model under a new name (an earlier attempt's file stays valid until the store row
    moves to this one); returns (path relative to the results folder, sha256) for the store."""
    relative = Path(MODELS_DIR) / experiment / f"{spec_id}-{uuid.uuid4().hex[:8]}.pt"
    return relative.as_posix(), write_atomic(Path(results_dir) / relative, data)


def forget_others(results_dir: Path, kept: str) -> None:
    """After the store names `kept`, files of other attempts of the same trial are leftovers: remove them."""
    path = Path(results_dir) / kept
    spec_id = path.name.rsplit("-", 1)[0]
    for other in path.parent.glob(f"{spec_id}-*.pt"):
        if other != path:
            other.unlink(missing_ok=True)


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
        spec = TrialSpec(**json.loads(blob["spec"]))
        if model is not None and model != spec.model:
            raise BadInput(f"{path} holds a '{spec.model}' model, not '{model}'", "leave out --model")
        return SavedModel(spec, blob["mean"], blob["std"], blob["state_dict"], str(path))
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


def resolve_model(ref: str, results_dir: Path | str, model: str | None = None,
                  dataset: str | None = None) -> SavedModel:
    """MODEL as the user gives it: a file path, or EXPERIMENT:LABEL[:SEED] (default: the lowest kept seed)."""
    if Path(ref).exists() or ":" not in ref:
        return load_file(Path(ref), model, dataset)
    from ..run.store import ResultStore

    experiment, _, rest = ref.partition(":")
    label, seed = rest, None
    head, _, tail = rest.rpartition(":")
    if head and tail.isdigit():
        label, seed = head, int(tail)
    store = ResultStore(results_dir, readonly=True)
    try:
        kept = store.kept_models(experiment, label)
        labels = store.labels_with_models(experiment)
    finally:
        store.close()
    if not kept:
        raise BadInput(f"no kept model for '{label}' in experiment '{experiment}' ({results_dir})",
                       f"kept: {', '.join(labels)}" if labels else
                       f"run `mnistbench run {experiment} --keep-models --rerun` to keep the trained models")
    chosen = next((k for k in kept if k[0] == seed), None) if seed is not None else kept[0]
    if chosen is None:
        raise BadInput(f"no kept model for '{label}' seed {seed}", f"kept seeds: {', '.join(str(k[0]) for k in kept)}")
    path = Path(results_dir) / chosen[1]
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != chosen[2]:
        raise BadInput(f"the model file of {ref} is missing or does not match the store",
                       f"rerun that trial: `mnistbench run {experiment} --keep-models --rerun`")
    saved = load_file(path, model, dataset)
    saved.origin = f"{experiment}:{label}:{chosen[0]}"
    return saved
