"""Multiple-choice evaluation by log-likelihood, as in lm-evaluation-harness, plus contamination.

A question is a context :math:`c` and choices :math:`a_1 … a_K`, one of them right.  The
model does not generate anything: each choice is scored by the log-probability the model
gives to its tokens after the context,

.. math::

    s(a_i) = \\sum_{t=1}^{|a_i|} \\log p(a_{i,t} \\mid \\langle bos \\rangle, c, a_{i,<t}),

and the prediction is :math:`\\arg\\max_i s(a_i)` (``acc``).  A sum favours short
choices, so the harness also reports ``acc_norm``, the argmax of :math:`s(a_i)` divided
by the choice's length — here its number of characters, the book's unit.

Conventions of this module:

* **Ties** get fractional credit: when ``m`` choices share the best score (within
  ``1e-6`` nats) and the right one is among them, the question counts ``1/m`` correct —
  the expected accuracy of breaking the tie at random.  A model that knows nothing and
  gives every choice the same score therefore scores *exactly* the chance rate (the
  harness instead takes the first of the tied choices).  The reported prediction is the
  lowest tied index.
* **Long questions**: when ``<bos>`` + context + choice is longer than the model's
  ``block_size``, the *context is cut from the left* (``<bos>`` first) so that the
  choice is always scored whole, after the most recent context; :attr:`MCResult.truncated`
  counts the questions where that happened.  A choice longer than ``block_size``
  tokens cannot be scored and raises ``ValueError``.
* Context and choice are encoded separately and concatenated (exact for the book's
  character tokenizers); a choice that encodes to no tokens is an error.

:func:`contamination_report` is the n-gram overlap check that GPT-3's authors used to
look for test questions inside the training data: a question is flagged when its text
shares a run of ``n`` characters with the training corpus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmbook.data.lmdata import right_pad
from llmbook.data.mcq import MCItem
from llmbook.interfaces import Tokenizer, block_size

__all__ = [
    "MCItem",
    "MCResult",
    "choice_logprobs",
    "evaluate_multiple_choice",
    "tie_credit",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "chance_p_value",
    "ContaminationReport",
    "contamination_report",
    "TIE_TOL",
]

#: Scores closer than this (nats) count as a tie.
TIE_TOL = 1e-6


def _check_items(items: Sequence[MCItem]) -> None:
    if isinstance(items, MCItem):
        raise TypeError("expected a list of MCItem, got one MCItem; wrap it: [item]")
    if not items:
        raise ValueError("no multiple-choice items to evaluate (the list is empty)")
    for k, it in enumerate(items):
        if len(it.choices) < 2:
            raise ValueError(
                f"item {k} ({it.id or 'no id'}) has {len(it.choices)} choice(s); need >= 2"
            )
        if not 0 <= it.answer < len(it.choices):
            raise ValueError(
                f"item {k} ({it.id or 'no id'}): answer index {it.answer} is out of range for "
                f"{len(it.choices)} choices (0 … {len(it.choices) - 1})"
            )


def _pairs(
    tokenizer: Tokenizer, items: Sequence[MCItem], block: int, add_bos: bool
) -> tuple[list[tuple[list[int], list[int]]], list[bool]]:
    """``(inputs, targets)`` for every (item, choice), and whether each item was truncated."""
    seqs: list[tuple[list[int], list[int]]] = []
    truncated = []
    for k, it in enumerate(items):
        ctx = ([tokenizer.bos_id] if add_bos else []) + tokenizer.encode(it.context)
        if not ctx:
            raise ValueError(
                f"item {k} ({it.id or 'no id'}) has an empty context and add_bos=False: "
                "nothing predicts the first token of a choice"
            )
        cut = False
        for i, choice in enumerate(it.choices):
            ids = tokenizer.encode(choice)
            if not ids:
                raise ValueError(
                    f"item {k} ({it.id or 'no id'}): choice {i} ({choice!r}) encodes to no "
                    "tokens, so it has no likelihood to compare"
                )
            if len(ids) > block:
                raise ValueError(
                    f"item {k} ({it.id or 'no id'}): choice {i} is {len(ids)} tokens, longer than "
                    f"the model's block_size {block}; it cannot be scored in one window"
                )
            full = ctx + ids
            inputs, targets = full[:-1], [-100] * (len(ctx) - 1) + ids
            if len(inputs) > block:
                inputs, targets = inputs[-block:], targets[-block:]
                cut = True
            seqs.append((inputs, targets))
        truncated.append(cut)
    return seqs, truncated


@torch.no_grad()
def choice_logprobs(
    model: nn.Module,
    tokenizer: Tokenizer,
    items: Sequence[MCItem],
    batch_size: int = 64,
    device: torch.device | str | None = None,
    add_bos: bool = True,
) -> tuple[list[list[float]], int]:
    """Summed log-probabilities (nats) of every choice given its context, batched.

    Returns ``(scores, n_truncated)`` with ``scores[k][i]`` the score :math:`s(a_i)` of
    choice ``i`` of item ``k``.  All (item, choice) sequences are sorted by length and
    right-padded within a batch of ``batch_size``; the model is put in ``eval()`` mode
    for the computation and restored afterwards.
    """
    _check_items(items)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seqs, truncated = _pairs(tokenizer, items, block_size(model), add_bos)
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    flat = [0.0] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda j: len(seqs[j][0]))
    pad_id = getattr(tokenizer, "pad_id", 0)
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            idx, _ = right_pad([seqs[j][0] for j in rows], pad_id)
            tgt, _ = right_pad([seqs[j][1] for j in rows], -100)
            idx, tgt = idx.to(device), tgt.to(device)
            out: Any = model(idx)
            logits = out[0] if isinstance(out, tuple) else out
            logp = F.log_softmax(logits.float(), dim=-1)
            mask = tgt != -100
            picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            sums = (picked * mask).sum(dim=1).double().cpu().tolist()
            for j, s in zip(rows, sums, strict=True):
                flat[j] = float(s)
    finally:
        model.train(was_training)
    scores: list[list[float]] = []
    pos = 0
    for it in items:
        scores.append(flat[pos : pos + len(it.choices)])
        pos += len(it.choices)
    return scores, sum(truncated)


def tie_credit(scores: Sequence[float], answer: int, tol: float = TIE_TOL) -> tuple[float, int]:
    """``(credit, prediction)``: 1/m if the answer is among the m best scores, else 0.

    ``prediction`` is the lowest index among the best (tied) scores.
    """
    best = max(scores)
    tied = [i for i, s in enumerate(scores) if s >= best - tol]
    return (1.0 / len(tied) if answer in tied else 0.0), tied[0]


def bootstrap_ci(
    values: Sequence[float], n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (items resampled with replacement).

    Seeded (``numpy.random.default_rng(seed)``), so the same values give the same interval.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_diff_ci(
    x: Sequence[float],
    y: Sequence[float],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(x) - mean(y)`` for two independent samples.

    Each sample is resampled with replacement on its own (seeded), e.g. the per-item
    credit of a model on two different question sets.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("bootstrap_diff_ci needs at least one value in each sample")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(ma - mb, [alpha, 1 - alpha])
    return float(lo), float(hi)


def chance_p_value(n_correct: float, chance: Sequence[float]) -> float:
    """One-sided p-value of getting at least ``n_correct`` right by guessing.

    Item ``k`` is guessed right with probability ``chance[k]`` (1 / its number of
    choices); the number right is then Poisson-binomial, computed exactly by dynamic
    programming (the plain binomial when every item has the same number of choices).
    A fractional ``n_correct`` (tie credit) is rounded down, which only makes the
    p-value larger (more cautious).
    """
    p = np.asarray(chance, dtype=float)
    dist = np.zeros(p.size + 1)
    dist[0] = 1.0
    for q in p:
        dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
        dist[0] *= 1 - q
    k = max(0, math.floor(n_correct + 1e-9))
    return float(min(1.0, dist[k:].sum()))


@dataclass(frozen=True)
class MCResult:
    """Accuracy of a model on multiple-choice items, with its uncertainty.

    ``accuracy``/``acc_norm``: mean tie-aware credit with raw and per-character scores;
    ``ci``/``ci_norm``: 95 % percentile bootstrap intervals; ``chance``: the random
    baseline (mean of 1/number of choices); ``p_value``/``p_value_norm``: one-sided
    probability of doing at least this well by guessing; ``scores``: summed
    log-probabilities (nats) of every choice; ``truncated``: items whose context was cut.
    """

    n: int
    accuracy: float
    acc_norm: float
    chance: float
    ci: tuple[float, float]
    ci_norm: tuple[float, float]
    p_value: float
    p_value_norm: float
    correct: tuple[float, ...]
    correct_norm: tuple[float, ...]
    predictions: tuple[int, ...]
    predictions_norm: tuple[int, ...]
    scores: tuple[tuple[float, ...], ...]
    truncated: int

    def summary(self) -> str:
        """One line: accuracy with its interval, against chance."""
        lo, hi = self.ci
        nlo, nhi = self.ci_norm
        return (
            f"acc {self.accuracy:.3f} (95% CI {lo:.3f}-{hi:.3f}), acc_norm {self.acc_norm:.3f} "
            f"({nlo:.3f}-{nhi:.3f}), chance {self.chance:.3f}, p = {self.p_value:.2g}, "
            f"{self.n} items"
        )

    def to_dict(self) -> dict[str, Any]:
        """The headline numbers (no per-item lists), rounded for printing."""
        return {
            "items": self.n,
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(self.ci[0], 4), round(self.ci[1], 4)],
            "acc_norm": round(self.acc_norm, 4),
            "ci95_norm": [round(self.ci_norm[0], 4), round(self.ci_norm[1], 4)],
            "chance": round(self.chance, 4),
            "p_value": float(f"{self.p_value:.3g}"),
            "truncated": self.truncated,
        }


def evaluate_multiple_choice(
    model: nn.Module,
    tokenizer: Tokenizer,
    items: Sequence[MCItem],
    *,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
    add_bos: bool = True,
) -> MCResult:
    """Score every choice (:func:`choice_logprobs`), then accuracy, interval and p-value.

    ``acc`` picks the choice with the largest summed log-probability, ``acc_norm`` the
    largest per character (``score / len(choice)``); ties get fractional credit
    (:func:`tie_credit`).  ``n_boot`` bootstrap resamples with ``seed`` give the intervals.
    """
    items = items if isinstance(items, MCItem) else list(items)
    scores, n_trunc = choice_logprobs(
        model, tokenizer, items, batch_size=batch_size, device=device, add_bos=add_bos
    )
    raw = [tie_credit(s, it.answer) for s, it in zip(scores, items, strict=True)]
    norm = [
        tie_credit([x / len(c) for x, c in zip(s, it.choices, strict=True)], it.answer)
        for s, it in zip(scores, items, strict=True)
    ]
    chance = [1.0 / len(it.choices) for it in items]
    correct = [c for c, _ in raw]
    correct_norm = [c for c, _ in norm]
    return MCResult(
        n=len(items),
        accuracy=float(np.mean(correct)),
        acc_norm=float(np.mean(correct_norm)),
        chance=float(np.mean(chance)),
        ci=bootstrap_ci(correct, n_boot=n_boot, seed=seed),
        ci_norm=bootstrap_ci(correct_norm, n_boot=n_boot, seed=seed),
        p_value=chance_p_value(sum(correct), chance),
        p_value_norm=chance_p_value(sum(correct_norm), chance),
        correct=tuple(correct),
        correct_norm=tuple(correct_norm),
        predictions=tuple(p for _, p in raw),
        predictions_norm=tuple(p for _, p in norm),
        scores=tuple(tuple(s) for s in scores),
        truncated=n_trunc,
    )


@dataclass(frozen=True)
class ContaminationReport:
    """Which items share an ``n``-character run with the training corpus.

    ``flagged[k]`` is true when item ``k``'s text has one; ``share`` is the flagged
    fraction; ``examples`` maps up to five flagged items' indices to one shared n-gram.
    """

    n: int
    flagged: tuple[bool, ...]
    share: float
    examples: dict[int, str]


def _ngrams(text: str, n: int) -> set[str]:
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def contamination_report(
    items: Sequence[MCItem | str], train_texts: Iterable[str], n: int = 8
) -> ContaminationReport:
    """Flag items whose text shares an ``n``-gram of characters with ``train_texts``.

    An item's text is its context followed by its right answer (:attr:`MCItem.text`);
    plain strings are checked as they are.  GPT-3's authors used 13 *words*; a line of a
    five-character poem is 6 characters with its punctuation, so ``n=8`` characters
    already spans more than one line.  Texts shorter than ``n`` can never be flagged.
    The training corpus is streamed once against the items' n-grams, so memory stays
    small whatever its size.
    """
    if isinstance(train_texts, str):
        raise TypeError("train_texts must be a list of texts, got one str; wrap it: [text]")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    texts = [it if isinstance(it, str) else it.text for it in items]
    if not texts:
        raise ValueError("contamination_report got no items")
    grams = [_ngrams(t, n) for t in texts]
    wanted: set[str] = set().union(*grams)
    seen: set[str] = set()
    for doc in train_texts:
        for i in range(len(doc) - n + 1):
            gram = doc[i : i + n]
            if gram in wanted:
                seen.add(gram)
    flagged = tuple(bool(g & seen) for g in grams)
    examples: dict[int, str] = {}
    for k, g in enumerate(grams):
        if flagged[k] and len(examples) < 5:
            examples[k] = min(g & seen)
    return ContaminationReport(n, flagged, sum(flagged) / len(flagged), examples)
