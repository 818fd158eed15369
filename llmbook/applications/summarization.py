r"""Extractive summarisation of news: TextRank over sentences and the lead baseline.

* :func:`people_daily_articles` cuts the People's Daily lines (one paragraph per line,
  headlines on their own short lines) into articles with a headline and body paragraphs.
* :func:`split_sentences` splits Chinese text after 。！？ (keeping closing quotes).
* :func:`textrank` scores sentences with TextRank :cite:`mihalcea2004textrank`: a graph whose
  nodes are sentences, edge weights the word overlap

  .. math:: w_{ij} = \frac{|S_i\cap S_j|}{\log(1+|S_i|) + \log(1+|S_j|)},

  (word sets :math:`S`; the paper uses :math:`\log|S|`, the +1 keeps one-word sentences
  finite), and PageRank scores :math:`r = (1-d)/n + d\,M^\top r` with :math:`M` the row-normalised
  weight matrix and damping :math:`d=0.85`, computed by power iteration.
* :func:`textrank_summary` keeps the ``k`` best sentences in document order;
  :func:`lead_summary` keeps the first ``k`` sentences (the classic news baseline).

An extractive summary can only copy sentences; it cannot compress, paraphrase or fuse
facts from several sentences — which is what a headline does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Article",
    "people_daily_articles",
    "is_headline",
    "split_sentences",
    "sentence_graph",
    "pagerank",
    "textrank",
    "textrank_summary",
    "lead_summary",
]

_END = "。！？!?"
_CLOSE = "”’」』）)"
_SENT_RE = re.compile(rf"[^{_END}]*[{_END}]+[{_CLOSE}]*|[^{_END}]+$")


def split_sentences(text: str) -> list[str]:
    """Split after 。！？ (runs of them and a following closing quote stay attached)."""
    return [s.strip() for s in _SENT_RE.findall(text) if s.strip()]


def is_headline(line: str, max_chars: int = 40) -> bool:
    """A People's Daily line that looks like a headline: short, without sentence-final
    punctuation at its end, and not a photo caption or byline in parentheses."""
    line = line.strip()
    if not line or len(line) > max_chars:
        return False
    if line[-1] in _END + "”’；;：:，,、" or line.startswith(("（", "(")):
        return False
    return True


@dataclass(frozen=True)
class Article:
    """A news article: ``title`` (its first headline line), ``paragraphs``, ``line`` index."""

    title: str
    paragraphs: tuple[str, ...]
    line: int

    @property
    def text(self) -> str:
        return "".join(self.paragraphs)

    @property
    def sentences(self) -> list[str]:
        return [s for p in self.paragraphs for s in split_sentences(p)]


def people_daily_articles(
    lines: Sequence[str] | None = None, min_sentences: int = 4, min_title_chars: int = 6
) -> list[Article]:
    """Segment People's Daily lines into articles.

    A run of headline lines (:func:`is_headline`) starts an article; the first of them is
    its title, the following non-headline lines are its paragraphs (parenthesised captions
    such as 「（新华社记者…摄）」 are dropped).  Articles with fewer than ``min_sentences``
    sentences or a title shorter than ``min_title_chars`` are skipped.
    """
    if lines is None:
        from llmbook.data.people_daily import people_daily_text

        lines = people_daily_text()
    articles: list[Article] = []
    title: str | None = None
    start = 0
    body: list[str] = []

    def flush() -> None:
        if title is not None and len(title) >= min_title_chars and body:
            art = Article(title, tuple(body), start)
            if len(art.sentences) >= min_sentences:
                articles.append(art)

    in_head = False
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if is_headline(line):
            if not in_head:
                flush()
                title, start, body = line, i, []
                in_head = True
            continue
        in_head = False
        if line.startswith(("（", "(")) and line.endswith(("）", ")")):
            continue  # photo caption or byline
        body.append(line)
    flush()
    return articles


def _words(sentence: str) -> list[str]:
    import jieba

    return [w for w in jieba.lcut(sentence) if w.strip() and not re.fullmatch(r"\W+", w)]


def sentence_graph(
    sentences: Sequence[str], tokenizer: Callable[[str], list[str]] | None = None
) -> np.ndarray:
    """Symmetric TextRank weight matrix ``[n, n]`` (zero diagonal) of ``sentences``."""
    tok = tokenizer or _words
    sets = [set(tok(s)) for s in sentences]
    n = len(sets)
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            overlap = len(sets[i] & sets[j])
            if overlap == 0:
                continue
            denom = math.log(max(len(sets[i]), 1) + 1) + math.log(max(len(sets[j]), 1) + 1)
            w[i, j] = w[j, i] = overlap / denom
    return w


def pagerank(
    weights: np.ndarray, damping: float = 0.85, tol: float = 1e-10, max_iter: int = 500
) -> np.ndarray:
    """PageRank of a weighted graph by power iteration; rows with no edges spread evenly.

    Returns scores summing to 1.
    """
    if not 0 < damping < 1:
        raise ValueError(f"damping must be in (0, 1), got {damping}")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square matrix, got shape {w.shape}")
    n = w.shape[0]
    if n == 0:
        return np.zeros(0)
    out = w.sum(1, keepdims=True)
    m = np.where(out > 0, w / np.where(out == 0, 1, out), 1.0 / n)  # row-stochastic
    r = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        new = (1 - damping) / n + damping * (m.T @ r)
        if np.abs(new - r).sum() < tol:
            r = new
            break
        r = new
    return r / r.sum()


def textrank(
    sentences: Sequence[str], tokenizer: Callable[[str], list[str]] | None = None
) -> np.ndarray:
    """TextRank score of each sentence."""
    return pagerank(sentence_graph(sentences, tokenizer))


def textrank_summary(
    text_or_sentences: str | Sequence[str],
    k: int = 1,
    tokenizer: Callable[[str], list[str]] | None = None,
) -> str:
    """The ``k`` highest-scoring sentences, joined in their original order."""
    sents = (
        split_sentences(text_or_sentences)
        if isinstance(text_or_sentences, str)
        else list(text_or_sentences)
    )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(sents) <= k:
        return "".join(sents)
    scores = textrank(sents, tokenizer)
    best = sorted(np.argsort(-scores, kind="stable")[:k])
    return "".join(sents[i] for i in best)


def lead_summary(text_or_sentences: str | Sequence[str], k: int = 1) -> str:
    """The first ``k`` sentences (the lead baseline)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sents = (
        split_sentences(text_or_sentences)
        if isinstance(text_or_sentences, str)
        else list(text_or_sentences)
    )
    return "".join(sents[:k])
