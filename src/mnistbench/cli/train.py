"""`mnistbench train`: one trial from flags, with live progress, a result table and optional saves."""

from __future__ import annotations

import inspect
import json
import tempfile
import uuid
from pathlib import Path
from types import UnionType
from typing import Any, List, Literal, Optional, Union, get_args, get_origin

import typer

from .console import console, table
from ..errors import BadInput, ConfigError


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
        ("target resolved to", "-" if result.target_resolution_steps is None else
         f"{result.target_resolution_steps} steps / {result.target_resolution_s:.3f} s"),
        ("timed training", f"{result.train_seconds:.2f} s for {result.steps} steps"),
        ("untimed evaluation", f"{result.eval_seconds:.2f} s over {result.evaluations or len(result.curve)} evaluations"),
        ("data loading (excluded)", f"{result.load_seconds:.2f} s"),
        ("compile warm-up (excluded)", f"{result.compile_seconds:.2f} s"),
        ("warm-up (excluded)", f"{result.warmup_seconds:.2f} s"),
        ("device", result.device),
    ]


# Help for the TrialSpec fields that carry no description of their own; a field with a description needs
# nothing here, and a new field gets its option without any edit.
FIELD_HELP = {
    "dataset": "mnist, fashion-mnist or idx:PATH",
    "model": "see `mnistbench list models`",
    "optimizer": "see `mnistbench list optimizers`",
    "optimizer_args": "other optimizer option KEY=VALUE (repeatable)",
    "schedule": "see `mnistbench list schedules`",
    "schedule_args": "schedule option KEY=VALUE (repeatable)",
    "batch_size": "training batch size",
    "stop_at_target": "stop as soon as the target is reached",
    "eval_on": "split the target is checked on",
    "val_size": "training images held out as a validation split",
    "eval_batch_size": "batch size of the (untimed) evaluations",
    "precision": "autocast precision",
    "channels_last": "channels-last memory layout",
    "label_smoothing": "label smoothing of the loss",
    "threads": "CPU threads for torch",
    "compile": "torch.compile (warm-up excluded, reported)",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "seed": "random seed",
}
# Dict fields are given as repeatable KEY=VALUE options, under the short names users know.
DICT_FLAGS = {"optimizer_args": "--opt", "schedule_args": "--sched"}
# Shortcuts into optimizer_args, for the options most recipes set.
OPTIMIZER_SHORTCUTS = {
    "momentum": (Optional[float], typer.Option(None, help="momentum (sgd, rmsprop)")),
    "nesterov": (Optional[bool], typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (sgd)")),
    "weight_decay": (Optional[float], typer.Option(None, help="weight decay")),
}
OUTPUTS = {
    "save_json": (Optional[Path], typer.Option(None, help="write the result (spec, curve, environment) as JSON")),
    "save_checkpoint": (Optional[Path], typer.Option(None, help="write the trained model with its spec and "
                                                     "normalization, for predict and export")),
}


def _field_option(name: str, field) -> tuple[Any, Any]:
    """(type, typer.Option) for one TrialSpec field; None as default means "the spec's default"."""
    flag = "--" + name.replace("_", "-")
    help_text = field.description or FIELD_HELP.get(name, f"TrialSpec field {name}")
    if name in DICT_FLAGS:
        return List[str], typer.Option([], DICT_FLAGS[name], metavar="KEY=VALUE", help=help_text)
    kind = field.annotation
    if get_origin(kind) in (Union, UnionType):  # Optional[X]: the CLI's None already means "default"
        members = [a for a in get_args(kind) if a is not type(None)]
        kind = members[0] if len(members) == 1 else str  # X | Y: text, read as JSON when it parses
    metavar = None
    if get_origin(kind) is Literal:
        metavar = "|".join(map(str, get_args(kind)))
        kind = type(get_args(kind)[0])
    if kind not in (bool, int, float, str):
        kind = str  # anything else (a list, a tuple) is read as JSON, as --opt values are
    default = field.get_default(call_default_factory=True)
    if default is not None:  # shown from the spec, never restated
        help_text += f"  [default: {('on' if default else 'off') if kind is bool else default}]"
    names = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
    return Optional[kind], typer.Option(None, *names, help=help_text, metavar=metavar, show_default=False)


def _signature() -> tuple[inspect.Signature, dict[str, Any]]:
    from ..core.spec import TrialSpec

    params = []
    for name, field in TrialSpec.model_fields.items():
        kind, option = _field_option(name, field)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
        if name == "optimizer_args":
            params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=k)
                       for n, (k, o) in OPTIMIZER_SHORTCUTS.items()]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=k)
               for n, (k, o) in OUTPUTS.items()]
    annotations = {p.name: p.annotation for p in params}
    return inspect.Signature(params, return_annotation=None), {**annotations, "return": None}


def spec_fields(options: dict[str, Any]) -> dict[str, Any]:
    """TrialSpec fields from the parsed options: only those given (the spec owns every default)."""
    from ..core.spec import TrialSpec

    fields = {}
    for name, field in TrialSpec.model_fields.items():
        value = options.get(name)
        if name in DICT_FLAGS:
            value = parse_assignments(value or [], DICT_FLAGS[name]) or None
        elif isinstance(value, str) and field.annotation not in (str, Optional[str]) and \
                get_origin(field.annotation) is not Literal:
            try:  # a field of another type (a list, a tuple) given as JSON text
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if value is not None:
            fields[name] = value
    shortcuts = {k: options.get(k) for k in OPTIMIZER_SHORTCUTS if options.get(k) is not None}
    if shortcuts:
        fields["optimizer_args"] = {**fields.get("optimizer_args", {}), **shortcuts}
    return fields


def train(**options: Any) -> None:
    """Train one model and measure time to target, with evaluation excluded from the clock."""
    from .. import api
    from ..core.spec import make_spec
    from ..core.trial import run_trial
    from ..data import load
    from .progress import TrialBar, live_bars

    spec = make_spec(**spec_fields(options))
    save_json, save_checkpoint = options.get("save_json"), options.get("save_checkpoint")
    api.check([spec], outputs=[save_json, save_checkpoint])  # nothing trains unless all of it can be done
    data = load(spec.dataset, val_size=spec.val_size)
    console.print(f"{spec.dataset}: {len(data.train)} training images loaded in {data.load_seconds:.2f} s "
                  f"(from {data.source}; not timed)", highlight=False)
    with live_bars() as bars:
        bar = TrialBar(bars, f"{spec.model} {spec.optimizer}")
        result = run_trial(spec, data, progress=bar)
        bar.close()
    console.print(table(f"{spec.model} + {spec.optimizer} (lr {spec.lr}), batch {spec.batch_size}, seed {spec.seed}",
                        ["measure", "value"], result_rows(result)))
    if save_json:
        _save(save_json, json.dumps(result.to_dict(), indent=1).encode(), "result")
    if save_checkpoint:
        from ..core.checkpoint import to_bytes

        # The same self-describing file as `run --keep-models` (weights, spec, normalization; loadable with
        # weights_only=True), so `predict m.pt` and `export m.pt` need no --model.
        _save(save_checkpoint, to_bytes(result.model, spec, data.mean, data.std), "checkpoint")


def _save(path: Path, content: bytes, what: str) -> None:
    """Write what a finished run produced, whole or not at all. The folder is made again if it went away while
    training ran; if it cannot be written at all, the file goes to the temporary folder instead of being lost,
    and the line says where."""
    from ..files import write_atomic

    try:
        write_atomic(path, content)
        console.print(f"{what} written to {path}")
    except OSError as exc:
        rescued = Path(tempfile.gettempdir()) / f"mnistbench-{what}-{uuid.uuid4().hex[:8]}{path.suffix}"
        write_atomic(rescued, content)
        raise BadInput(f"cannot write the {what} to {path} ({exc.strerror or exc}); it was saved to {rescued}",
                       "copy it from there, or pass a writable path next time") from None


def register(app: typer.Typer) -> None:
    train.__signature__, train.__annotations__ = _signature()
    app.command("train")(train)
