r"""A statistical watermark for generated text (Kirchenbauer et al., 2023).

Before each token is sampled, the previous token and a secret ``key`` seed a random
split of the vocabulary into a **green list** (a share :math:`\gamma` of the tokens) and
a red list; the sampler adds :math:`\delta` to the logits of the green tokens.  Text
written this way contains more green tokens than chance.  Anyone who knows the key can
count them without the model: with :math:`g` green tokens among :math:`T` scored
tokens,

.. math::  z = \frac{g - \gamma T}{\sqrt{T\,\gamma(1-\gamma)}},

which is approximately standard normal for text written without the watermark (each
token is green with probability :math:`\gamma`, independently of the split).  A large
:math:`z` (say > 4) is strong evidence of the watermark.

* :func:`green_mask`: the green list after one token;
* :func:`generate_watermarked`: sampling with (``delta > 0``) or without the watermark;
* :func:`count_green` and :func:`z_score`: detection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["green_mask", "generate_watermarked", "count_green", "z_score", "detect"]

_MULT = 15_485_863  # a prime: mixes the key and the previous token into one seed


def _check_gamma(gamma: float) -> None:
    if not 0 < gamma < 1:
        raise ValueError(
            f"gamma (the green share of the vocabulary) must be in (0, 1), got {gamma}"
        )


def green_mask(prev: int, vocab_size: int, gamma: float = 0.25, key: int = 42) -> Tensor:
    """Boolean ``[vocab_size]``: the green list that follows token ``prev``.

    ``round(gamma · vocab_size)`` tokens, chosen by a random permutation seeded with
    ``key`` and ``prev``: the same key and previous token always give the same list.
    """
    _check_gamma(gamma)
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    gen = torch.Generator().manual_seed((key * _MULT + int(prev)) % (2**62))
    perm = torch.randperm(vocab_size, generator=gen)
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[perm[: round(gamma * vocab_size)]] = True
    return mask


@torch.no_grad()
def generate_watermarked(
    model: nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    *,
    num_samples: int = 1,
    gamma: float = 0.25,
    delta: float = 2.0,
    key: int = 42,
    temperature: float = 1.0,
    stop_id: int | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Sample ``num_samples`` continuations of ``prompt``; ``delta`` > 0 adds the watermark.

    At every step the logits of the green tokens (:func:`green_mask` of the previous
    token) get ``+delta`` before sampling at ``temperature``; ``delta=0`` is plain
    sampling with the same random numbers.  A continuation ends at ``stop_id``
    (included) or after ``max_new_tokens``.  Returns the new tokens of each sample.
    """
    _check_gamma(gamma)
    if delta < 0 or temperature <= 0 or max_new_tokens < 1 or num_samples < 1:
        raise ValueError("need delta >= 0, temperature > 0, max_new_tokens >= 1, num_samples >= 1")
    if not prompt:
        raise ValueError("prompt must hold at least one token (e.g. the <bos> id)")
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([list(prompt)] * num_samples, device=device)
    cache = model.new_cache(num_samples, len(prompt) + max_new_tokens)  # type: ignore[operator]
    logits = model(idx, cache=cache)[0][:, -1]
    out: list[list[int]] = [[] for _ in range(num_samples)]
    done = [False] * num_samples
    prev = idx[:, -1].tolist()
    for _ in range(max_new_tokens):
        logits = logits.float() / temperature
        if delta:
            greens = torch.stack([green_mask(p, logits.size(-1), gamma, key) for p in prev])
            logits = logits + delta * greens.to(device)
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)  # [B, 1]
        prev = nxt[:, 0].tolist()
        for i, t in enumerate(prev):
            if not done[i]:
                out[i].append(t)
                done[i] = t == stop_id
        if all(done):
            break
        logits = model(nxt, cache=cache)[0][:, -1]
    return out


def count_green(
    ids: Sequence[int], vocab_size: int, gamma: float = 0.25, key: int = 42
) -> tuple[int, int]:
    """``(green, scored)``: how many of ``ids[1:]`` are in the green list of their predecessor."""
    ids = list(ids)
    if len(ids) < 2:
        raise ValueError("need at least two tokens: each token is scored against the one before")
    green = sum(bool(green_mask(a, vocab_size, gamma, key)[b]) for a, b in zip(ids, ids[1:]))
    return green, len(ids) - 1


def z_score(green: int, total: int, gamma: float = 0.25) -> float:
    r""":math:`(g - \gamma T) / \sqrt{T\gamma(1-\gamma)}` for ``g`` green of ``T`` tokens."""
    _check_gamma(gamma)
    if total < 1 or not 0 <= green <= total:
        raise ValueError(
            f"need total >= 1 and 0 <= green <= total, got green={green}, total={total}"
        )
    return (green - gamma * total) / math.sqrt(total * gamma * (1 - gamma))


def detect(ids: Sequence[int], vocab_size: int, gamma: float = 0.25, key: int = 42) -> float:
    """The watermark's :func:`z_score` of a token sequence (needs only the key, not the model)."""
    share = round(gamma * vocab_size) / vocab_size  # the green list's actual share
    return z_score(*count_green(ids, vocab_size, gamma, key), share)
