"""Fair speed comparisons on a shared machine: training tokens/s and cached decoding.

Timing on a CPU that other processes also use is noisy, so every comparison here lets
the contestants **take turns**: each round times every function (the median of a few
calls), and the best round of each counts.  Load from elsewhere then slows all of them
alike instead of whichever happened to run during a busy second.

* :func:`median_time` and :func:`alternate`: the timing primitives;
* :func:`train_step`: one AdamW step on a batch, for the book's
  :class:`~llmbook.models.gpt.GPT` or a ``transformers`` causal LM;
* :func:`training_throughput`: training tokens/s of several models on the same batch;
* :func:`training_mfu`: model FLOPs utilization of a training step, timed in turns with
  a large matrix product that stands for the machine's peak;
* :func:`decode_seconds`: greedy decoding with a KV cache after a prefilled prompt.

``benchmarks/bench_modern.py`` and section 4.5 of the book use these functions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from llmbook.models.gpt import GPT, KVCache

__all__ = [
    "median_time",
    "alternate",
    "train_step",
    "training_throughput",
    "StepMFU",
    "training_mfu",
    "decode_seconds",
]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def alternate(fns: Sequence[Callable[[], object]], rounds: int, per: int) -> list[float]:
    """Best-of-``rounds`` :func:`median_time` (of ``per`` calls) of each function.

    The functions take turns within every round, so that a burst of load from another
    process disturbs one round of all of them rather than all rounds of one.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], median_time(fn, per))
    return best


def train_step(model: nn.Module, idx: Tensor, lr: float = 1e-4) -> Callable[[], None]:
    """A function that runs one AdamW step of ``model`` on the batch ``idx`` ``[B, T]``.

    Both kinds of model run the same ``T - 1`` positions ``idx[:, :-1]``: the book's GPT
    (``model(x, targets)`` returns ``(logits, loss)``) is given the next tokens as
    targets; a ``transformers`` model (``model(x, labels=x).loss``) shifts the labels
    itself and so scores one target fewer, which costs nothing measurable.
    """
    from llmbook.models.gpt import GPT

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    x = idx[:, :-1]

    def step() -> None:
        if isinstance(model, GPT):
            loss = model(x, idx[:, 1:])[1]
        else:
            loss = model(x, labels=x).loss
        assert loss is not None
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def training_throughput(
    models: Sequence[nn.Module], idx: Tensor, steps: int = 3, rounds: int = 3
) -> list[float]:
    """Training tokens/s of each model on the batch ``idx``, measured in turns.

    Every model gets its own AdamW optimizer, one untimed warm-up step, then
    :func:`alternate` over ``rounds`` rounds of ``steps`` steps.  Tokens per step are
    ``B · (T - 1)``.  The models are left in training mode and *are trained* (a few
    tiny steps): pass copies if their weights matter afterwards.
    """
    steps_fns = []
    for model in models:
        model.train()
        fn = train_step(model, idx)
        fn()  # warm-up: allocations, the optimizer's state
        steps_fns.append(fn)
    seconds = alternate(steps_fns, rounds, steps)
    tokens = idx.size(0) * (idx.size(1) - 1)
    return [tokens / s for s in seconds]


class StepMFU(NamedTuple):
    """What :func:`training_mfu` measured."""

    mfu: float  #: step FLOPs / step seconds / peak
    peak_flops: float  #: FLOP/s of the ``n×n`` matrix product, the stand-in peak
    step_seconds: float  #: seconds of one training step (best round's median)


def training_mfu(
    model: nn.Module,
    idx: Tensor,
    flops_per_step: float,
    *,
    matmul_n: int = 512,
    rounds: int = 7,
    per: int = 3,
) -> StepMFU:
    """Model FLOPs utilization of one AdamW step of ``model`` on ``idx`` ``[B, T]``.

    The denominator is this machine's measured speed on an ``matmul_n``-sized square
    matrix product (not a datasheet peak).  The training step and the matrix product
    take turns (:func:`alternate`), so load from other processes slows both alike: a
    peak measured in a busy second and a step measured in a quiet one would otherwise
    give an MFU that means nothing (even above 1).  ``flops_per_step`` is the step's
    model FLOPs, e.g. ``compute.training_flops(config, B * (T - 1))``.  Like
    :func:`training_throughput`, this trains ``model`` for a few steps.
    """
    if flops_per_step <= 0:
        raise ValueError(f"flops_per_step must be positive, got {flops_per_step}")
    if matmul_n <= 0:
        raise ValueError(f"matmul_n must be positive, got {matmul_n}")
    a = torch.randn(matmul_n, matmul_n)
    b = torch.randn(matmul_n, matmul_n)
    model.train()
    step = train_step(model, idx)
    step()  # warm-up
    matmul_s, step_s = alternate([lambda: a @ b, step], rounds, per)
    peak = 2.0 * matmul_n**3 / matmul_s
    return StepMFU(flops_per_step / step_s / peak, peak, step_s)


def decode_seconds(
    model: GPT,
    cache: KVCache,
    logits: Tensor,
    steps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds for ``steps`` greedy steps of a book GPT after the prompt in ``cache``.

    ``logits`` are the prompt's (from ``model(prompt, cache=cache)``).  The cache is
    rewound to the prompt's length afterwards, so every call decodes the same tokens
    after the same prefill, which is not timed.  ``clock`` is wall-clock time by
    default; ``time.process_time`` counts only the CPU time of this process (all its
    threads), which other programs competing for the cores do not inflate.
    """
    prompt_len = cache.length
    t0 = clock()
    with torch.no_grad():
        for _ in range(steps):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            logits, _ = model(nxt, cache=cache)
    cache.length = prompt_len  # rewind: the next call overwrites the same positions
    return clock() - t0
