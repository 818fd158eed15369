"""Checking helpers shared by the chapter-2 exercise modules."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmbook.book.exercises import ExerciseFailure
from llmbook.book.exercises._common import _expect_raises  # noqa: F401


def _pair(got: Any, case: str, what: str) -> tuple[Any, Any]:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise ExerciseFailure(f"{case}：应返回二元组 {what}，你的函数返回 {got!r}")
    return got[0], got[1]


# ---------------------------------------------------------------------- 2.1 几类模型


class _TwoCharTokenizer:
    """检查用的小分词器：每两个字一个词元，词表之外的两字片段是 <unk>。"""

    unk_id = 1
    pieces = ("人民", "日报", "中国", "经济")

    @property
    def vocab_size(self) -> int:
        return 4 + len(self.pieces)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        chunks = [text[i : i + 2] for i in range(0, len(text), 2)]
        return [4 + self.pieces.index(c) if c in self.pieces else self.unk_id for c in chunks]


def _analogy_space() -> dict[str, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(2)
    words = [f"词{i}" for i in range(40)]
    vecs = rng.normal(size=(40, 6)) * rng.uniform(0.2, 5.0, size=(40, 1))
    return dict(zip(words, vecs))
