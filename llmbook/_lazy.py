"""Lazy submodule access for the package and its subpackages.

``llmbook.models.gpt`` works after a bare ``import llmbook``: each package's
``__getattr__`` imports the submodule on first use, so ``import llmbook`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_submodules(package: str) -> Callable[[str], Any]:
    """Return a module-level ``__getattr__`` that imports ``package.<name>`` on demand."""

    def __getattr__(name: str) -> Any:
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{package}.{name}":
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
            raise

    return __getattr__
