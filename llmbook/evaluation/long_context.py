r"""Long context: loss by position inside and beyond the trained length, and two fixes.

A model trained on windows of ``block_size`` tokens has never seen a position beyond
them.  With learned position embeddings there is simply no vector for position
``block_size`` (:class:`llmbook.models.gpt.GPT` refuses such inputs with a clear
error).  Rotary embeddings (RoPE) are a formula, so they *run* at any position, but the
attention layers have never seen the larger rotation angles.  This module measures
what happens and two ways around it:

* :func:`long_sequences`: windows of a concatenated held-out corpus, longer than the
  trained context;
* :func:`nll_by_position`: mean loss (nats) at every position of those windows, read
  in one pass;
* :func:`extend_context`: a copy of a RoPE model whose tables reach ``new_len``
  positions, either extrapolated (positions ``0 .. new_len - 1`` as they are) or with
  **position interpolation** (Chen et al., 2023): position :math:`m` is rotated as if it
  were :math:`m\cdot L_\text{train}/L`, so every angle stays inside the trained range;
* :func:`sliding_nll_by_position`: the same loss when every token is predicted from at
  most ``window`` previous tokens (a sliding window), which any model can do;
* :func:`kv_cache_bytes_per_token`: the memory a KV cache needs per token,
  :math:`2\,n_\text{layer}\,n_\text{kv}\,d_\text{head}\cdot\text{bytes}`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook.interfaces import Tokenizer
from llmbook.models.modern import rope_tables

__all__ = [
    "long_sequences",
    "nll_by_position",
    "extend_context",
    "sliding_nll_by_position",
    "kv_cache_bytes_per_token",
]


def long_sequences(
    texts: Sequence[str], tokenizer: Tokenizer, length: int, n: int, seed: int = 0
) -> Tensor:
    """``n`` windows ``[n, length + 1]`` of the texts joined as in training.

    The texts are encoded like the training corpus (:func:`llmbook.data.lmdata.
    encode_corpus`: ``<bos> text \\n`` one after another) and each window starts at a
    random offset, so every position of a window is equally likely to fall anywhere in
    a poem.  Column ``t + 1`` is the target of column ``t``.
    """
    from llmbook.data.lmdata import encode_corpus

    if length < 1 or n < 1:
        raise ValueError(f"length and n must be >= 1, got length={length}, n={n}")
    ids = encode_corpus(list(texts), tokenizer)
    if len(ids) < length + 2:
        raise ValueError(
            f"the texts give {len(ids)} tokens, fewer than one window of {length + 1}; "
            "pass more texts or a smaller length"
        )
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - length - 1, size=n)
    return torch.as_tensor(np.stack([ids[s : s + length + 1] for s in starts]), dtype=torch.long)


def _check_seqs(seqs: Tensor) -> None:
    if seqs.dim() != 2 or seqs.size(1) < 2:
        raise ValueError(f"seqs must be [n, length + 1] token ids, got shape {tuple(seqs.shape)}")


@torch.no_grad()
def nll_by_position(model: torch.nn.Module, seqs: Tensor, batch_size: int = 16) -> Tensor:
    """Mean negative log-likelihood (nats) at each position ``[length]``, full context.

    Position ``t`` predicts ``seqs[:, t + 1]`` from the ``t + 1`` tokens before it.  The
    model reads whole windows, so ``length`` must not exceed its ``block_size``.
    """
    _check_seqs(seqs)
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros(seqs.size(1) - 1, device=device)
    for b in range(0, seqs.size(0), batch_size):
        chunk = seqs[b : b + batch_size].to(device)
        logits = model(chunk[:, :-1])[0]
        nll = F.cross_entropy(
            logits.float().transpose(1, 2), chunk[:, 1:], reduction="none"
        )  # [B, T]
        total += nll.sum(0)
    return total.cpu() / seqs.size(0)


def extend_context(
    model: torch.nn.Module, new_len: int, interpolate: bool = False
) -> torch.nn.Module:
    """A copy of a RoPE :class:`~llmbook.models.gpt.GPT` that accepts ``new_len`` tokens.

    The weights are shared in value (deep copy); only ``block_size`` and the RoPE tables
    change.  ``interpolate=False`` extrapolates (positions beyond the trained length get
    angles the model never saw); ``interpolate=True`` is position interpolation
    (Chen et al., 2023): positions are scaled by ``block_size / new_len``.
    Learned position embeddings cannot be extended: there is no trained vector for
    the new positions, and a ``ValueError`` says so.
    """
    from dataclasses import replace

    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "block_size") or not hasattr(cfg, "pos"):
        raise TypeError("extend_context expects an llmbook.models.gpt.GPT model")
    if cfg.pos != "rope":
        raise ValueError(
            f"a model with {cfg.pos!r} position embeddings has vectors for positions "
            f"0..{cfg.block_size - 1} only; it cannot be extended without training new "
            "ones — use a sliding window (sliding_nll_by_position) or a RoPE model"
        )
    if not isinstance(new_len, int) or new_len < cfg.block_size:
        raise ValueError(f"new_len must be an int >= block_size {cfg.block_size}, got {new_len!r}")
    scale = cfg.block_size / new_len if interpolate else 1.0
    out = copy.deepcopy(model)
    out.config = replace(cfg, block_size=new_len)
    cos, sin = rope_tables(cfg.head_dim, new_len, cfg.rope_theta, scale)
    device = next(model.parameters()).device
    out.rope_cos, out.rope_sin = cos.to(device), sin.to(device)
    return out


@torch.no_grad()
def sliding_nll_by_position(
    model: torch.nn.Module, seqs: Tensor, window: int, stride: int = 16, batch_size: int = 16
) -> Tensor:
    """Mean NLL (nats) at each position when the model sees at most ``window`` tokens.

    The first window is read as in :func:`nll_by_position`; afterwards the window moves
    ``stride`` tokens at a time and only its last ``stride`` predictions are kept, so a
    token late in the sequence is predicted from between ``window - stride`` and
    ``window - 1`` tokens before it.  Positions inside each window restart at 0, so this
    works for learned position embeddings too.  Cost: about ``length / stride`` passes
    over ``window`` tokens (a rolling KV cache does the same with less recomputation).
    """
    _check_seqs(seqs)
    if not 1 <= stride < window:
        raise ValueError(f"need 1 <= stride < window, got stride={stride}, window={window}")
    n_pred = seqs.size(1) - 1
    if n_pred <= window:
        return nll_by_position(model, seqs, batch_size)
    out = torch.empty(n_pred)
    out[:window] = nll_by_position(model, seqs[:, : window + 1], batch_size)
    end = window
    while end < n_pred:
        new = min(stride, n_pred - end)
        start = end + new - window  # the window predicts targets start+1 .. end+new
        part = nll_by_position(model, seqs[:, start : end + new + 1], batch_size)
        out[end : end + new] = part[-new:]
        end += new
    return out


def kv_cache_bytes_per_token(
    n_layer: int, n_kv_head: int, head_dim: int, bytes_per_value: float = 2
) -> float:
    r"""Bytes of KV cache per token: :math:`2\,n_\text{layer}\,n_\text{kv}\,d_\text{head}\,b`.

    Keys and values (the 2) of every layer and key/value head; ``bytes_per_value`` is 2
    for bf16/fp16, 1 for an 8-bit cache.  Multiply by the batch size and the number of
    tokens for the whole cache.
    """
    for name, v in (("n_layer", n_layer), ("n_kv_head", n_kv_head), ("head_dim", head_dim)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if bytes_per_value <= 0:
        raise ValueError(f"bytes_per_value must be > 0, got {bytes_per_value}")
    return 2 * n_layer * n_kv_head * head_dim * bytes_per_value
