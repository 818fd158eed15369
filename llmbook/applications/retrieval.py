r"""Passage retrieval for question answering: BM25 from scratch and dense (embedding) search.

* :class:`BM25` — the Okapi BM25 ranking function :cite:`robertson2009probabilistic`

  .. math:: \mathrm{score}(q,d)=\sum_{t\in q}\mathrm{IDF}(t)\,
            \frac{f(t,d)\,(k_1+1)}{f(t,d)+k_1\big(1-b+b\,\frac{|d|}{\mathrm{avgdl}}\big)},\qquad
            \mathrm{IDF}(t)=\ln\Big(1+\frac{N-n_t+0.5}{n_t+0.5}\Big)

  where :math:`f(t,d)` is the count of term :math:`t` in passage :math:`d`, :math:`n_t`
  the number of passages containing it and :math:`N` the number of passages.  This IDF is
  Lucene's, never negative; ``rank_bm25.BM25Okapi`` uses
  :math:`\ln\frac{N-n_t+0.5}{n_t+0.5}` (floored at a quarter of the mean IDF), so its scores
  differ (tests/test_retrieval.py checks ours against rank_bm25 with this IDF plugged in).
* :class:`DenseRetriever` — cosine similarity between vectors from any ``embed`` function,
  e.g. :func:`mean_word_vectors` over a gensim word2vec model.
* :class:`BagEncoder` and :func:`train_contrastive` — a dense encoder trained *for
  retrieval*: the mean of learned vectors of a text's characters and character bigrams,
  trained with the in-batch contrastive loss on pairs of random crops of one passage
  (no labelled questions needed).
* :func:`topk_accuracy` — share of questions whose gold passage is among the top ``k``;
  :func:`gold_ranks` and :func:`rank_metrics` — the rank of every gold passage, and top-1,
  recall@k and mean reciprocal rank from them.
* :func:`load_qa` — the book's hand-written question set ``data/eval/qa_zh.jsonl``.
"""

from __future__ import annotations

import json
import math
import random
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmbook.text.chinese import is_punct

__all__ = [
    "tokenize_zh",
    "BM25",
    "DenseRetriever",
    "mean_word_vectors",
    "char_ngrams",
    "BagEncoder",
    "train_contrastive",
    "topk_accuracy",
    "gold_ranks",
    "rank_metrics",
    "chance_metrics",
    "QAItem",
    "load_qa",
    "qa_passages",
    "gold_segmentation",
]


def tokenize_zh(text: str, mode: str = "word") -> list[str]:
    """Tokens for retrieval: jieba words (``"word"``), characters (``"char"``) or character
    bigrams (``"bigram"``); whitespace and punctuation are dropped.  The text is first
    NFKC-normalised, so full-width digits and letters (``１９９８``) match ASCII ones."""
    text = unicodedata.normalize("NFKC", text)
    if mode == "word":
        import jieba

        return [w for w in jieba.lcut(text) if w.strip() and not is_punct(w)]
    chars = [c for c in text if not c.isspace() and not is_punct(c)]
    if mode == "char":
        return chars
    if mode == "bigram":
        return [a + b for a, b in zip(chars, chars[1:])] or chars
    raise ValueError(f"mode must be 'word', 'char' or 'bigram', got {mode!r}")


class BM25:
    """Okapi BM25 over a fixed list of passages (inverted index in NumPy arrays).

    Args:
        docs: the passages as strings.
        k1: term-frequency saturation (1.2–2.0 is usual).
        b: length normalisation, 0 (none) to 1 (full).
        tokenizer: ``str -> list[str]``; default :func:`tokenize_zh` word mode.
        doc_tokens: the passages already tokenised (saves re-tokenising them when several
            retrievers share one tokenisation); queries still go through ``tokenizer``.
    """

    def __init__(
        self,
        docs: Sequence[str],
        k1: float = 1.5,
        b: float = 0.75,
        tokenizer: Callable[[str], list[str]] | None = None,
        doc_tokens: Sequence[Sequence[str]] | None = None,
    ) -> None:
        if not docs:
            raise ValueError("BM25 needs at least one passage; docs is empty")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1, self.b = k1, b
        self.tokenizer = tokenizer or tokenize_zh
        self.n_docs = len(docs)
        postings: dict[str, tuple[list[int], list[int]]] = {}
        lengths = np.zeros(self.n_docs, dtype=np.float64)
        if doc_tokens is not None and len(doc_tokens) != len(docs):
            raise ValueError(
                f"doc_tokens has {len(doc_tokens)} entries for {len(docs)} passages; give one each"
            )
        for i, doc in enumerate(docs):
            counts = Counter(doc_tokens[i] if doc_tokens is not None else self.tokenizer(doc))
            lengths[i] = sum(counts.values())
            for term, c in counts.items():
                ids, tfs = postings.setdefault(term, ([], []))
                ids.append(i)
                tfs.append(c)
        self.doc_len = lengths
        self.avgdl = float(lengths.mean()) or 1.0
        self.index = {
            t: (np.asarray(ids, dtype=np.int64), np.asarray(tfs, dtype=np.float64))
            for t, (ids, tfs) in postings.items()
        }

    def idf(self, term: str) -> float:
        """Non-negative IDF of ``term`` (0 contribution for unseen terms)."""
        n = len(self.index[term][0]) if term in self.index else 0
        return math.log(1.0 + (self.n_docs - n + 0.5) / (n + 0.5))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query`` (repeated query terms count repeatedly)."""
        out = np.zeros(self.n_docs, dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * self.doc_len / self.avgdl)
        for term in self.tokenizer(query):
            if term not in self.index:
                continue
            ids, tf = self.index[term]
            out[ids] += self.idf(term) * tf * (self.k1 + 1.0) / (tf + norm[ids])
        return out

    def search(self, query: str, k: int = 10) -> list[int]:
        """Indices of the ``k`` best passages, best first (ties by lower index)."""
        return _top_k(self.scores(query), k)


def _top_k(scores: np.ndarray, k: int) -> list[int]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(scores))
    order = np.lexsort((np.arange(len(scores)), -scores))  # score desc, index asc
    return [int(i) for i in order[:k]]


class DenseRetriever:
    """Rank passages by cosine similarity of embeddings.

    ``embed`` maps a list of strings to an array ``[n, d]``; passages are embedded once.
    Zero vectors (e.g. texts with no known word) get similarity 0 to everything.
    """

    def __init__(self, docs: Sequence[Any], embed: Callable[[Sequence[Any]], np.ndarray]):
        if not docs:
            raise ValueError("DenseRetriever needs at least one passage; docs is empty")
        self.embed = embed
        self.doc_vecs = self._normalise(np.asarray(embed(list(docs)), dtype=np.float32))
        if self.doc_vecs.shape[0] != len(docs):
            raise ValueError(
                f"embed returned {self.doc_vecs.shape[0]} vectors for {len(docs)} passages; "
                "it must return one row per input text"
            )

    @staticmethod
    def _normalise(v: np.ndarray) -> np.ndarray:
        if v.ndim != 2:
            raise ValueError(f"embed must return a 2-D array [n, dim], got shape {v.shape}")
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(norm == 0, 1.0, norm)

    def scores(self, query: str) -> np.ndarray:
        q = self._normalise(np.asarray(self.embed([query]), dtype=np.float32))[0]
        return self.doc_vecs @ q

    def search(self, query: str, k: int = 10) -> list[int]:
        return _top_k(self.scores(query).astype(np.float64), k)


def mean_word_vectors(
    vectors: object,
    tokenizer: Callable[[str], list[str]] | None = None,
    idf: dict[str, float] | None = None,
) -> Callable[[Sequence[Any]], np.ndarray]:
    r"""An ``embed`` function: the (IDF-weighted) mean of word vectors of each text,
    :math:`\mathbf{e}(d)=\sum_{w\in d}\mathrm{idf}(w)\,\mathbf{v}_w \big/ \sum_{w\in d}\mathrm{idf}(w)`.

    ``vectors`` is a gensim ``KeyedVectors`` (``model.wv``) or anything with
    ``__contains__``, ``__getitem__`` and ``vector_size``; unknown words are skipped.  Each
    input may be a string (tokenised with ``tokenizer``) or an already tokenised list.
    """
    tok = tokenizer or tokenize_zh
    dim = int(vectors.vector_size)  # type: ignore[attr-defined]

    def embed(texts: Sequence[Any]) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for i, text in enumerate(texts):
            total = 0.0
            for w in tok(text) if isinstance(text, str) else text:
                if w in vectors:  # type: ignore[operator]
                    weight = idf.get(w, 1.0) if idf is not None else 1.0
                    out[i] += weight * np.asarray(vectors[w])  # type: ignore[index]
                    total += weight
            if total:
                out[i] /= total
        return out

    return embed


def topk_accuracy(
    ranked: Sequence[Sequence[int]], gold: Sequence[int], ks: Iterable[int] = (1, 5, 10)
) -> dict[int, float]:
    """``{k: share of questions whose gold passage id is in the first k of its ranking}``."""
    if len(ranked) != len(gold):
        raise ValueError(f"{len(ranked)} rankings but {len(gold)} gold ids; give one per question")
    if not gold:
        raise ValueError("no questions given")
    return {k: sum(g in list(r)[:k] for r, g in zip(ranked, gold)) / len(gold) for k in ks}


class Scorer(Protocol):
    """Anything with ``scores(query) -> one score per passage`` (BM25, DenseRetriever)."""

    def scores(self, query: str) -> np.ndarray: ...


def gold_ranks(retriever: Scorer, queries: Sequence[str], gold: Sequence[int]) -> list[int]:
    """Rank (1 = first) of each query's gold passage in ``retriever``'s full ranking.

    Ties are broken as in ``search`` (lower passage index first), so ``rank <= k``
    exactly when the gold passage is in ``search(query, k)``.
    """
    if len(queries) != len(gold):
        raise ValueError(f"{len(queries)} queries but {len(gold)} gold ids; give one per query")
    if not gold:
        raise ValueError("no queries given")
    ranks = []
    for query, g in zip(queries, gold):
        s = np.asarray(retriever.scores(query), dtype=np.float64)
        if not 0 <= g < len(s):
            raise ValueError(f"gold passage {g} is outside the {len(s)} passages")
        ahead = int((s > s[g]).sum()) + int((s[:g] == s[g]).sum())
        ranks.append(ahead + 1)
    return ranks


def rank_metrics(ranks: Sequence[int], ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """``{"top-1", "recall@k" for k in ks, "MRR"}`` from the ranks of the gold passages.

    Recall@k is the share of queries whose gold passage is among the first ``k`` (with one
    gold passage per query it equals top-k accuracy); MRR is the mean of ``1 / rank``.
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0 or (r < 1).any():
        raise ValueError("ranks must be a non-empty list of ranks >= 1")
    out = {"top-1": float((r <= 1).mean())}
    out.update({f"recall@{k}": float((r <= k).mean()) for k in ks})
    out["MRR"] = float((1.0 / r).mean())
    return out


def chance_metrics(n_passages: int, ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """What :func:`rank_metrics` expects from a random ranking of ``n_passages`` passages:
    recall@k is ``k / n``, MRR is the mean of ``1 / rank`` over ranks ``1 … n``."""
    if n_passages < 1:
        raise ValueError(f"n_passages must be >= 1, got {n_passages}")
    out = {"top-1": 1.0 / n_passages}
    out.update({f"recall@{k}": min(k, n_passages) / n_passages for k in ks})
    out["MRR"] = float(np.sum(1.0 / np.arange(1, n_passages + 1)) / n_passages)
    return out


# --------------------------------------------------------------- a dense encoder, trained


def char_ngrams(text: str) -> list[str]:
    """Characters and character bigrams of ``text`` (NFKC, no whitespace or punctuation)."""
    chars = tokenize_zh(text, "char")
    return chars + [a + b for a, b in zip(chars, chars[1:])]


class BagEncoder(nn.Module):
    r"""Dense text vectors: the mean of learned vectors of the text's characters and bigrams.

    .. math:: \mathbf{e}(d) = \frac{1}{|G(d)|}\sum_{g\in G(d)} \mathbf{v}_{h(g)},
              \qquad \text{score}(q,d) = \cos\big(\mathbf{e}(q),\mathbf{e}(d)\big)

    :math:`G(d)` are the characters and bigrams of :math:`d` (:func:`char_ngrams`) and
    :math:`h` hashes each into one of ``buckets`` rows (CRC-32, the same on every
    machine), so no vocabulary is needed.  The vectors start random
    (:math:`\mathcal N(0, 0.1^2)`) and are trained by :func:`train_contrastive`.
    """

    def __init__(self, buckets: int = 1 << 18, dim: int = 64, seed: int = 0) -> None:
        super().__init__()
        if buckets < 1 or dim < 1:
            raise ValueError(f"buckets and dim must be >= 1, got {buckets}, {dim}")
        self.buckets = buckets
        self.table = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.table.weight.normal_(0.0, 0.1, generator=gen)

    def ids(self, grams: Sequence[str]) -> list[int]:
        """Bucket of every n-gram."""
        return [zlib.crc32(g.encode("utf-8")) % self.buckets for g in grams]

    def forward(self, bags: Sequence[Sequence[int]]) -> torch.Tensor:
        """Unit-length vectors ``[len(bags), dim]`` of bags of bucket ids (an empty bag
        gives the zero vector)."""
        flat = torch.from_numpy(np.concatenate([np.asarray(b, dtype=np.int64) for b in bags]))
        offsets = torch.tensor(np.cumsum([0] + [len(b) for b in bags[:-1]]), dtype=torch.long)
        return F.normalize(self.table(flat, offsets), dim=-1)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        """Vectors of ``texts`` as a NumPy array, for :class:`DenseRetriever`."""
        bags = [self.ids(char_ngrams(t)) for t in texts]
        parts = [self(bags[i : i + batch_size]) for i in range(0, len(bags), batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.table.embedding_dim))


def _crop(unigrams: np.ndarray, bigrams: np.ndarray, length: int, rng: random.Random) -> np.ndarray:
    """Bucket ids of a random crop of ``length`` characters: its characters and bigrams."""
    n = len(unigrams)
    start = rng.randrange(n - length + 1) if n > length else 0
    end = min(n, start + length)
    return np.concatenate([unigrams[start:end], bigrams[start : max(start, end - 1)]])


def train_contrastive(
    encoder: BagEncoder,
    passages: Sequence[str],
    *,
    steps: int = 150,
    batch_size: int = 256,
    lr: float = 0.02,
    temperature: float = 0.05,
    query_chars: tuple[int, int] = (8, 24),
    passage_chars: tuple[int, int] = (24, 64),
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    r"""Train ``encoder`` so that two pieces of the same passage get similar vectors.

    Each step draws ``batch_size`` passages; from passage :math:`i` a short random crop
    :math:`q_i` (``query_chars`` characters) plays the question and a longer one
    :math:`d_i` (``passage_chars``) the passage.  The loss is the in-batch contrastive
    (InfoNCE) loss: with :math:`s_{ij}=\cos(\mathbf e(q_i),\mathbf e(d_j))/\tau`,

    .. math:: \mathcal L = -\frac1B\sum_i \log
              \frac{\exp s_{ii}}{\sum_j \exp s_{ij}} ,

    so every other passage of the batch is a negative.  Crops of one passage share its
    names and rare words but little of its common words, so the encoder learns to put
    weight on what identifies a passage.  Returns the loss per step (SparseAdam).
    """
    if len(passages) < 2:
        raise ValueError("train_contrastive needs at least two passages (one is a negative)")
    if not 2 <= batch_size <= len(passages):
        raise ValueError(f"batch_size must be in [2, {len(passages)}], got {batch_size}")
    from llmbook.utils import progress_bar

    # bucket ids of every passage's characters and bigrams, computed once; a crop of
    # characters [a, b) is then unigrams[a:b] + bigrams[a:b-1]
    unigrams, bigrams = [], []
    for p in passages:
        cs = tokenize_zh(p, "char")
        unigrams.append(np.asarray(encoder.ids(cs), dtype=np.int64))
        bigrams.append(np.asarray(encoder.ids([x + y for x, y in zip(cs, cs[1:])]), dtype=np.int64))

    rng = random.Random(seed)
    opt = torch.optim.SparseAdam(list(encoder.parameters()), lr=lr)
    labels = torch.arange(batch_size)
    encoder.train()
    losses = []
    for _ in progress_bar(range(steps), disable=not progress, desc="contrastive"):
        batch = rng.sample(range(len(passages)), batch_size)
        q = encoder([_crop(unigrams[i], bigrams[i], rng.randint(*query_chars), rng) for i in batch])
        d = encoder(
            [_crop(unigrams[i], bigrams[i], rng.randint(*passage_chars), rng) for i in batch]
        )
        loss = F.cross_entropy(q @ d.T / temperature, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    encoder.eval()
    return losses


# --------------------------------------------------------------------------- the QA set


@dataclass(frozen=True)
class QAItem:
    """A question with the People's Daily paragraph that answers it and a short answer."""

    id: str
    question: str
    passage_id: int
    passage: str
    answer: str


def qa_passages(min_chars: int = 20) -> tuple[list[int], list[str]]:
    """The retrieval collection: People's Daily paragraphs with ``>= min_chars`` characters.

    Repeated paragraphs are kept once (first occurrence).  Returns
    ``(line ids into people_daily_text(), texts)``.
    """
    from llmbook.data.people_daily import people_daily_text

    seen: set[str] = set()
    ids = []
    for i, t in enumerate(people_daily_text()):
        if len(t) >= min_chars and t not in seen:
            seen.add(t)
            ids.append(i)
    lines = people_daily_text()
    return ids, [lines[i] for i in ids]


def gold_segmentation() -> dict[int, list[str]]:
    """People's Daily gold word segmentation, ``{line id: words}``, NFKC-normalised and
    without punctuation (the same normalisation as :func:`tokenize_zh`)."""
    from llmbook.data.people_daily import load_people_daily

    out = {}
    for i, sent in enumerate(load_people_daily()):
        words = [unicodedata.normalize("NFKC", w) for w in sent.words]
        out[i] = [w for w in words if w.strip() and not is_punct(w)]
    return out


def load_qa(path: str | None = None) -> list[QAItem]:
    """The hand-written QA set (``data/eval/qa_zh.jsonl``), checked against the corpus.

    Every ``passage`` must equal ``people_daily_text()[passage_id]`` and contain ``answer``;
    a mismatch raises ``ValueError`` naming the question.
    """
    from llmbook.data.people_daily import people_daily_text
    from llmbook.data.registry import data_path

    p = path or data_path("eval/qa_zh.jsonl")
    lines = people_daily_text()
    items = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            item = QAItem(d["id"], d["question"], int(d["passage_id"]), d["passage"], d["answer"])
            if not 0 <= item.passage_id < len(lines) or lines[item.passage_id] != item.passage:
                raise ValueError(
                    f"{p}:{n} ({item.id}): passage does not match People's Daily line "
                    f"{item.passage_id}; fix passage_id or the passage text"
                )
            if item.answer not in item.passage:
                raise ValueError(
                    f"{p}:{n} ({item.id}): answer {item.answer!r} is not in its passage"
                )
            items.append(item)
    return items
