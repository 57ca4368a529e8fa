"""The package's dependencies flow one way (docs/ARCHITECTURE.md): the layers contract in pyproject.toml, checked
by import-linter over every import, those inside functions included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=src, env={"PYTHONPATH": str(src), "PATH": ""})


def test_dependencies_flow_one_way():
    proc = lint_imports(ROOT / "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_lazy_import_against_the_flow_breaks_the_contract(tmp_path):
    """A copy of the package with one import inside a function, from core up to run: the contract must fail."""
    shutil.copytree(ROOT / "src" / "mnistbench", tmp_path / "mnistbench", ignore=shutil.ignore_patterns("__pycache__"))
    trial = tmp_path / "mnistbench" / "core" / "trial.py"
    trial.write_text(trial.read_text() + "\n\ndef _sneaky():\n    from ..run.store import ResultStore\n\n"
                     "    return ResultStore\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0 and "mnistbench.core.trial -> mnistbench.run.store" in proc.stdout
