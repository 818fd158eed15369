r"""Scaling laws in miniature: train a family of GPTs and fit :math:`L(N)`.

Kaplan et al. (2020) found that, when data and compute are not the bottleneck, the test
loss of a Transformer language model falls as a power law of its non-embedding
parameter count :math:`N`:

.. math:: L(N) = \left(N_c / N\right)^{\alpha_N}, \qquad \alpha_N \approx 0.076 .

With a finite token budget the loss cannot fall below what that budget allows, so we
fit the form with an offset,

.. math:: L(N) = a\,N^{-\alpha} + c ,

and, for comparison, the straight line :math:`\log L = \log a - \alpha \log N` of a
plain log–log fit.  :func:`run_scaling` trains every configuration with the shared
trainer (:func:`llmbook.training.trainer.train`) on the same data, with the same number of
tokens (``tokens=``) or the same training FLOPs :math:`6ND` (``flops=``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from llmbook.models.gpt import GPT, GPTConfig
from llmbook.training.compute import param_count

__all__ = [
    "ScalingRun",
    "PowerLaw",
    "gpt_family",
    "run_scaling",
    "fit_power_law",
    "fit_loglog",
]


@dataclass(frozen=True)
class ScalingRun:
    """One trained model of the family."""

    config: dict[str, Any]
    n_params: int
    n_non_embedding: int
    tokens: int
    steps: int
    flops: float
    seconds: float
    train_loss: float
    val_loss: float


@dataclass(frozen=True)
class PowerLaw:
    r""":math:`L(N) = a N^{-\alpha} + c` (``c = 0`` for a pure log–log fit)."""

    a: float
    alpha: float
    c: float
    r2: float  # coefficient of determination of log L

    def __call__(self, n: Any) -> Any:
        return self.a * np.asarray(n, dtype=float) ** (-self.alpha) + self.c


def gpt_family(
    widths: Sequence[int],
    *,
    vocab_size: int,
    block_size: int = 64,
    n_layer: int | Sequence[int] = 2,
    head_size: int = 16,
) -> list[GPTConfig]:
    """GPT configurations of growing width (one per entry of ``widths``).

    ``n_layer`` is one depth for all or one per width; heads are ``width // head_size``.
    """
    depths = [n_layer] * len(widths) if isinstance(n_layer, int) else list(n_layer)
    if len(depths) != len(widths):
        raise ValueError(f"got {len(widths)} widths but {len(depths)} depths; give one per width")
    out = []
    for w, n_l in zip(widths, depths):
        if w % head_size:
            raise ValueError(f"width {w} is not a multiple of head_size {head_size}")
        out.append(
            GPTConfig(
                vocab_size=vocab_size,
                block_size=block_size,
                n_layer=int(n_l),
                n_head=w // head_size,
                n_embd=int(w),
            )
        )
    return out


def run_scaling(
    configs: Sequence[GPTConfig],
    train_ids: np.ndarray,
    valid_ids: np.ndarray,
    *,
    tokens: int | None = None,
    flops: float | None = None,
    batch_size: int = 32,
    lr: float = 3e-3,
    warmup_frac: float = 0.1,
    eval_batches: int = 20,
    seed: int = 0,
    progress: bool = True,
    device: str | None = "cpu",
) -> list[ScalingRun]:
    """Train each configuration once and record its final validation loss.

    Exactly one of ``tokens`` (same data budget for every size) and ``flops`` (same
    compute budget :math:`6ND`, so smaller models see more tokens) must be given.
    Every run uses the same seed, learning-rate schedule shape and validation windows.
    """
    from llmbook.training.trainer import TrainConfig, train
    from llmbook.utils import set_seed

    if (tokens is None) == (flops is None):
        raise ValueError("give exactly one of tokens= (fixed data) or flops= (fixed compute)")
    runs = []
    for cfg in configs:
        set_seed(seed)
        model = GPT(cfg)
        n = param_count(cfg)
        n_tokens = int(tokens) if tokens is not None else int(float(flops) / (6.0 * n))  # type: ignore[arg-type]
        steps = max(1, n_tokens // (batch_size * cfg.block_size))
        tc = TrainConfig(
            max_steps=steps,
            batch_size=batch_size,
            block_size=cfg.block_size,
            lr=lr,
            min_lr=lr / 10,
            warmup_steps=max(1, int(warmup_frac * steps)),
            eval_interval=0,
            eval_batches=eval_batches,
            seed=seed,
            device=device,
            progress=progress,
        )
        res = train(model, train_ids, valid_ids, tc)
        last = res.history[-1]
        val = res.final_val_loss
        if val is None:  # pragma: no cover - the trainer always evaluates at the end
            raise RuntimeError("the trainer returned no validation loss")
        used = steps * batch_size * cfg.block_size
        runs.append(
            ScalingRun(
                config=asdict(cfg),
                n_params=n,
                n_non_embedding=param_count(cfg, non_embedding=True),
                tokens=used,
                steps=steps,
                flops=6.0 * n * used,
                seconds=res.seconds,
                train_loss=float(last["train_loss"]),
                val_loss=float(val),
            )
        )
    return runs


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def fit_loglog(n: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray) -> PowerLaw:
    r"""Least-squares line through :math:`(\log N, \log L)`: :math:`L = a N^{-\alpha}`."""
    x, y = _check(n, loss, 2)
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    law = PowerLaw(float(math.exp(intercept)), float(-slope), 0.0, 0.0)
    return replace(law, r2=_r2(np.log(y), np.log(law(x))))


def fit_power_law(n: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray) -> PowerLaw:
    r"""Fit :math:`L = a N^{-\alpha} + c` (least squares on :math:`\log L`).

    Needs at least 4 points.  ``c`` is constrained to :math:`[0, \min L)`; the fit is
    started from the log–log line, so with no detectable floor it returns ``c ≈ 0``.
    """
    from scipy.optimize import least_squares

    x, y = _check(n, loss, 4)
    start = fit_loglog(x, y)
    lx = np.log(x)

    def resid(p: np.ndarray) -> np.ndarray:
        log_a, alpha, c = p
        return np.log(np.exp(log_a - alpha * lx) + c) - np.log(y)

    best = None
    for c0 in (0.0, 0.5 * y.min(), 0.9 * y.min()):
        p0 = np.array([math.log(start.a), max(start.alpha, 1e-3), c0])
        sol = least_squares(
            resid,
            p0,
            bounds=([-np.inf, 0.0, 0.0], [np.inf, 5.0, float(y.min()) * 0.999]),
        )
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    log_a, alpha, c = (float(v) for v in best.x)
    law = PowerLaw(math.exp(log_a), alpha, c, 0.0)
    return replace(law, r2=_r2(np.log(y), np.log(law(x))))


def _check(
    n: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray, need: int
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(n, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"n and loss must be 1-D of equal length, got {x.shape} and {y.shape}")
    if len(x) < need:
        raise ValueError(f"need at least {need} points to fit, got {len(x)}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("parameter counts and losses must be positive for a log–log fit")
    return x, y
