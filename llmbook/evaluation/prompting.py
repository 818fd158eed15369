"""Zero-shot and few-shot prompting of a base language model, and the copying test of induction.

A base model has no instructions to follow: a *prompt* is just the beginning of a text
in its training format.  The book's poetry models were trained on one stream of poems,
``<bos> poem \\n <bos> poem \\n …``, cut into windows of ``block_size`` characters, so a
few-shot prompt in that format is

.. math::

    \\langle bos\\rangle\\, d_1\\, \\texttt{\\\\n}\\, \\langle bos\\rangle\\, d_2\\,
    \\texttt{\\\\n} \\cdots \\langle bos\\rangle\\, q,

``k`` demonstrations :math:`d_i` followed by the query :math:`q` (:func:`few_shot_ids`).
With ``k = 0`` the prompt is just ``<bos> q``: zero-shot.

Three measurements use such prompts:

* :func:`continuation_logprobs` — the summed log-probability of a continuation after a
  context, the multiple-choice score of :mod:`llmbook.evaluation.multiple_choice`, for
  contexts given as token ids (which may contain ``<bos>`` in the middle);
* :func:`sample_until` — sampled continuations that stop at a character (e.g. the first
  ``"，"``), for measuring what form a prompt induces;
* :func:`token_losses` — the per-position loss and top-1 hit, e.g. on a text shown
  twice: a model with *induction heads* (Olsson et al., 2022) predicts the second copy
  far better than the first, whatever the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmbook.data.lmdata import right_pad
from llmbook.generation.decoding import generate
from llmbook.interfaces import Tokenizer, block_size

__all__ = [
    "few_shot_ids",
    "continuation_logprobs",
    "sample_until",
    "token_losses",
]


def few_shot_ids(
    tokenizer: Tokenizer, demos: Sequence[str], query: str = "", sep: str = "\n"
) -> list[int]:
    """Token ids of ``<bos> d_1 sep <bos> d_2 sep … <bos> query``: the training format.

    ``demos`` may be empty (a zero-shot prompt, ``<bos> query``).  Each demonstration is
    one text of the corpus (e.g. a whole poem); ``sep`` ends it, as in
    :func:`llmbook.data.lmdata.encode_corpus`.
    """
    if isinstance(demos, str):
        raise TypeError("demos must be a list of texts, got one str; wrap it: [demo]")
    sep_ids = tokenizer.encode(sep) if sep else []
    ids: list[int] = []
    for k, demo in enumerate(demos):
        if not demo:
            raise ValueError(f"demonstration {k} is empty; drop it or give its text")
        ids += [tokenizer.bos_id, *tokenizer.encode(demo), *sep_ids]
    return [*ids, tokenizer.bos_id, *tokenizer.encode(query)]


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    out: Any = model(idx)
    return (out[0] if isinstance(out, tuple) else out).float()


@torch.no_grad()
def continuation_logprobs(
    model: nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 64,
    pad_id: int = 0,
) -> list[float]:
    """Summed log-probability (nats) of each ``continuations[j]`` after ``contexts[j]``.

    Both are token-id lists; the context must be non-empty (start it with ``<bos>``).  A
    pair longer than the model's ``block_size`` loses context from the left, so the
    continuation is always scored whole.  The model runs in ``eval()`` mode.
    """
    if len(contexts) != len(continuations):
        raise ValueError(
            f"got {len(contexts)} contexts but {len(continuations)} continuations; "
            "pass one continuation per context"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    block = block_size(model)
    seqs = []
    for j, (ctx, cont) in enumerate(zip(contexts, continuations, strict=True)):
        if not ctx or not cont:
            raise ValueError(
                f"pair {j} has an empty context or continuation; start the context with "
                "<bos> and give at least one continuation token"
            )
        if len(cont) > block:
            raise ValueError(
                f"continuation {j} is {len(cont)} tokens, longer than block_size {block}"
            )
        full = [*ctx, *cont]
        inputs, targets = full[:-1], [-100] * (len(ctx) - 1) + list(cont)
        seqs.append((inputs[-block:], targets[-block:]))
    device = _device(model)
    out = [0.0] * len(seqs)
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(seqs), batch_size):
            rows = range(b, min(b + batch_size, len(seqs)))
            idx, _ = right_pad([seqs[j][0] for j in rows], pad_id)
            tgt, _ = right_pad([seqs[j][1] for j in rows], -100)
            logp = F.log_softmax(_logits(model, idx.to(device)), dim=-1)
            tgt = tgt.to(device)
            picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            sums = (picked * (tgt != -100)).sum(dim=1).double().cpu().tolist()
            for j, s in zip(rows, sums, strict=True):
                out[j] = float(s)
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def sample_until(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    stop: str,
    max_new_tokens: int = 10,
    seed: int = 0,
    temperature: float = 1.0,
) -> list[str]:
    """One sampled continuation per prompt (token ids), up to and excluding ``stop``.

    Generation stops at the single-token string ``stop`` (e.g. ``"，"``, the end of a
    poem's first line) or after ``max_new_tokens``; a continuation that never reached
    ``stop`` is returned as it is, so ``len`` tells both cases apart only together
    with ``max_new_tokens``.  Prompts of equal length are sampled as one batch, in
    order, from one seeded generator, so the result is reproducible.
    """
    stop_ids = tokenizer.encode(stop)
    if len(stop_ids) != 1 or stop_ids[0] == tokenizer.unk_id:
        raise ValueError(f"stop must be one token of the vocabulary, got {stop!r}")
    if any(len(p) + max_new_tokens > block_size(model) for p in prompts):
        raise ValueError(
            "a prompt plus max_new_tokens exceeds the model's block_size "
            f"{block_size(model)}; use fewer demonstrations or a smaller max_new_tokens"
        )
    gen = torch.Generator(device=_device(model))
    gen.manual_seed(seed)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    out = [""] * len(prompts)
    for length in sorted(groups):
        members = groups[length]
        idx = torch.tensor([list(prompts[i]) for i in members], dtype=torch.long)
        seqs = generate(
            model,
            idx,
            max_new_tokens,
            strategy="sample",
            temperature=temperature,
            eos_id=stop_ids[0],
            generator=gen,
        ).tolist()
        for i, row in zip(members, seqs, strict=True):
            new = row[length:]
            if stop_ids[0] in new:
                new = new[: new.index(stop_ids[0])]
            out[i] = tokenizer.decode(new)
    return out


@torch.no_grad()
def token_losses(model: nn.Module, seqs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-position loss (nats) and top-1 hit of every row of ``seqs`` (``[n, T]`` token ids).

    Returns ``(loss, hit)``, each ``[n, T-1]``: column ``t`` is about predicting token
    ``t + 1`` of the row from tokens ``0 … t``.  For the copying test, make each row a
    text shown twice (e.g. ``few_shot_ids(tok, [text], text)``) and compare the columns
    of the first copy with those of the second.
    """
    if seqs.dim() != 2 or seqs.size(1) < 2:
        raise ValueError(f"seqs must be [n, T] token ids with T >= 2, got {tuple(seqs.shape)}")
    if seqs.size(1) - 1 > block_size(model):
        raise ValueError(
            f"rows of {seqs.size(1)} tokens exceed block_size {block_size(model)} + 1; "
            "use shorter texts"
        )
    was_training = model.training
    model.eval()
    try:
        logits = _logits(model, seqs[:, :-1].to(_device(model)))
    finally:
        model.train(was_training)
    tgt = seqs[:, 1:].to(logits.device)
    loss = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
    hit = logits.argmax(-1) == tgt
    return loss.cpu().numpy(), hit.cpu().numpy()
