"""Checking helpers shared by the exercise modules of several chapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from llmbook.book.exercises import ExerciseFailure

Fn = Callable[..., Any]


def _expect_raises(
    fn: Callable[..., Any], args: tuple[Any, ...], err: type[Exception], case: str
) -> None:
    try:
        got = fn(*args)
    except err:
        return
    raise ExerciseFailure(f"{case}：应抛出 {err.__name__}，你的函数返回 {got!r}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, g: torch.Generator, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=g) * scale


def _tensor_close(
    got: Any, want: Tensor, case: str, *, atol: float = 1e-5, rtol: float = 1e-4
) -> None:
    """Fail with a Chinese message unless ``got`` is a tensor of ``want``'s shape and values."""
    if not isinstance(got, Tensor):
        raise ExerciseFailure(f"{case}：应返回一个张量，你的函数返回了 {type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        raise ExerciseFailure(
            f"{case}：应返回形状为 {tuple(want.shape)} 的张量，你的函数返回的形状是 "
            f"{tuple(got.shape)}"
        )
    g, w = got.detach().double(), want.detach().double()
    if not torch.isfinite(g).all():
        raise ExerciseFailure(f"{case}：结果里出现了 nan 或 inf（是不是数值溢出了？）")
    if not torch.allclose(g, w, atol=atol, rtol=rtol):
        diff = (g - w).abs().max().item()
        raise ExerciseFailure(f"{case}：结果与参考值不一致，最大相差 {diff:.3g}")


def _unroll_like_torch(fn: Fn, ref: torch.nn.RNNBase, xs: Tensor) -> None:
    """Unroll the reader's one-step ``fn`` with ``ref``'s weights; every step must equal ``ref``."""
    name = f"torch.nn.{type(ref).__name__}"
    with torch.no_grad():
        out, _ = ref(xs)
        h = torch.zeros(xs.shape[0], ref.hidden_size)
        for t in range(xs.shape[1]):
            h = fn(xs[:, t], h, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)
            _tensor_close(h, out[:, t], f"与 {name} 比较，第 {t + 1} 步")
