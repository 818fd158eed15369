r"""Word embeddings: gensim Word2Vec/FastText, skip-gram with negative sampling in PyTorch,
and evaluation on the book's Chinese analogy and word-similarity sets.

All models end up as an :class:`Embeddings` object (a word list and a matrix of vectors),
so nearest neighbours, similarities, analogies and the evaluations work the same way for
every model.  gensim models are trained with ``workers=1`` and a fixed ``seed`` so their
vectors are identical from run to run.

Skip-gram with negative sampling (SGNS, Mikolov et al. 2013) maximises, for each
(centre word :math:`c`, context word :math:`o`) pair and :math:`K` words :math:`n_k`
drawn from the unigram distribution raised to the power 3/4,

.. math::

    \log\sigma(\mathbf u_o^\top\mathbf v_c) + \sum_{k=1}^{K}\log\sigma(-\mathbf u_{n_k}^\top\mathbf v_c),

where :math:`\mathbf v` are the "input" (centre) vectors — the embeddings we keep — and
:math:`\mathbf u` the "output" (context) vectors.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = [
    "Embeddings",
    "stable_hash",
    "SGNSResult",
    "people_daily_sentences",
    "train_word2vec",
    "train_fasttext",
    "SkipGramNS",
    "train_sgns",
]


FloatMatrix = npt.NDArray[np.float32]


def stable_hash(text: str) -> int:
    """A hash of ``text`` that, unlike ``hash()``, is the same in every Python process.

    gensim seeds each word's initial vector with ``hashfxn(word + str(seed))``; with the
    built-in ``hash`` the vectors would change whenever ``PYTHONHASHSEED`` does.
    """
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "little")


def people_daily_sentences(segmentation: str = "gold", drop_punct: bool = True) -> list[list[str]]:
    """People's Daily (Jan 1998) as lists of words for embedding training.

    ``segmentation="gold"`` uses the corpus's human segmentation, ``"jieba"`` re-segments
    the text with jieba's precise mode.  Words are normalised with
    :func:`llmbook.text.chinese.clean_text` (full-width digits and letters to ASCII);
    punctuation tokens are dropped unless ``drop_punct=False``.
    """
    from llmbook.data.people_daily import load_people_daily
    from llmbook.text.chinese import FULLWIDTH_ALNUM, clean_text, is_punct, segment

    if segmentation not in ("gold", "jieba"):
        raise ValueError(f"segmentation must be 'gold' or 'jieba', got {segmentation!r}")
    out = []
    for s in load_people_daily():
        if segmentation == "gold":
            words = [w.translate(FULLWIDTH_ALNUM) for w in s.words]
        else:
            words = segment(clean_text(s.text))
        words = [w for w in words if w and not (drop_punct and is_punct(w))]
        if words:
            out.append(words)
    return out


def _check_sentences(sentences: Iterable[Sequence[str]]) -> list[list[str]]:
    if isinstance(sentences, str):
        raise TypeError("expected a list of tokenised sentences (lists of words), got a str")
    out = []
    for i, s in enumerate(sentences):
        if isinstance(s, str):
            raise TypeError(
                f"sentence {i} is a str; pass lists of words (segment the text first, "
                "e.g. with llmbook.text.chinese.segment_corpus)"
            )
        words = list(s)
        for w in words:
            if not isinstance(w, str):
                raise TypeError(
                    f"sentence {i} contains {type(w).__name__} {w!r}; words must be str"
                )
        out.append(words)
    if not any(out):
        raise ValueError("the training corpus is empty: pass at least one non-empty sentence")
    return out


class Embeddings:
    """Word vectors with cosine-similarity queries.

    ``words[i]`` has vector ``vectors[i]``; ``counts`` (optional) are corpus frequencies.
    A model that can build vectors for unseen words (FastText) passes ``oov`` —
    a function word -> vector — and :meth:`vector` uses it for words outside ``words``.
    """

    def __init__(
        self,
        words: Sequence[str],
        vectors: npt.ArrayLike,
        counts: Sequence[int] | None = None,
        oov: Any = None,
        name: str = "embeddings",
    ) -> None:
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(words):
            raise ValueError(f"need one vector per word: {len(words)} words, vectors {vecs.shape}")
        if len(words) == 0:
            raise ValueError("an Embeddings object needs at least one word")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.vectors = vecs
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        self.unit = vecs / np.maximum(norms, 1e-12)
        self.counts = list(counts) if counts is not None else None
        self._oov = oov
        self.name = name

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"Embeddings({self.name!r}, {len(self.words)} words, dim={self.dim})"

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def from_gensim(cls, model: Any, name: str = "gensim") -> Embeddings:
        """From a trained gensim ``Word2Vec``/``FastText`` model (or its ``KeyedVectors``)."""
        kv = getattr(model, "wv", model)
        words = list(kv.index_to_key)
        counts = [int(kv.get_vecattr(w, "count")) for w in words]
        oov = kv.get_vector if type(kv).__name__ == "FastTextKeyedVectors" else None
        return cls(words, kv.vectors, counts, oov=oov, name=name)

    def can_embed(self, word: str) -> bool:
        """True when :meth:`vector` works for ``word`` (in vocabulary, or subword model)."""
        return word in self.index or self._oov is not None

    def vector(self, word: str) -> FloatMatrix:
        """The vector of ``word`` (FastText-style models also embed unseen words)."""
        if not isinstance(word, str):
            raise TypeError(f"word must be a str, got {type(word).__name__}")
        i = self.index.get(word)
        if i is not None:
            return self.vectors[i]
        if self._oov is not None:
            return np.asarray(self._oov(word), dtype=np.float32)
        raise KeyError(
            f"{word!r} is not in the vocabulary of {self.name} ({len(self.words)} words; "
            "it was rarer than min_count or absent from the corpus). Try another word, lower "
            "min_count, or use a subword model such as FastText"
        )

    def _unit(self, word: str) -> FloatMatrix:
        v = self.vector(word)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(self._unit(a) @ self._unit(b))

    def nearest(
        self, query: str | npt.ArrayLike, k: int = 10, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """The ``k`` vocabulary words most cosine-similar to a word or a vector."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        excl = set(exclude)
        if isinstance(query, str):
            q = self._unit(query)
            excl.add(query)
        elif isinstance(query, (list, tuple, np.ndarray, torch.Tensor)):
            q = np.asarray(query, dtype=np.float32)
            if q.shape != (self.dim,):
                raise ValueError(f"query vector must have shape ({self.dim},), got {q.shape}")
            q = q / max(float(np.linalg.norm(q)), 1e-12)
        else:
            raise TypeError(f"query must be a word (str) or a vector, got {type(query).__name__}")
        available = len(self.words) - sum(1 for w in excl if w in self.index)
        if k > available:
            raise ValueError(
                f"k={k} is larger than the {available} candidate words of {self.name}: use k <= {available}"
            )
        sims = self.unit @ q
        order = np.argsort(-sims, kind="stable")
        out = []
        for i in order:
            w = self.words[i]
            if w in excl:
                continue
            out.append((w, float(sims[i])))
            if len(out) == k:
                break
        return out

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        r"""Solve a : b = c : ? by 3CosAdd: the word nearest to :math:`b - a + c`.

        The three question words are excluded from the answers.
        """
        q = self._unit(b) - self._unit(a) + self._unit(c)
        return self.nearest(q, k=k, exclude=(a, b, c))


def train_word2vec(
    sentences: Iterable[Sequence[str]],
    sg: int = 1,
    vector_size: int = 100,
    window: int = 5,
    min_count: int = 5,
    negative: int = 5,
    epochs: int = 5,
    seed: int = 0,
) -> Embeddings:
    """Word2Vec with gensim (``sg=1`` skip-gram, ``sg=0`` CBOW), deterministic: one worker,
    a fixed seed and a process-independent hash for the initial vectors."""
    from gensim.models import Word2Vec

    sents = _check_sentences(sentences)
    if sg not in (0, 1):
        raise ValueError(f"sg must be 1 (skip-gram) or 0 (CBOW), got {sg!r}")
    model = Word2Vec(
        sents,
        sg=sg,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        negative=negative,
        epochs=epochs,
        seed=seed,
        workers=1,
        hashfxn=stable_hash,
    )
    return Embeddings.from_gensim(model, name="skip-gram" if sg else "CBOW")


def train_fasttext(
    sentences: Iterable[Sequence[str]],
    vector_size: int = 100,
    window: int = 5,
    min_count: int = 5,
    min_n: int = 1,
    max_n: int = 3,
    epochs: int = 5,
    seed: int = 0,
    bucket: int = 200_000,
) -> Embeddings:
    """FastText (skip-gram over words plus character n-grams of length ``min_n..max_n``).

    For Chinese, character n-grams of length 1–3 are the natural subwords: a word never
    seen in training still gets a vector from its characters.
    """
    from gensim.models import FastText

    sents = _check_sentences(sentences)
    model = FastText(
        sents,
        sg=1,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        min_n=min_n,
        max_n=max_n,
        epochs=epochs,
        seed=seed,
        workers=1,
        bucket=bucket,
        hashfxn=stable_hash,
    )
    return Embeddings.from_gensim(model, name="FastText")


class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling: input (centre) and output (context) embeddings."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.inp = nn.Embedding(vocab_size, dim)
        self.out = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out.weight)

    def forward(
        self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Mean negative log-likelihood of a batch: ``center``/``context`` [B], ``negatives`` [B, K]."""
        v = self.inp(center)  # [B, D]
        pos = (self.out(context) * v).sum(-1)  # [B]
        neg = torch.bmm(self.out(negatives), v.unsqueeze(-1)).squeeze(-1)  # [B, K]
        loss = -(nn.functional.logsigmoid(pos) + nn.functional.logsigmoid(-neg).sum(-1))
        return loss.mean()


@dataclass
class SGNSResult:
    embeddings: Embeddings
    losses: list[float]
    pairs_per_epoch: int
    seconds: float


def _skipgram_pairs(
    ids: list[npt.NDArray[np.int64]], window: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All (centre, context) pairs with word2vec's shrunk random window, vectorised per offset."""
    seq = np.concatenate(ids)
    sent = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
    radius = rng.integers(1, window + 1, size=len(seq))
    cs, os_ = [], []
    for d in range(1, window + 1):
        for sign in (-1, 1):
            j = np.arange(len(seq)) + sign * d
            ok = (j >= 0) & (j < len(seq)) & (radius >= d)
            i = np.flatnonzero(ok)
            i = i[sent[i] == sent[j[i]]]
            cs.append(seq[i])
            os_.append(seq[j[i]])
    return np.concatenate(cs), np.concatenate(os_)


def train_sgns(
    sentences: Iterable[Sequence[str]],
    dim: int = 100,
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    epochs: int = 2,
    batch_size: int = 1024,
    lr: float = 0.005,
    subsample: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
    num_threads: int = 1,
) -> SGNSResult:
    """Train :class:`SkipGramNS` with Adam; returns the input vectors as :class:`Embeddings`.

    Frequent words are subsampled as in word2vec (a word of relative frequency ``f`` is
    kept with probability :math:`\\min(1, \\sqrt{t/f} + t/f)`, ``t = subsample``), pairs are
    re-drawn each epoch, and negatives come from the unigram distribution to the 3/4.
    The small per-step tensors run fastest on one thread (``num_threads``; the previous
    setting is restored afterwards).
    """

    sents = _check_sentences(sentences)
    if min_count < 1 or window < 1 or negative < 1 or epochs < 1:
        raise ValueError("min_count, window, negative and epochs must all be >= 1")
    counts = Counter(w for s in sents for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if len(words) < 2:
        raise ValueError(
            f"only {len(words)} word(s) occur at least min_count={min_count} times: "
            "use more text or a lower min_count"
        )
    index = {w: i for i, w in enumerate(words)}
    freq = np.array([counts[w] for w in words], dtype=np.float64)
    ids = [np.array([index[w] for w in s if w in index], dtype=np.int64) for s in sents]
    ids = [x for x in ids if len(x) > 1]
    total = freq.sum()
    keep_p = np.minimum(1.0, np.sqrt(subsample * total / freq) + subsample * total / freq)
    noise = torch.tensor(freq**0.75 / (freq**0.75).sum(), dtype=torch.float)

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return _train_sgns_loop(
            sents,
            counts,
            words,
            keep_p,
            noise,
            ids,
            dim,
            window,
            negative,
            epochs,
            batch_size,
            lr,
            seed,
            progress,
        )
    finally:
        torch.set_num_threads(prev_threads)


def _train_sgns_loop(
    sents: list[list[str]],
    counts: Counter[str],
    words: list[str],
    keep_p: npt.NDArray[np.float64],
    noise: torch.Tensor,
    ids: list[npt.NDArray[np.int64]],
    dim: int,
    window: int,
    negative: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
) -> SGNSResult:
    import time

    from llmbook.optim import optimizer_step
    from llmbook.utils import progress_bar

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SkipGramNS(len(words), dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    t0 = time.perf_counter()
    n_pairs = 0
    for _ in range(epochs):
        kept = [x[rng.random(len(x)) < keep_p[x]] for x in ids]
        c_np, o_np = _skipgram_pairs([x for x in kept if len(x) > 1], window, rng)
        perm = rng.permutation(len(c_np))
        center, context = torch.from_numpy(c_np[perm]), torch.from_numpy(o_np[perm])
        n_pairs = len(center)
        steps = math.ceil(n_pairs / batch_size)
        running = 0.0
        for step in progress_bar(range(steps), disable=not progress, desc="SGNS", leave=False):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            c, o = center[sl], context[sl]
            neg = torch.multinomial(noise, len(c) * negative, replacement=True, generator=gen)
            loss = model(c, o, neg.view(len(c), negative))
            optimizer_step(model, opt, loss)  # a constant learning rate, no clipping
            running += loss.item()
        losses.append(running / steps)
    emb = Embeddings(
        words,
        model.inp.weight.detach().numpy().copy(),
        [counts[w] for w in words],
        name="SGNS（PyTorch）",
    )
    return SGNSResult(emb, losses, n_pairs, time.perf_counter() - t0)
