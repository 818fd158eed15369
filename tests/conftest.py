"""Shared test settings (headless matplotlib, quiet jieba, bounded threads) and builders.

* :func:`tiny_gpt` — the one factory for the small seeded GPTs the tests use
  (``from conftest import tiny_gpt``; ``tests/`` is on ``sys.path``).
* ``one_thread`` — a fixture that runs a test on one torch thread and restores the count;
  a module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

if TYPE_CHECKING:
    from llmbook.models.gpt import GPT
    from llmbook.text.tokenizers import CharTokenizer

torch.set_num_threads(min(2, os.cpu_count() or 1))

try:
    import jieba

    jieba.setLogLevel(logging.WARNING)
except ImportError:  # pragma: no cover
    pass

import netguard  # noqa: E402  (tests/ is on sys.path: pytest's rootdir conftest)


def pytest_configure(config: object) -> None:
    """Offline for the whole session: only loopback is reachable (see llmbook.book.offline)."""
    netguard.install()


def pytest_unconfigure(config: object) -> None:
    netguard.uninstall()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for this test (restored afterwards).

    Tiny models run faster on one thread than on two and are immune to a busy machine.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(vocab_size=24, block_size=16, n_layer=1, n_head=2, n_embd=16)
"""The default :class:`~llmbook.models.gpt.GPTConfig` fields of :func:`tiny_gpt`."""


@overload
def tiny_gpt(
    *, texts: None = None, seed: int = 0, scale: float = 1.0, noise: float = 0.0, **config: Any
) -> GPT: ...
@overload
def tiny_gpt(
    *, texts: Sequence[str], seed: int = 0, scale: float = 1.0, noise: float = 0.0, **config: Any
) -> tuple[GPT, CharTokenizer]: ...
def tiny_gpt(
    *,
    texts: Sequence[str] | None = None,
    seed: int = 0,
    scale: float = 1.0,
    noise: float = 0.0,
    **config: Any,
) -> GPT | tuple[GPT, CharTokenizer]:
    """A small GPT built right after ``torch.manual_seed(seed)``, in eval mode.

    ``config`` overrides :data:`TINY` (e.g. ``n_layer=2, dropout=0.1``).  With ``texts`` the
    result is ``(model, CharTokenizer.fit(texts))`` and ``vocab_size`` is the tokenizer's.
    ``scale`` multiplies every weight (large weights give peaky, varied next-token
    distributions that expose decoding bugs); ``noise`` then adds ``noise * N(0, 1)`` to
    every weight, drawn from the same seeded stream (no bias stays 0: conversion tests).
    Training code switches the model to train mode itself.
    """
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.text.tokenizers import CharTokenizer

    tok = None if texts is None else CharTokenizer.fit(texts)
    cfg = dict(TINY, **config)
    if tok is not None:
        cfg["vocab_size"] = tok.vocab_size
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if scale != 1.0:
                p.mul_(scale)
            if noise:
                p.add_(noise * torch.randn_like(p))
    return model if tok is None else (model, tok)
