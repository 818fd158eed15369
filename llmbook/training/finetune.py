"""Fine-tuning a pretrained GPT as a classifier (all weights, or LoRA and the head)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from llmbook.data.lmdata import right_pad
from llmbook.interfaces import Tokenizer
from llmbook.models.classifier import GPTClassifier

__all__ = [
    "encode_batch",
    "finetune_classifier",
    "predict",
]


def encode_batch(
    tokenizer: Tokenizer, texts: Sequence[str], max_len: int, *, add_bos: bool = True
) -> tuple[Tensor, Tensor]:
    """Right-padded ids ``[B, T]`` and lengths ``[B]`` of ``texts``, each cut to ``max_len``.

    A text that is empty after encoding becomes the single ``<bos>``/``<pad>`` token, so
    every row has length >= 1.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    rows = [tokenizer.encode(t, add_bos=add_bos)[:max_len] or [tokenizer.pad_id] for t in texts]
    return right_pad(rows, tokenizer.pad_id)


@dataclass
class FinetuneResult:
    """Loss history (one entry per step), seconds, and the trained model (eval mode)."""

    losses: list[float]
    seconds: float
    model: GPTClassifier


def finetune_classifier(
    model: GPTClassifier,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 5e-4,
    max_len: int = 96,
    weight_decay: float = 0.01,
    seed: int = 0,
    progress: bool = True,
) -> FinetuneResult:
    """Train the parameters of ``model`` that require grad with AdamW.

    The learning rate warms up over the first tenth of the steps, then decays along a
    cosine to 0 (:func:`llmbook.optim.warmup_cosine`); gradients are clipped to norm 1.
    Batches are drawn at random (seeded) from ``texts``/``labels``; freeze what should not
    train beforehand (e.g. :func:`llmbook.models.lora.apply_lora`).
    """
    from llmbook.optim import optimizer_step, warmup_cosine
    from llmbook.utils import progress_bar

    if len(texts) != len(labels) or not texts:
        raise ValueError(
            f"need equally many texts and labels (>0), got {len(texts)} and {len(labels)}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter of the model requires grad; nothing to fine-tune")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in progress_bar(range(steps), disable=not progress, desc="fine-tune"):
        idx = [rng.randrange(len(texts)) for _ in range(batch_size)]
        ids, lens = encode_batch(tokenizer, [texts[i] for i in idx], max_len)
        y = torch.tensor([labels[i] for i in idx], dtype=torch.long)
        _, loss = model(ids, lens, y)
        assert loss is not None
        step_lr = warmup_cosine(step, lr=lr, total_steps=steps, warmup_steps=steps // 10)
        optimizer_step(params, opt, loss, lr=step_lr, clip=1.0)
        losses.append(loss.item())
    model.eval()
    return FinetuneResult(losses, time.perf_counter() - t0, model)


@torch.no_grad()
def predict(
    model: GPTClassifier,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    max_len: int = 96,
    batch_size: int = 128,
) -> tuple[list[int], np.ndarray]:
    """Predicted labels and class probabilities ``[N, n_classes]`` for ``texts``."""
    was_training = model.training
    model.eval()
    probs = []
    # sort by length so that batches need little padding, then restore the order
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        ids, lens = encode_batch(tokenizer, [texts[i] for i in chunk], max_len)
        logits, _ = model(ids, lens)
        probs.append(torch.softmax(logits.float(), -1).numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, model.head.out_features))
    out = np.empty_like(p)
    out[order] = p
    model.train(was_training)
    return [int(i) for i in out.argmax(1)], out
