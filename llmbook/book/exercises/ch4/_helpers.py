"""Checking helpers shared by the chapter-4 exercise modules."""

from __future__ import annotations

from typing import Any

from llmbook.book.exercises import ExerciseFailure
from llmbook.book.exercises._common import Fn, _gen, _randn, _tensor_close  # noqa: F401

# ------------------------------------------------------------------------ helpers


def _number(got: Any, case: str) -> float:
    try:
        return float(got)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ExerciseFailure(
            f"{case}：应返回一个数（或只有一个元素的张量），你的函数返回 {got!r:.80}"
        ) from e


# ----------------------------------------------------------------------- 4.1 model
