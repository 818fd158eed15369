"""Evaluation of torch language models: the book's shared *bits per character* protocol.

Every language model in the book, from the n-gram model of chapter 1 to the GPT of
chapter 5, is compared on the same held-out text with the same number:

.. math::

    \\text{bpc} = \\frac{\\sum_{\\text{poems}} \\sum_{t} -\\log_2 p(x_t \\mid x_{<t})}
                       {\\sum_{\\text{poems}} (\\text{len(poem)} + 1)}

For each poem independently the model predicts every token of ``poem + "\\n"`` (the
newline is the end marker), conditioned only on ``<bos>`` and the poem's own preceding
tokens.  The sum of the negative log-probabilities (in bits) is divided by the number of
*characters* predicted, not by the number of tokens, so that a character model, a word
model and a BPE model — which cut the same text into different numbers of tokens — are
measured in the same unit.  Characters outside a tokenizer's vocabulary are encoded as
``<unk>`` and scored like any other token, which flatters a model with a small
vocabulary slightly; the book's character vocabularies cover the validation text almost
completely, so the effect is negligible there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmbook.data.lmdata import right_pad
from llmbook.interfaces import Tokenizer, block_size

__all__ = [
    "bits_per_char",
    "protocol_sequences",
    "sequence_nll",
    "nats_to_bits",
    "bpc_from_token_loss",
    "perplexity",
]

LN2 = math.log(2.0)


def nats_to_bits(x: float) -> float:
    """Convert a quantity in nats (natural log) to bits: divide by :math:`\\ln 2`."""
    return x / LN2


def perplexity(mean_nll_nats: float) -> float:
    """Perplexity :math:`\\exp(\\bar\\ell)` of a mean negative log-likelihood in nats."""
    return math.exp(mean_nll_nats)


def bpc_from_token_loss(mean_token_nll_nats: float, n_tokens: int, n_chars: int) -> float:
    """Bits per character from a mean per-*token* loss in nats.

    ``mean_token_nll_nats * n_tokens`` is the total information in nats; dividing by
    :math:`\\ln 2` gives bits, and by ``n_chars`` the bits per character.  With a character
    tokenizer ``n_tokens == n_chars`` and this is just ``loss / ln 2``.
    """
    if n_tokens <= 0 or n_chars <= 0:
        raise ValueError(
            f"n_tokens and n_chars must be positive, got n_tokens={n_tokens}, n_chars={n_chars}"
        )
    return mean_token_nll_nats * n_tokens / LN2 / n_chars


def _windows(
    inputs: list[int], targets: list[int], block: int
) -> list[tuple[list[int], list[int]]]:
    """Cut one long sequence into windows of at most ``block`` tokens.

    Every position is scored exactly once; after the first window each window starts
    ``block // 2`` tokens later and scores only the positions it has not scored yet, so
    every prediction sees at least ``block // 2`` tokens of context (or all of them).
    """
    n = len(inputs)
    if n <= block:
        return [(inputs, targets)]
    out = []
    stride = max(1, block // 2)
    scored = 0
    start = 0
    while scored < n:
        end = min(start + block, n)
        tgt = [-100] * (scored - start) + targets[scored:end]
        out.append((inputs[start:end], tgt))
        scored = end
        if end == n:
            break
        start = min(start + stride, n - block)
    return out


@torch.no_grad()
def sequence_nll(
    model: nn.Module,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_size: int = 64,
    device: torch.device | str | None = None,
    pad_id: int = 0,
) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ``targets`` given ``inputs``, and its count.

    ``sequences`` holds ``(inputs, targets)`` pairs of equal length, at most
    ``model.config.block_size`` long; a target of ``-100`` is not scored.  Sequences are
    sorted by length and right-padded within a batch (padding never influences earlier
    positions of a causal model).  Returns ``(sum of -ln p, number of scored tokens)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    total = 0.0
    count = 0
    for b in range(0, len(order), batch_size):
        chunk = [sequences[i] for i in order[b : b + batch_size]]
        for x, y in chunk:
            if len(x) != len(y):
                raise ValueError(
                    f"inputs and targets must have the same length, got {len(x)} and {len(y)}"
                )
        idx, _ = right_pad([x for x, _ in chunk], pad_id)
        tgt, _ = right_pad([y for _, y in chunk], -100)
        idx, tgt = idx.to(device), tgt.to(device)
        out: Any = model(idx)
        logits = out[0] if isinstance(out, tuple) else out
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)),
            tgt.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total += float(nll)
        count += int((tgt != -100).sum())
    return total, count


def protocol_sequences(
    tokenizer: Tokenizer, texts: Iterable[str], block_size: int
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """The ``(inputs, targets)`` windows that :func:`bits_per_char` scores, and the char count.

    For each text the inputs are ``<bos>`` + the tokens of ``text + "\n"`` except the
    last, the targets are the tokens of ``text + "\n"``; sequences longer than
    ``block_size`` are cut into sliding windows that score every target once.  Feed the
    result to :func:`sequence_nll` to get the total negative log-likelihood in nats.
    """
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, got one str; wrap it: [text]")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    sequences: list[tuple[list[int], list[int]]] = []
    n_chars = 0
    for text in texts:
        ids = tokenizer.encode(text + "\n")
        if not ids:
            raise ValueError(f"the tokenizer encoded {text!r} + newline to no tokens")
        inputs = [tokenizer.bos_id] + ids[:-1]
        sequences.extend(_windows(inputs, ids, block_size))
        n_chars += len(text) + 1
    return sequences, n_chars


def bits_per_char(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Iterable[str],
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> float:
    """Bits per character of ``model`` on ``texts`` under the book's shared protocol.

    For each text (a poem) the model reads ``<bos>`` followed by the tokens of
    ``text + "\\n"`` except the last, and predicts the tokens of ``text + "\\n"``; the
    result is the total :math:`-\\log_2 p` divided by the total number of characters
    ``sum(len(text) + 1)``.  Texts longer than ``model.config.block_size`` are scored with
    a sliding window (each window moves by half a block and scores only its new
    positions).  ``model`` follows the book's LM interface: ``model(idx)`` returns
    ``(logits, loss)`` (or just logits) with ``logits`` of shape ``[B, T, V]``.
    The model is put in ``eval()`` mode for the computation and restored afterwards.
    """
    if isinstance(texts, str):
        raise TypeError("bits_per_char expects a list of texts, got one str; wrap it: [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("bits_per_char got no texts; pass e.g. poem_lm_texts('valid')")
    for name in ("bos_id", "encode"):
        if not hasattr(tokenizer, name):
            raise TypeError(
                f"the tokenizer has no {name!r}; pass a tokenizer from llmbook.text.tokenizers"
            )
    sequences, n_chars = protocol_sequences(tokenizer, texts, block_size(model))
    was_training = model.training
    model.eval()
    try:
        total, _ = sequence_nll(
            model,
            sequences,
            batch_size=batch_size,
            device=device,
            pad_id=getattr(tokenizer, "pad_id", 0),
        )
    finally:
        model.train(was_training)
    return nats_to_bits(total) / n_chars
