"""Retrieval-augmented generation (RAG) with the book's small models: retrieve, pack, read.

The pipeline of :cite:`lewis2020retrieval` in its simplest form:

1. a retriever (:class:`llmbook.applications.retrieval.BM25` or ``DenseRetriever``) ranks
   the passages for a question;
2. :func:`pack_context` puts the top passages into the reader's context under a token
   budget, with explicit truncation rules;
3. a *reader* — a GPT fine-tuned on synthetic reading-comprehension data
   (:func:`make_cloze`; the artifact ``rag-reader``) — generates the answer greedily
   (:class:`Reader`), freely or constrained to copy a piece of the passages;
4. :func:`normalize_answer`, :func:`exact_match`, :func:`contains_match` and
   :func:`char_f1` score it.

:func:`answer` runs the whole pipeline for one question.

The prompt puts the question first, then the passages, then ``答：``::

    问：<question>
    资料1：<passage>
    资料2：<passage>
    答：<answer><eos>

so that while the model reads a passage it has already seen what is asked.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from llmbook.text.chinese import is_punct

__all__ = [
    "build_prompt",
    "to_corpus_width",
    "Packed",
    "pack_context",
    "Reader",
    "RAGAnswer",
    "answer",
    "condition_contexts",
    "normalize_answer",
    "exact_match",
    "contains_match",
    "char_f1",
    "ClozeItem",
    "cloze_candidates",
    "make_cloze",
    "WH_WORDS",
]


# --------------------------------------------------------------------------- prompts


def to_corpus_width(text: str) -> str:
    """ASCII digits and letters to their full-width forms (``1998`` → ``１９９８``).

    People's Daily writes numbers in full-width characters and the reader's character
    vocabulary comes from it, while people type ASCII digits in questions."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def build_prompt(question: str, passages: Sequence[str] = ()) -> str:
    """The reader's prompt: the question, the numbered passages, then ``答：``.

    With no passages it is the closed-book prompt ``问：…\\n答：``."""
    if not question.strip():
        raise ValueError("question is empty; give the text of the question")
    parts = [f"问：{to_corpus_width(question.strip())}\n"]
    parts += [f"资料{i}：{p}\n" for i, p in enumerate(passages, 1)]
    parts.append("答：")
    return "".join(parts)


@dataclass(frozen=True)
class Packed:
    """The result of :func:`pack_context`.

    ``passages`` are the passages as they went in (the last one possibly cut), ``n_tokens``
    the prompt's length in tokens (with the leading ``<bos>``), ``n_dropped`` how many
    passages were left out entirely and ``cut`` whether the last included one was cut.
    """

    prompt: str
    passages: tuple[str, ...]
    n_tokens: int
    n_dropped: int
    cut: bool


def pack_context(
    question: str,
    passages: Sequence[str],
    count_tokens: Callable[[str], int],
    budget: int,
    min_piece: int = 16,
) -> Packed:
    """Put as many of ``passages`` (best first) as fit in ``budget`` tokens.

    ``count_tokens(text)`` is the length of a prompt in tokens, including the ``<bos>``
    the reader puts first.  The rules, in order:

    1. the closed-book prompt (question alone) must fit, else ``ValueError``;
    2. passages are taken in the retriever's order, never reordered; each is included
       whole while the prompt still fits;
    3. the first passage that does not fit whole is cut to its longest prefix that fits,
       but only if that prefix has at least ``min_piece`` characters; otherwise it is
       dropped;
    4. packing stops there: later passages are dropped even if a short one would fit,
       so a lower-ranked passage never displaces a higher-ranked one.
    """
    if budget < 1:
        raise ValueError(f"budget must be a positive number of tokens, got {budget}")
    if min_piece < 1:
        raise ValueError(f"min_piece must be >= 1, got {min_piece}")
    base = count_tokens(build_prompt(question))
    if base > budget:
        raise ValueError(
            f"the question alone needs {base} tokens but the budget is {budget}; "
            "shorten the question or use a reader with a longer context (block_size)"
        )
    kept: list[str] = []
    for i, p in enumerate(passages):
        if count_tokens(build_prompt(question, [*kept, p])) <= budget:
            kept.append(p)
            continue
        lo, hi = 0, len(p)  # longest prefix p[:lo] that fits: binary search
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_tokens(build_prompt(question, [*kept, p[:mid]])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = lo >= min_piece
        if cut:
            kept.append(p[:lo])
        prompt = build_prompt(question, kept)
        return Packed(prompt, tuple(kept), count_tokens(prompt), len(passages) - i - cut, cut)
    prompt = build_prompt(question, kept)
    return Packed(prompt, tuple(kept), count_tokens(prompt), 0, False)


# --------------------------------------------------------------------------- the reader


class Reader:
    """A GPT that answers from its prompt: greedy decoding until ``<eos>`` or a newline.

    ``max_new_tokens`` bounds the answer; the context budget for the prompt is the
    model's ``block_size`` minus that, so prompt and answer always fit.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, max_new_tokens: int = 24) -> None:
        block = int(model.config.block_size)  # type: ignore[union-attr,arg-type]
        if not 1 <= max_new_tokens < block:
            raise ValueError(f"max_new_tokens must be in [1, {block - 1}], got {max_new_tokens}")
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.budget = block - max_new_tokens
        self._newline = tokenizer.encode("\n")

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt, ``<bos>`` first."""
        return [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]

    def count_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

    def pack(self, question: str, passages: Sequence[str], min_piece: int = 16) -> Packed:
        return pack_context(question, passages, self.count_tokens, self.budget, min_piece)

    @torch.no_grad()
    def generate(self, prompt: str, copy_from: Sequence[str] | None = None) -> str:
        """The greedy continuation of ``prompt`` up to ``<eos>``/newline (deterministic).

        With ``copy_from`` (the passages) decoding is *constrained to copy*: the first
        token must occur in a passage, every next one must continue a piece of a passage
        that the answer so far matches, and the answer may end anywhere after its first
        token — so the answer is always a substring of some passage.  Among the allowed
        tokens the model's most probable one is taken."""
        ids = self.encode(prompt)
        if len(ids) > self.budget:
            raise ValueError(
                f"prompt has {len(ids)} tokens, over the budget of {self.budget}; "
                "pack it with Reader.pack"
            )
        sources = [self.tokenizer.encode(p) for p in copy_from or ()]
        self.model.eval()
        device = next(self.model.parameters()).device
        cache = self.model.new_cache(1)  # type: ignore[operator]
        logits, _ = self.model(torch.tensor([ids], device=device), cache=cache)
        out: list[int] = []
        stop = {self.tokenizer.eos_id, *self._newline}
        for _ in range(self.max_new_tokens):
            if sources:
                allowed = _continuations(sources, out) - {self.tokenizer.unk_id}
                if not allowed:
                    break
                if out:
                    allowed |= stop
                mask = torch.full_like(logits[0, -1], float("-inf"))
                mask[sorted(allowed)] = 0.0
                nxt = int((logits[0, -1] + mask).argmax())
            else:
                nxt = int(logits[0, -1].argmax())
            if nxt in stop:
                break
            out.append(nxt)
            logits, _ = self.model(torch.tensor([[nxt]], device=device), cache=cache)
        return str(self.tokenizer.decode(out))

    @torch.no_grad()
    def confidence(self, prompt: str, text: str) -> float:
        """Geometric mean of the probabilities the model gives the tokens of ``text`` after
        ``prompt`` — how sure it is of an answer, whether the answer is right or not."""
        ids, ans = self.encode(prompt), self.tokenizer.encode(text)
        if not ans:
            raise ValueError("text is empty; give the answer whose confidence is wanted")
        self.model.eval()
        device = next(self.model.parameters()).device
        logits, _ = self.model(torch.tensor([ids + ans], device=device))
        logp = torch.log_softmax(logits[0, len(ids) - 1 : -1].float(), dim=-1)
        return float(logp.gather(1, torch.tensor(ans, device=device)[:, None]).mean().exp())

    def read(
        self, question: str, passages: Sequence[str] = (), copy: bool = False
    ) -> tuple[str, Packed]:
        """Pack ``passages`` for ``question`` and generate the answer (``copy``: constrained
        to copy from the packed passages; closed-book answers are always free)."""
        packed = self.pack(question, passages)
        return self.generate(packed.prompt, packed.passages if copy else None), packed


def _continuations(sources: Sequence[Sequence[int]], prefix: Sequence[int]) -> set[int]:
    """Tokens that follow an occurrence of ``prefix`` in any of ``sources`` (all tokens of
    the sources for an empty prefix)."""
    if not prefix:
        return {t for s in sources for t in s}
    n, first, out = len(prefix), prefix[0], set()
    for s in sources:
        for i in range(len(s) - n):
            if s[i] == first and list(s[i : i + n]) == list(prefix):
                out.add(s[i + n])
    return out


class Retriever(Protocol):
    def search(self, query: str, k: int = 10) -> list[int]: ...


@dataclass
class RAGAnswer:
    """One end-to-end answer: the text, the retrieved passage ids and the packed prompt."""

    text: str
    retrieved: list[int]
    packed: Packed = field(repr=False)


def answer(
    question: str,
    retriever: Retriever | None,
    k: int,
    *,
    reader: Reader,
    docs: Sequence[str],
    copy: bool = False,
) -> RAGAnswer:
    """Retrieve the top ``k`` of ``docs`` for ``question``, pack them, and read.

    ``retriever=None`` or ``k=0`` answers closed-book (no passages); ``copy`` constrains
    the answer to a piece of the retrieved passages (:meth:`Reader.generate`)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    ids = retriever.search(question, k) if retriever is not None and k > 0 else []
    text, packed = reader.read(question, [docs[i] for i in ids], copy=copy)
    return RAGAnswer(text, ids, packed)


# --------------------------------------------------------------------------- scoring


def condition_contexts(
    which: str | None,
    k: int,
    gold_passages: Sequence[str],
    docs: Sequence[str],
    rankings: Mapping[str, Any],
) -> list[list[str]]:
    """The passages each question gets under one evaluation condition.

    ``which=None`` is closed-book (no passages), ``"gold"`` gives each question its own
    ``gold_passages[i]``, and any other name takes the top ``k`` of ``rankings[which]``
    (one ranked list of indices into ``docs`` per question)."""
    if which is None:
        return [[] for _ in gold_passages]
    if which == "gold":
        return [[p] for p in gold_passages]
    if which not in rankings:
        raise KeyError(f"no ranking named {which!r}; have {sorted(rankings)}")
    return [[docs[i] for i in r[:k]] for r in rankings[which]]


def normalize_answer(text: str) -> str:
    """NFKC (full-width digits → ASCII), lower case, no spaces or punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in text if not c.isspace() and not is_punct(c))


def exact_match(prediction: str, gold: str) -> bool:
    """Are the two answers equal after :func:`normalize_answer`?"""
    return normalize_answer(prediction) == normalize_answer(gold)


def contains_match(prediction: str, gold: str) -> bool:
    """Does the normalised prediction contain the normalised gold answer?

    Lenient (an answer with extra words counts), so it is only meaningful for short
    predictions; the reader's answers are bounded by ``max_new_tokens``."""
    g = normalize_answer(gold)
    return bool(g) and g in normalize_answer(prediction)


def char_f1(prediction: str, gold: str) -> float:
    """F1 of the characters the normalised prediction and gold answer share (as multisets):
    partial credit for an answer with the right number but without its unit."""
    from collections import Counter

    p, g = Counter(normalize_answer(prediction)), Counter(normalize_answer(gold))
    common = sum((p & g).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- synthetic data

#: question word put in the blank, by the People's Daily tag of the answer span
WH_WORDS = {"m": "多少", "nr": "谁", "ns": "哪里", "nt": "哪个单位", "nz": "什么", "t": "什么时候"}

_DIGIT = re.compile(r"[0-9０-９]")
_SENT_END = "。！？；"


@dataclass(frozen=True)
class ClozeItem:
    """A synthetic reading-comprehension example built from one passage."""

    passage: str
    question: str
    answer: str
    kind: str  #: the tag of the span: m (number), nr, ns, nt, nz, t


def cloze_candidates(words: Sequence[str], tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Answer-like spans of a tagged sentence as ``(first word, end word, kind)``.

    Numbers with a digit (``m``, with the measure word after them: ``２０周年``), runs of
    person names (``nr``), places (``ns``), organisations (``nt``), other proper nouns
    (``nz``) and time words (``t``)."""
    out = []
    i = 0
    while i < len(words):
        tag = tags[i]
        if tag == "m" and _DIGIT.search(words[i]):
            j = i + 1 + (i + 1 < len(words) and tags[i + 1] == "q")
            out.append((i, j, "m"))
            i = j
        elif tag in WH_WORDS and tag != "m":
            j = i + 1
            while j < len(words) and tags[j] == tag:
                j += 1
            if sum(map(len, words[i:j])) >= 2:
                out.append((i, j, tag))
            i = j
        else:
            i += 1
    return out


def make_cloze(
    words: Sequence[str], tags: Sequence[str], rng: random.Random, max_question: int = 40
) -> ClozeItem | None:
    """One synthetic question about a tagged passage, or ``None`` if it has no span.

    A random answer-like span (:func:`cloze_candidates`) is replaced by a question word
    (:data:`WH_WORDS`; a number keeps its measure word: ``召开多少周年``); the question is
    the clause around the blank — from the previous comma or sentence start to the next
    punctuation — cut to ``max_question`` characters, ending in ``？``."""
    cands = cloze_candidates(words, tags)
    if not cands:
        return None
    i, j, kind = rng.choice(cands)
    span = "".join(words[i:j])
    wh = WH_WORDS[kind]
    if kind == "m" and j - i == 2:
        wh += words[i + 1]
    left_words = list(words[:i])
    start = len(left_words)
    while start > 0 and left_words[start - 1] not in _SENT_END + "，：":
        start -= 1
    left = "".join(left_words[start:])[-max_question // 2 :]
    right = ""
    for w in words[j:]:
        if all(is_punct(c) for c in w):
            break
        right += w
    question = (left + wh + right)[:max_question].rstrip("，、") + "？"
    if len(question) < len(wh) + 4:  # too little context to say which span is meant
        return None
    return ClozeItem("".join(words), question, span, kind)
