"""Shared test settings: headless matplotlib, quiet jieba, bounded threads."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import torch  # noqa: E402

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
