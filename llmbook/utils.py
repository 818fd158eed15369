"""Small helpers every chapter uses: seeding, device selection, timing."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["set_seed", "get_device", "Timer", "timer", "count_parameters", "progress_bar"]


def set_seed(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so that runs repeat exactly.

    With ``deterministic=True`` PyTorch is also asked to use deterministic kernels
    where it has them (``warn_only`` so that ops without one still run); this switch is
    process-wide.  ``PYTHONHASHSEED`` (the salt of ``hash(str)``) is not set: it is read
    once when the interpreter starts, so setting it in a running process has no effect.
    Export it before starting Python (the Makefile exports ``PYTHONHASHSEED=0``).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the compute device: CUDA, then Apple MPS, then CPU.

    ``prefer`` (``"cuda"``, ``"mps"``, ``"cpu"``) forces a choice and raises a clear
    error if that device is not available here.
    """
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if prefer is not None:
        key = prefer.split(":")[0]
        if key not in available:
            raise ValueError(f"unknown device {prefer!r}: use 'cuda', 'mps' or 'cpu'")
        if not available[key]:
            raise RuntimeError(
                f"device {prefer!r} was requested but is not available on this machine; "
                "use device='cpu' or leave it unset to choose automatically"
            )
        return torch.device(prefer)
    for key in ("cuda", "mps"):
        if available[key]:
            return torch.device(key)
    return torch.device("cpu")


class Timer:
    """Wall-clock timer: ``with Timer() as t: ...; t.seconds``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


@contextmanager
def timer() -> Iterator[Timer]:
    """Context-manager form of :class:`Timer`."""
    t = Timer()
    with t:
        yield t


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of ``model``; tied weights are counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` progress bar that refreshes at most every ``TQDM_MININTERVAL`` seconds.

    The interval is read when the bar is made (tqdm itself reads the variable only when
    it is imported); :func:`llmbook.setup_notebook` sets it to 2 s, because a saved
    notebook keeps every refresh of a bar as an output.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", float(os.environ.get("TQDM_MININTERVAL", "0.1")))
    return tqdm(iterable, **kwargs)
