"""`mnistbench train`: one trial from flags, with live progress, a result table and optional saves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .console import console, table
from ..errors import ConfigError


def parse_assignments(pairs: list[str], flag: str) -> dict:
    """KEY=VALUE options; VALUE read as JSON when it parses (0.9, true, [0.9, 0.99]), else as text."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'", f"for example {flag} weight_decay=0.0005")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def result_rows(result) -> list[tuple[str, str]]:
    fmt = lambda v, f: "-" if v is None else format(v, f)
    return [
        ("status", result.status),
        ("final test accuracy", fmt(result.final_accuracy, ".4f")),
        ("final test loss", fmt(result.final_loss, ".4f")),
        (f"time to {result.spec.target:.0%} ({result.spec.eval_on})", fmt(result.time_to_target_s, ".2f") + " s"),
        ("steps / epochs to target", f"{fmt(result.steps_to_target, 'd')} / {fmt(result.epochs_to_target, '.2f')}"),
        ("timed training", f"{result.train_seconds:.2f} s for {result.steps} steps"),
        ("untimed evaluation", f"{result.eval_seconds:.2f} s over {len(result.curve)} evaluations"),
        ("data loading (excluded)", f"{result.load_seconds:.2f} s"),
        ("compile warm-up (excluded)", f"{result.compile_seconds:.2f} s"),
        ("device", result.device),
    ]


def train(
    dataset: str = typer.Option("mnist", help="mnist, fashion-mnist or idx:PATH"),
    model: str = typer.Option("seed-simple", help="see `mnistbench list models`"),
    optimizer: str = typer.Option("sgd", help="see `mnistbench list optimizers`"),
    lr: float = typer.Option(0.01, help="learning rate (the peak for one-cycle)"),
    momentum: Optional[float] = typer.Option(None, help="momentum (sgd, rmsprop)"),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (sgd)"),
    weight_decay: Optional[float] = typer.Option(None, help="weight decay"),
    opt: List[str] = typer.Option([], "--opt", help="other optimizer option KEY=VALUE (repeatable)"),
    schedule: str = typer.Option("constant", help="see `mnistbench list schedules`"),
    sched: List[str] = typer.Option([], "--sched", help="schedule option KEY=VALUE (repeatable)"),
    batch_size: int = typer.Option(128, help="training batch size"),
    epochs: Optional[float] = typer.Option(1.0, help="budget in epochs"),
    steps: Optional[int] = typer.Option(None, help="budget in steps (overrides --epochs)"),
    target: float = typer.Option(0.97, help="target accuracy in (0, 1]"),
    stop_at_target: bool = typer.Option(False, help="stop as soon as the target is reached"),
    eval_every: Optional[int] = typer.Option(None, help="steps between evaluations (default: 10 per epoch)"),
    eval_on: str = typer.Option("test", help="split the target is checked on: test or val"),
    val_size: int = typer.Option(0, help="training images held out as a validation split"),
    precision: str = typer.Option("fp32", help="fp32 or bf16 (autocast)"),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--nchw",
                                                 help="memory layout (default: the model's measured best)"),
    label_smoothing: float = typer.Option(0.0, help="label smoothing of the loss"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile (warm-up excluded, reported)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps"),
    seed: int = typer.Option(0, help="random seed"),
    save_json: Optional[Path] = typer.Option(None, help="write the result (spec, curve, environment) as JSON"),
    save_checkpoint: Optional[Path] = typer.Option(None, help="write the trained model's state_dict"),
):
    """Train one model and measure time to target, with evaluation excluded from the clock."""
    from ..data import load
    from .progress import TrialBar, live_bars
    from ..core.spec import make_spec
    from ..core.trial import run_trial

    optimizer_args = parse_assignments(opt, "--opt")
    optimizer_args.update({k: v for k, v in
                           {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}.items()
                           if v is not None})
    spec = make_spec(dataset=dataset, model=model, optimizer=optimizer, lr=lr, optimizer_args=optimizer_args,
                     schedule=schedule, schedule_args=parse_assignments(sched, "--sched"), batch_size=batch_size,
                     epochs=epochs, steps=steps, target=target, stop_at_target=stop_at_target,
                     eval_every=eval_every, eval_on=eval_on, val_size=val_size, precision=precision,
                     channels_last=channels_last, label_smoothing=label_smoothing, threads=threads,
                     compile=compile, device=device, seed=seed)
    data = load(dataset, val_size=val_size)
    console.print(f"{dataset}: {len(data.train)} training images loaded in {data.load_seconds:.2f} s "
                  f"(from {data.source}; not timed)", highlight=False)
    with live_bars() as bars:
        bar = TrialBar(bars, f"{model} {optimizer}")
        result = run_trial(spec, data, progress=bar)
        bar.close()
    console.print(table(f"{model} + {optimizer} (lr {lr}), batch {batch_size}, seed {seed}",
                        ["measure", "value"], result_rows(result)))
    if save_json:
        save_json.write_text(json.dumps(result.to_dict(), indent=1))
        console.print(f"result written to {save_json}")
    if save_checkpoint:
        import torch

        torch.save(result.model.state_dict(), save_checkpoint)
        console.print(f"checkpoint written to {save_checkpoint}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
