"""`mnistbench predict`, `export` and `export-results`: use a trained model, and put results elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .console import console, table

ResultsDir = typer.Option(Path("mnistbench-results"), "--results", help="Results folder (one SQLite store).")
ModelRef = typer.Argument(..., help="a checkpoint (.pt) or EXPERIMENT:LABEL[:SEED] kept by `run --keep-models`")
Arch = typer.Option(None, "--model", help="the model of a bare state_dict (train --save-checkpoint)")


def predict(
    model: str = ModelRef,
    images: List[Path] = typer.Argument(..., help="PNG / JPEG files (any size, either polarity) or IDX files"),
    top: int = typer.Option(1, help="how many classes to show per image, most likely first"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
    dataset: Optional[str] = typer.Option(None, help="check that the model was trained on this dataset"),
    arch: Optional[str] = Arch,
    results_dir: Path = ResultsDir,
):
    """Classify images with a trained model; pictures are prepared as MNIST's digits were."""
    from .. import api
    from ..errors import BadInput

    if fmt not in ("table", "json"):
        raise BadInput(f"unknown format '{fmt}'", "use table or json")
    predictions = api.predict(model, images, top, results_dir, arch, dataset)
    if fmt == "json":
        typer.echo(json.dumps([{"image": p.source, "top": [{"class": c, "probability": v} for c, v in p.top]}
                               for p in predictions], indent=1))
        return
    heads = ["image", "class", "probability"] + [h for i in range(2, top + 1) for h in (f"#{i}", "p")]
    console.print(table(f"predictions of {model}", heads,
                        [(p.source, *(x for c, v in p.top for x in (c, f"{v:.4f}"))) for p in predictions]))


def export(
    model: str = ModelRef,
    fmt: str = typer.Option("onnx", "--format", help="onnx or pt2 (torch.export)"),
    out: Optional[Path] = typer.Option(None, "--out", help="output file (default: MODEL-DATASET.onnx / .pt2)"),
    arch: Optional[str] = Arch,
    results_dir: Path = ResultsDir,
):
    """Export a trained model as ONNX or a torch.export program, with a dynamic batch size."""
    from .. import api
    from ..interop.lookup import resolve_model

    path = api.export_model(model, fmt, out, results_dir, arch)
    saved = resolve_model(model, results_dir, arch)
    console.print(f"{fmt} written: {path} (input: float32 N x 1 x 28 x 28, normalized with mean "
                  f"{saved.mean:.4f} and std {saved.std:.4f}; output: logits)", highlight=False)


def export_results(
    experiment: str = typer.Argument(..., help="experiment name"),
    dest: Optional[str] = typer.Argument(None, help="tensorboard: the folder (default RESULTS/tensorboard)"),
    to: str = typer.Option(..., "--to", help="mlflow or tensorboard"),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI, e.g. sqlite:///mlflow.db "
                                               "(default: MLflow's own, MLFLOW_TRACKING_URI)"),
    results_dir: Path = ResultsDir,
):
    """Stored trials into MLflow (one run per trial) or TensorBoard (curves + HParams); idempotent."""
    from .. import api
    from ..errors import BadInput
    from ..interop.destinations import DESTINATIONS

    destination = DESTINATIONS.get(to)
    if to == "mlflow" and dest is not None:
        raise BadInput(f"'{dest}': MLflow takes no folder", "pass --tracking-uri URI instead")
    if to != "mlflow" and tracking_uri is not None:
        raise BadInput(f"--tracking-uri is for MLflow, not {to}", f"pass the {destination.target} as an argument")
    done = api.export_results(experiment, to, tracking_uri if to == "mlflow" else dest, results_dir)
    console.print(f"{experiment} -> {to} ({done.where}): {done.added} trials written, {done.already} were "
                  "there already", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("export")(export)
    app.command("export-results")(export_results)
