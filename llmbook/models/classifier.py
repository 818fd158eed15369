"""A sequence classifier on top of the GPT: pooled hidden states and a linear head.

A :class:`GPTClassifier` is an ordinary model with a config dataclass
(:class:`ClassifierConfig`: the GPT's config, the class names, the pooling), so it is
saved and loaded like every model of the book: one checkpoint whose ``model.safetensors``
holds the GPT body and the head together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.models.gpt import GPT, GPTConfig

__all__ = ["ClassifierConfig", "GPTClassifier", "POOLINGS"]

POOLINGS = ("last", "mean")


@dataclass
class ClassifierConfig:
    """Hyper-parameters of :class:`GPTClassifier` (saved with every checkpoint)."""

    gpt: GPTConfig  #: the body (a dict, as read from config.json, is converted)
    labels: tuple[str, ...]  #: class names in order, e.g. ("负面", "正面")
    pooling: str = "last"  #: "last": the last real token's state; "mean": the average
    dropout: float = 0.1  #: dropout on the pooled vector (training only)
    max_len: int = 96  #: texts are cut to this many tokens (see finetune.encode_batch)

    def __post_init__(self) -> None:
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig.from_dict(self.gpt)
        if not isinstance(self.gpt, GPTConfig):
            raise TypeError(f"ClassifierConfig.gpt must be a GPTConfig, got {type(self.gpt)}")
        if isinstance(self.labels, str) or len(self.labels) < 2:
            raise ValueError(
                f"ClassifierConfig.labels must name at least 2 classes, got {self.labels!r}; "
                'give a sequence such as ("负面", "正面")'
            )
        self.labels = tuple(str(label) for label in self.labels)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ClassifierConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.max_len, int) or self.max_len < 1:
            raise ValueError(
                f"ClassifierConfig.max_len must be a positive int, got {self.max_len!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GPTClassifier(nn.Module):
    """A GPT body with a linear classification head.

    ``GPTClassifier(config)`` builds a freshly initialised ``GPT(config.gpt)``; pass a
    pretrained one as ``gpt`` (or use :meth:`from_gpt`).  ``pooling="last"`` uses the
    hidden state of the last real token (causal attention means only it has seen the
    whole text); ``"mean"`` averages over real tokens.
    """

    def __init__(self, config: ClassifierConfig, gpt: GPT | None = None) -> None:
        super().__init__()
        if not isinstance(config, ClassifierConfig):
            raise TypeError(
                f"GPTClassifier takes a ClassifierConfig, got {type(config).__name__}; "
                "to wrap a pretrained GPT use GPTClassifier.from_gpt(gpt, labels)"
            )
        if gpt is not None and gpt.config != config.gpt:
            raise ValueError(
                f"the GPT's config {gpt.config} differs from ClassifierConfig.gpt {config.gpt}"
            )
        self.config = config
        self.gpt = gpt if gpt is not None else GPT(config.gpt)
        self.pooling = config.pooling
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.gpt.n_embd, len(config.labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_gpt(cls, gpt: GPT, labels: Sequence[str], **options: Any) -> GPTClassifier:
        """A new head on the pretrained ``gpt`` (used as is, not copied).

        ``options`` are the other :class:`ClassifierConfig` fields (``pooling``, ...).
        """
        return cls(ClassifierConfig(gpt.config, tuple(labels), **options), gpt)

    def pool(self, idx: Tensor, lengths: Tensor) -> Tensor:
        h = self.gpt.hidden_states(idx)  # [B, T, C]
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
