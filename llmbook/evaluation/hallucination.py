"""Hallucination: confident, well-formed answers that are wrong, and what the model "knows".

A language model trained to predict the next token learns the *form* of an answer long
before (and far more reliably than) its content.  For the 作者 task of
:mod:`llmbook.evaluation.poem_tasks` this module provides:

* :func:`fabricated_couplets`: couplets that occur in no poem — two lines from
  different poems (``"mix"``) or the characters of a real couplet shuffled
  (``"shuffle"``) — checked against the corpus with :func:`occurs_in`;
* :func:`answer_logprobs`: the model's log-probability of a given answer (its tokens
  and the end marker) after a prompt, for calibration;
* :func:`is_abstention` and :func:`classify_answers`: right, well-formed but wrong,
  malformed, or "I don't know".
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llmbook.data.poetry import Poem
from llmbook.interfaces import Tokenizer
from llmbook.text.chat import ROLE_CHAT, Template

__all__ = [
    "ABSTAIN_MARKERS",
    "UNKNOWN_AUTHORS",
    "author_question",
    "occurs_in",
    "fabricated_couplets",
    "answer_logprobs",
    "is_abstention",
    "classify_answers",
]

#: phrases that mark an answer as "I don't know"
ABSTAIN_MARKERS = ("不知", "不清楚", "不确定", "无法", "未知", "不详", "查不到", "没有这")
#: names the corpus uses for unknown poets: answering one of them is a kind of abstention
UNKNOWN_AUTHORS = frozenset({"佚名", "无名氏", "失名", "无名"})


def author_question(line1: str, line2: str) -> str:
    """The 作者 instruction of :mod:`~llmbook.evaluation.poem_tasks` for a couplet."""
    return f"{line1}，{line2}。这两句诗的作者是谁？"


def occurs_in(texts: Iterable[str], fragments: Sequence[str]) -> list[bool]:
    """For each fragment, whether it is a substring of some text (punctuation included)."""
    joined = "\n".join(texts)
    return [f in joined for f in fragments]


def _lines(p: Poem) -> list[str]:
    return [line for line in p.lines if line]


def fabricated_couplets(
    poems: Sequence[Poem],
    n: int,
    mode: str = "mix",
    corpus: Iterable[str] = (),
    seed: int = 0,
) -> list[tuple[str, str]]:
    """``n`` couplets ``(line1, line2)`` that occur in no text of ``corpus``.

    ``mode="mix"`` pairs the first line of one poem with the second line of another of
    the same length (each line is real, the couplet is not); ``mode="shuffle"``
    permutes the characters of a real couplet, so neither line is real.  Candidates
    whose lines (``shuffle``) or whose ``"line1，line2"`` (``mix``) occur in a
    ``corpus`` text are dropped.
    """
    if mode not in ("mix", "shuffle"):
        raise ValueError(f"mode must be 'mix' or 'shuffle', got {mode!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    pool = [ls[:2] for p in poems if len(ls := _lines(p)) >= 2 and len(ls[0]) == len(ls[1])]
    if len(pool) < 2:
        raise ValueError("need at least two poems whose first two lines have equal length")
    joined = "\n".join(corpus)
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(100 * n):
        if len(out) == n:
            break
        a, b = rng.sample(pool, 2)
        if mode == "mix":
            if len(a[0]) != len(b[1]):
                continue
            pair = (a[0], b[1])
            probes = [f"{a[0]}，{b[1]}"]
        else:
            chars = list(a[0] + a[1])
            rng.shuffle(chars)
            k = len(a[0])
            pair = ("".join(chars[:k]), "".join(chars[k:]))
            probes = list(pair)
        if pair in seen or any(p in joined for p in probes):
            continue
        seen.add(pair)
        out.append(pair)
    if len(out) < n:
        raise ValueError(f"found only {len(out)} fabricated couplets of {n}; pass more poems")
    return out


@torch.no_grad()
def answer_logprobs(
    model: nn.Module,
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    template: Template = ROLE_CHAT,
) -> list[float]:
    """``ln p(answer, end marker | prompt)`` for each ``(instruction, answer)``.

    The sum over the answer's tokens and the end marker of the log-probability the model
    gives them after the prompt (:meth:`Template.prompt_ids`): ``exp`` of it is the
    probability that sampling at temperature 1 would produce exactly this answer.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for instruction, answer in pairs:
        prompt = template.prompt_ids(tokenizer, instruction)
        ans = template.answer_ids(tokenizer, answer)
        ids = torch.tensor([prompt + ans], device=device)
        logits = model(ids[:, :-1])[0][0, len(prompt) - 1 :]  # predictions of the answer
        lp = -F.cross_entropy(logits.float(), ids[0, len(prompt) :], reduction="sum")
        out.append(float(lp))
    return out


def is_abstention(answer: str) -> bool:
    """Whether ``answer`` declines: a phrase of :data:`ABSTAIN_MARKERS` or an unknown poet."""
    a = answer.strip()
    return a in UNKNOWN_AUTHORS or any(m in a for m in ABSTAIN_MARKERS)


def classify_answers(
    answers: Sequence[str], truths: Sequence[str | None], authors: frozenset[str]
) -> list[str]:
    """Label each answer ``"right"``, ``"abstain"``, ``"wrong"`` (a known poet, not the
    author — a confident hallucination) or ``"malformed"`` (not a poet's name).

    ``truths[i]`` is ``None`` for a fabricated couplet: there every named poet is wrong.
    """
    if len(answers) != len(truths):
        raise ValueError(f"{len(answers)} answers but {len(truths)} truths")
    labels = []
    for a, t in zip(answers, truths):
        a = a.strip()
        if t is not None and a == t:
            labels.append("right")
        elif is_abstention(a):
            labels.append("abstain")
        elif a in authors:
            labels.append("wrong")
        else:
            labels.append("malformed")
    return labels
