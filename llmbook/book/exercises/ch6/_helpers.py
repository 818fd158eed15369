"""Checking helpers shared by the chapter-6 exercise modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmbook.book.exercises import ExerciseFailure

Fn = Callable[..., Any]


def _pair(got: Any, case: str) -> tuple[Any, Any]:
    """``got`` as a pair ``(a, b)``, or a Chinese failure saying a pair was expected."""
    if isinstance(got, (tuple, list)) and len(got) == 2:
        return got[0], got[1]
    raise ExerciseFailure(f"{case}：应返回一个二元组 (…, …)，你的函数返回 {got!r}")


def _ints(got: Any, case: str) -> list[int]:
    try:
        return [int(v) for v in got]
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个整数列表，你的函数返回 {got!r}") from None


def _floats(got: Any, case: str) -> list[float]:
    try:
        return [float(v) for v in got]
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个数的列表，你的函数返回 {got!r}") from None


def _tensor(got: Any, case: str, dtype: Any = None) -> Any:
    import torch

    try:
        t = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        raise ExerciseFailure(f"{case}：应返回一个张量（或数组），你的函数返回 {got!r}") from None
    return t.to(dtype) if dtype is not None else t


# --------------------------------------------------------------------------- 6.1
