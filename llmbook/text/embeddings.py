r"""Word embeddings: gensim Word2Vec/FastText and the :class:`Embeddings` they share,
and evaluation on the book's Chinese analogy and word-similarity sets.

All models end up as an :class:`Embeddings` object (a word list and a matrix of vectors),
so nearest neighbours, similarities, analogies and the evaluations work the same way for
every model.  gensim models are trained with ``workers=1`` and a fixed ``seed`` so their
vectors are identical from run to run (gensim 4 draws the initial vectors from
``numpy.random.default_rng(seed)``; its ``hashfxn`` no longer takes part).

Skip-gram with negative sampling written out in PyTorch lives in :mod:`llmbook.text.sgns`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "Embeddings",
    "stable_hash",
    "people_daily_sentences",
    "train_word2vec",
    "train_fasttext",
]


FloatMatrix = npt.NDArray[np.float32]


def stable_hash(text: str) -> int:
    """A hash of ``text`` that, unlike ``hash()``, is the same in every Python process.

    Passed to gensim as ``hashfxn``.  gensim 3 seeded each word's initial vector with
    ``hashfxn(word + str(seed))``, so with the built-in ``hash`` the vectors changed
    whenever ``PYTHONHASHSEED`` did; gensim 4 initialises all vectors from one
    ``numpy.random.default_rng(seed)`` and only its unused ``seeded_vector`` calls
    ``hashfxn``.  Passing a stable hash keeps the result independent of the process on
    either version.
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


def _check_training_args(**args: float) -> None:
    """Reject settings gensim would silently accept (0 epochs trains nothing)."""
    for key in ("epochs", "min_count", "window"):
        v = args.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{key} must be an int >= 1, got {v!r}")
    for key in ("sample", "alpha"):
        v = args.get(key)
        if v is not None and not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise ValueError(f"{key} must be a number in [0, 1), got {v!r}")
    if args.get("alpha") == 0:
        raise ValueError("alpha must be > 0: with a zero learning rate nothing is learned")


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

    def save(
        self, folder: str | Path, dtype: str = "float16", top_n: int | None = None
    ) -> list[Path]:
        """Write the vectors to ``folder/vectors.npy`` and the words to ``folder/vocab.tsv``.

        ``vocab.tsv`` has one ``word<TAB>count`` line per row of ``vectors.npy`` (count 0
        when the counts are unknown).  ``top_n`` keeps only the ``top_n`` most frequent
        words (the first ``top_n`` rows when there are no counts); ``dtype`` ``"float16"``
        halves the size of ``"float32"`` at a cost far below the differences between
        models.  Plain ``.npy`` and text, so :meth:`load` never runs code from the files.
        A subword model is saved as its vocabulary vectors only.
        """
        if dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
        order = np.arange(len(self.words))
        if self.counts is not None:
            order = np.argsort(-np.asarray(self.counts), kind="stable")
        if top_n is not None:
            if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
                raise ValueError(f"top_n must be a positive int or None, got {top_n!r}")
            order = order[:top_n]
        bad = [w for w in self.words if "\t" in w or "\n" in w or "\r" in w]
        if bad:
            raise ValueError(f"words with a tab or newline cannot be saved to vocab.tsv: {bad[:3]}")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        counts = self.counts if self.counts is not None else [0] * len(self.words)
        vec_path, vocab_path = out / "vectors.npy", out / "vocab.tsv"
        np.save(vec_path, self.vectors[order].astype(dtype), allow_pickle=False)
        vocab_path.write_text(
            "".join(f"{self.words[i]}\t{counts[i]}\n" for i in order), encoding="utf-8"
        )
        return [vec_path, vocab_path]

    @classmethod
    def load(
        cls, vectors: str | Path, vocab: str | Path | None = None, name: str = "embeddings"
    ) -> Embeddings:
        """Read what :meth:`save` wrote: ``vectors`` is the ``.npy`` file (or the folder),
        ``vocab`` the ``vocab.tsv`` next to it unless given.  No pickle is ever loaded."""
        vec_path = Path(vectors)
        if vec_path.is_dir():
            vec_path = vec_path / "vectors.npy"
        vocab_path = Path(vocab) if vocab is not None else vec_path.with_name("vocab.tsv")
        for p in (vec_path, vocab_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found: write it with Embeddings.save(folder)")
        vecs = np.load(vec_path, allow_pickle=False)
        words, counts = [], []
        for n, line in enumerate(vocab_path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split("\t")
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{vocab_path}:{n}: expected word<TAB>count, got {line!r}")
            words.append(parts[0])
            counts.append(int(parts[1]))
        if len(words) != len(vecs):
            raise ValueError(
                f"{vocab_path} lists {len(words)} words but {vec_path} has {len(vecs)} vectors"
            )
        return cls(words, vecs.astype(np.float32), counts, name=name)

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
    sample: float = 1e-3,
    alpha: float = 0.025,
) -> Embeddings:
    """Word2Vec with gensim (``sg=1`` skip-gram, ``sg=0`` CBOW), deterministic: one worker
    and a fixed seed.

    ``sample`` is word2vec's subsampling threshold (gensim's default ``1e-3``; smaller
    values drop frequent words more often) and ``alpha`` the initial learning rate, which
    decays linearly to ``1e-4`` over all ``epochs``.  On a corpus of about a million words
    a few epochs leave the rare words undertrained, all pointing in one common direction
    (section 2.5 measures it); tens of epochs are needed.
    """
    from gensim.models import Word2Vec

    sents = _check_sentences(sentences)
    if sg not in (0, 1):
        raise ValueError(f"sg must be 1 (skip-gram) or 0 (CBOW), got {sg!r}")
    _check_training_args(
        epochs=epochs, min_count=min_count, window=window, sample=sample, alpha=alpha
    )
    model = Word2Vec(
        sents,
        sg=sg,
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        negative=negative,
        epochs=epochs,
        seed=seed,
        sample=sample,
        alpha=alpha,
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
    sample: float = 1e-3,
) -> Embeddings:
    """FastText (skip-gram over words plus character n-grams of length ``min_n..max_n``).

    For Chinese, character n-grams of length 1–3 are the natural subwords: a word never
    seen in training still gets a vector from its characters.
    """
    from gensim.models import FastText

    sents = _check_sentences(sentences)
    _check_training_args(epochs=epochs, min_count=min_count, window=window, sample=sample)
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
        sample=sample,
        workers=1,
        bucket=bucket,
        hashfxn=stable_hash,
    )
    return Embeddings.from_gensim(model, name="FastText")
