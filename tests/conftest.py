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
