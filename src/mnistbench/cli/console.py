"""Terminal output: one Rich console, tables from rows, and progress that degrades to plain lines."""

from __future__ import annotations

import sys
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Off a terminal (CI logs, pipes) Rich would wrap tables at 80 columns; logs read better wide.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 240)


def table(title: str | None, columns: list[str], rows: Iterable[Iterable[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in row))  # plain text: a '[optim]' is no markup
    return t


def interactive() -> bool:
    return sys.stdout.isatty() and console.is_terminal
