r"""The two pieces every training loop of the book shares: the learning-rate schedule and the step.

* :func:`warmup_cosine` — linear warm-up, then cosine decay to ``min_lr``:

  .. math:: \eta_t = \eta_{\min} + \tfrac12(\eta - \eta_{\min})
            \Big(1+\cos\big(\pi\,\tfrac{t-w}{S-w}\big)\Big)\quad (t \ge w),
            \qquad \eta_t = \eta\,\tfrac{t+1}{w}\quad (t < w);

* :func:`optimizer_step` — backward, (unscale,) clip the gradient norm, step, zero the
  gradients.

The LM trainer (:mod:`llmbook.training.trainer`), fine-tuning, SFT, the word-vector,
seq2seq and recall loops all use them, so a change here changes every loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["warmup_cosine", "optimizer_step"]


def warmup_cosine(
    step: int, *, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    ``lr`` is the peak, reached after ``warmup_steps`` linear steps; the cosine then falls
    to ``min_lr`` at ``total_steps`` (and stays there).  ``min_lr == lr`` is a constant rate.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def optimizer_step(
    model: nn.Module | Iterable[Tensor],
    optimizer: torch.optim.Optimizer,
    loss: Tensor | None,
    *,
    lr: float | None = None,
    clip: float = 0.0,
    scaler: Any = None,
) -> None:
    """One optimizer update: backward ``loss``, clip, step, zero the gradients.

    ``model``: the module (or the parameters) whose gradient norm is clipped to ``clip``
    (``0``: no clipping).  ``loss=None``: the gradients are already there (accumulated
    over micro-batches by the caller).  ``lr``: set on every parameter group first.
    ``scaler``: a ``torch.amp.GradScaler`` for fp16 — the loss is scaled before backward,
    the gradients are unscaled before clipping, and the scaler skips steps with inf/NaN.
    """
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    if loss is not None:
        (scaler.scale(loss) if scaler is not None else loss).backward()
    if clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = model.parameters() if isinstance(model, nn.Module) else model
        torch.nn.utils.clip_grad_norm_(params, clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
