"""`mnistbench run`, `results` and `report`: experiments, their stored results, and the report."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
