"""A saved model found again from what the user gives: a checkpoint path, or EXPERIMENT:LABEL[:SEED] in a
results folder (a model kept by `run --keep-models`, checked against the store's hash)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..core.checkpoint import SavedModel, load_file
from ..errors import BadInput


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
