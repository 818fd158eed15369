"""Masked-language-model pre-training with the book's trainer, and filling in masks.

:class:`MaskedLM` wraps a :class:`~llmbook.models.bert.Bert` so that the ordinary trainer
(:func:`llmbook.training.trainer.train`, which draws windows ``x`` of a token stream and
calls ``model(x, y)``) pre-trains it: the window's first token becomes ``[CLS]``, as every
BERT input starts with it, and :func:`~llmbook.models.bert.mask_tokens` draws the masked
inputs and labels; the next-token targets ``y`` are not used.  In training mode the masks
come from PyTorch's global generator (saved in the trainer's checkpoints, so resuming
draws the same masks); in eval mode from a generator seeded by the batch itself, so the
same validation batch always gets the same masks and validation losses compare.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from llmbook.models.bert import Bert, BertConfig, mask_tokens

__all__ = ["MaskedLM", "fill_mask", "masked_accuracy"]


class MaskedLM(nn.Module):
    """``forward(x, y=None) -> (logits, loss)``: BERT's MLM loss on windows ``x`` ``[B, T]``."""

    def __init__(self, config: BertConfig, mask_prob: float = 0.15) -> None:
        super().__init__()
        self.bert = Bert(config)
        self.mask_prob = mask_prob

    @property
    def config(self) -> BertConfig:
        return self.bert.config

    def make_batch(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(inputs, labels)``: ``x`` with ``[CLS]`` first, masked by :func:`mask_tokens`."""
        x = x.clone()
        x[:, 0] = self.config.cls_id
        gen = None
        if not self.training:  # the same masks for the same batch at every evaluation
            gen = torch.Generator().manual_seed(int(x.sum()) % (2**31))
        return mask_tokens(x.cpu(), self.config, mask_prob=self.mask_prob, generator=gen)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        inputs, labels = self.make_batch(x)
        return self.bert(inputs.to(x.device), labels.to(x.device))


@torch.no_grad()
def masked_accuracy(model: Bert, inputs: Tensor, labels: Tensor) -> float:
    """Share of the labelled (masked) positions whose top prediction is the original token."""
    was = model.training
    model.eval()
    logits, _ = model(inputs)
    model.train(was)
    chosen = labels != -100
    if not chosen.any():
        raise ValueError("labels mark no position (all -100); nothing to score")
    return float((logits.argmax(-1)[chosen] == labels[chosen]).float().mean())


@torch.no_grad()
def fill_mask(
    model: Bert, tokenizer: Any, text: str, *, mask: str = "□", top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """The ``top_k`` tokens and probabilities for each ``mask`` character in ``text``.

    ``text`` is encoded with ``[CLS]`` in front; every occurrence of the placeholder
    ``mask`` (a character the tokenizer maps to one token) becomes ``[MASK]``.
    """
    if mask not in text:
        raise ValueError(f"text {text!r} holds no mask placeholder {mask!r}")
    pieces = text.split(mask)
    ids = [model.config.cls_id]
    slots = []
    for i, piece in enumerate(pieces):
        ids += tokenizer.encode(piece)
        if i < len(pieces) - 1:
            slots.append(len(ids))
            ids.append(model.config.mask_token)
    was = model.training
    model.eval()
    logits, _ = model(torch.tensor([ids], device=next(model.parameters()).device))
    model.train(was)
    out = []
    for s in slots:
        p = logits[0, s].float().softmax(-1)
        p[: model.config.n_special] = 0.0  # special tokens are never the answer
        p[model.config.mask_token] = 0.0
        top = p.topk(top_k)
        out.append(
            [(tokenizer.decode([int(i)]), float(v)) for v, i in zip(top.values, top.indices)]
        )
    return out
