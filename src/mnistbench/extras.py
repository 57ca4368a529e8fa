"""Optional integrations: import one, or say in one line which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import BadInput


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import `module` or raise BadInput naming the pip extra (`mnistbench[extra]`) that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BadInput(f"{what} needs the '{module.split('.')[0]}' package, which is not installed",
                       f"pip install 'mnistbench[{extra}]'") from None
