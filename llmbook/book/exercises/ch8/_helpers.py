"""Checking helpers shared by the chapter-8 exercise modules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from llmbook.book.exercises import ExerciseFailure, expect


def _raises(fn: Callable[..., Any], exc: type[BaseException], case: str, *args: Any) -> None:
    """Fail unless ``fn(*args)`` raises ``exc``."""
    try:
        fn(*args)
    except exc:
        return
    raise ExerciseFailure(f"{case}：应抛出 {exc.__name__}，你的函数没有抛出")


def _pair(got: Any, case: str) -> tuple[Any, Any]:
    """Unpack a returned pair, failing with a Chinese message if it is not one."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise ExerciseFailure(f"{case}：应返回两个数组成的元组，你的函数返回 {got!r}")
    return got[0], got[1]


def _array(got: Any, case: str) -> np.ndarray:
    """``got`` (tensor, array or nested list) as a float64 array, or a Chinese failure."""
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().double().numpy()
    try:
        if got is None:
            raise TypeError
        return np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个张量，你的函数返回 {got!r}") from None


def _expect_array(got: Any, want: np.ndarray, case: str, tol: float = 1e-6) -> None:
    arr = _array(got, case)
    expect(tuple(arr.shape), tuple(want.shape), f"{case}：形状")
    if not np.all(np.isfinite(arr)):
        raise ExerciseFailure(f"{case}：结果里有 nan 或 inf：{arr}")
    err = float(np.max(np.abs(arr - want))) if arr.size else 0.0
    if err > tol:
        raise ExerciseFailure(
            f"{case}：与正确结果的最大差为 {err:.3g}，应为\n{want}\n你的函数返回\n{arr}"
        )


# ---------------------------------------------------------------------------------------
# 8.1 研究成果总结


def _reference_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    t, d = q.shape
    scores = q @ k.T / math.sqrt(d)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)


def _random_maps(layers: int, heads: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, heads, t, t, generator=g, dtype=torch.float64) * 2
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(logits.masked_fill(mask, float("-inf")), dim=-1)
