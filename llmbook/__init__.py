"""llmbook — the package behind 《字字有据：从 n-gram 到中文 GPT 的可运行讲义》.

Every chapter of the book imports its code from here; the modules are small and named
after what they hold (``llmbook.datasets``, ``llmbook.models.ngram``, ``llmbook.models.gpt`` …).
Submodules are imported lazily, so ``import llmbook`` is fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from llmbook.utils import count_parameters, get_device, set_seed  # noqa: E402

__all__ = ["__version__", "set_seed", "get_device", "count_parameters", "setup_notebook", "glue"]


def setup_notebook(seed: int = 0) -> None:
    """One call at the top of every chapter: seed everything, Chinese fonts, quiet logs."""
    from llmbook.book.notebook import setup_notebook as _setup

    _setup(seed)


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Store ``value`` for ``{glue:}`name``` in the book's prose (no-op outside the build)."""
    from llmbook.book.notebook import glue as _glue

    return _glue(name, value, display)


def __getattr__(name: str) -> Any:  # lazy submodules: llmbook.models.ngram, llmbook.models, …
    try:
        return importlib.import_module(f"llmbook.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"llmbook.{name}":
            raise AttributeError(f"module 'llmbook' has no attribute {name!r}") from None
        raise
