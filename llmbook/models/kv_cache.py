"""The KV cache of :class:`llmbook.models.gpt.GPT`: keys and values kept for incremental decoding.

Generating token ``t`` needs the keys and values of tokens ``0..t-1`` in every layer;
keeping them makes each new token cost one position's worth of compute instead of the
whole sequence.  Grouped-query attention stores only ``n_kv_head`` heads, so the cache
shrinks by ``n_head / n_kv_head``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class GPTConfig(Protocol):
    """What the cache reads from :class:`llmbook.models.gpt.GPTConfig`."""

    n_layer: int
    block_size: int

    @property
    def kv_heads(self) -> int: ...

    @property
    def head_dim(self) -> int: ...


__all__ = ["KVCache"]


class KVCache:
    """Pre-allocated keys and values of every layer, for incremental decoding.

    ``k[layer]`` and ``v[layer]`` have shape ``[B, H_kv, max_len, D]``: only the
    ``n_kv_head`` key/value heads are stored, so grouped-query attention divides the
    memory (:attr:`nbytes`) by ``n_head / n_kv_head``.  The first ``length`` positions
    are filled.  :meth:`reorder` permutes the batch (beam search).
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        max_len = config.block_size if max_len is None else max_len
        if max_len > config.block_size:
            raise ValueError(
                f"KVCache max_len {max_len} exceeds the model's block_size {config.block_size}"
            )
        shape = (batch_size, config.kv_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.max_len = max_len
        self.length = 0

    @property
    def nbytes(self) -> int:
        """Memory of the cache: ``2 · n_layer · B · H_kv · max_len · D`` numbers."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` (``[B, H_kv, T, D]``) for ``layer``; return all keys/values so far."""
        start = self.length
        end = start + k.size(2)
        if end > self.max_len:
            raise RuntimeError(f"KV cache is full: {end} positions > max_len {self.max_len}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (in that order); used when beams are re-ranked."""
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]
