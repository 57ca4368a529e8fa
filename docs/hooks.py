"""MkDocs hooks: the site's home page is the README (one text, two places), and the CLI reference is generated
from the Typer app at build time, so neither can drift from what it documents."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def readme_as_home() -> str:
    """README.md with its links and pictures made relative to docs/ (the README links into docs/ from the root)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/", "](", text)


def cli_reference() -> str:
    """`mnistbench COMMAND --help` for every command, in the order the app lists them."""
    from typer.testing import CliRunner

    from mnistbench.cli.app import full_app

    app = full_app()
    env = {**os.environ, "COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"}
    runner = CliRunner()
    commands = [[c.name or c.callback.__name__.replace("_", "-")] for c in app.registered_commands]
    for group in app.registered_groups:
        commands.append([group.name])
        commands += [[group.name, c.name or c.callback.__name__] for c in group.typer_instance.registered_commands]
    out = ["# CLI reference", "",
           "Generated from the command-line app when the site is built (`docs/hooks.py`), so it is always the help "
           "the installed `mnistbench` prints.", ""]
    for words in [[]] + commands:
        result = runner.invoke(app, [*words, "--help"], prog_name="mnistbench", env=env)
        if result.exit_code != 0:
            raise RuntimeError(f"mnistbench {' '.join(words)} --help failed: {result.output}")
        out += [f"## mnistbench {' '.join(words)}".rstrip(), "", "```text", result.output.rstrip(), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "index.md":
        return readme_as_home()
    if page.file.src_uri == "cli.md":
        return cli_reference()
    return markdown
