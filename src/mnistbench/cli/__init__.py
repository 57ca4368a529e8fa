"""The command line: Typer commands that parse, call `mnistbench.api`, and print."""

from .app import main

__all__ = ["main"]
