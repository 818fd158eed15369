"""A sequence classifier on top of the GPT: pooled hidden states and a linear head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "gpt_hidden_states",
    "GPTClassifier",
]


def gpt_hidden_states(gpt: Any, idx: Tensor) -> Tensor:
    """Final hidden states ``[B, T, C]`` of a :class:`llmbook.models.gpt.GPT` (after ``ln_f``),
    i.e. what the language-model head would read, without computing the vocabulary logits."""
    T = idx.size(1)
    if T > gpt.config.block_size:
        raise ValueError(f"input of {T} tokens exceeds block_size {gpt.config.block_size}")
    pos = torch.arange(T, device=idx.device)
    x = gpt.drop(gpt.wte(idx) + gpt.wpe(pos))
    for i, block in enumerate(gpt.blocks):
        x = block(x, None, i)
    return gpt.ln_f(x)


class GPTClassifier(nn.Module):
    """A pretrained GPT body with a linear classification head.

    ``pooling="last"`` uses the hidden state of the last real token (causal attention
    means only it has seen the whole text); ``"mean"`` averages over real tokens.
    """

    def __init__(
        self, gpt: nn.Module, n_classes: int = 2, pooling: str = "last", dropout: float = 0.1
    ):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.gpt = gpt
        cfg: Any = gpt.config
        self.config = cfg
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cfg.n_embd, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def pool(self, idx: Tensor, lengths: Tensor) -> Tensor:
        h = gpt_hidden_states(self.gpt, idx)  # [B, T, C]
        if self.pooling == "last":
            return h[torch.arange(h.size(0), device=h.device), lengths - 1]
        mask = (torch.arange(h.size(1), device=h.device)[None, :] < lengths[:, None]).to(h.dtype)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def forward(
        self, idx: Tensor, lengths: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        logits = self.head(self.dropout(self.pool(idx, lengths)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return logits, loss
