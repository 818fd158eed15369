"""Helpers for the chapter notebooks: one-line set-up and ``glue`` for numbers in prose."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from llmbook.utils import set_seed

__all__ = ["setup_notebook", "glue", "fmt"]


def setup_notebook(seed: int = 0) -> None:
    """Seed Python/NumPy/PyTorch, register a Chinese font for matplotlib, quiet jieba.

    Also fixes the figure size and resolution so that saved notebook outputs stay small
    and identical from run to run.  With ``LLMBOOK_OFFLINE=1`` in the environment (as in
    ``make chapters``) the kernel can then reach only 127.0.0.1 (:mod:`llmbook.book.offline`).
    """
    from llmbook.book.offline import install_if_requested

    install_if_requested()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # progress bars refresh every 2 s, not 10 times a second: a saved notebook keeps every
    # refresh as an output, and a one-minute training loop would store hundreds of them
    os.environ.setdefault("TQDM_MININTERVAL", "2")
    set_seed(seed)
    import matplotlib

    from llmbook.book.plot import setup_chinese_font

    matplotlib.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "svg.hashsalt": "llmbook",
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
        }
    )
    setup_chinese_font()
    _retina_figures()
    try:
        import jieba

        jieba.setLogLevel(logging.WARNING)
    except ImportError:  # pragma: no cover
        pass
    # tqdm.auto falls back to text bars when ipywidgets is absent; its warning is noise.
    warnings.filterwarnings("ignore", message="IProgress not found")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")


def _retina_figures() -> None:
    """Inline figures as 2x PNG (sharp on high-DPI screens, same size on the page)."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # pragma: no cover - not in a notebook kernel
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Save ``value`` under ``name`` for the book's ``{glue:}`name``` role.

    Uses ``myst_nb.glue`` when it is installed (the book build); elsewhere (Colab) it just
    returns the value, so notebooks run everywhere.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value, display=display)
    return value


def fmt(x: float, digits: int = 2) -> str:
    """Format a number for prose: fixed digits, thousands separators for big numbers."""
    if isinstance(x, int) or float(x).is_integer() and abs(x) >= 1000:
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"
