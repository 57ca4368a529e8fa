"""The documentation says only what is true of the code: every test the guarantees page cites exists, the pages
the site's navigation names exist, and the README stays a front page (its details live in docs/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _test_names() -> set[str]:
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return names


def test_every_test_the_guarantees_page_cites_exists():
    cited = set(re.findall(r"`(test_\w+)`", (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")))
    assert len(cited) > 100  # the page is the catalogue of promises, each with its tests
    missing = sorted(cited - _test_names())
    assert not missing, f"the guarantees page cites tests that do not exist: {missing}"


def test_the_site_navigation_names_pages_that_exist():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert "index.md" in nav and "cli.md" in nav and "api.md" in nav
    assert [page for page in nav if not (ROOT / "docs" / page).exists()] == []


def test_the_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", text)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
