"""The machinery under :class:`~llmbook.models.ngram.NGramLM`: token lists and count tables.

Texts become token lists (:func:`tokenize_corpus`: characters, or jieba words); the
distinct m-grams of every order are stored as sorted integer keys
(``context_id * |V| + token``) with their raw and continuation counts
(:class:`OrderTable`), found with one vectorised sort (:func:`unique_keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["tokenize_corpus", "OrderTable", "TokenIds", "unique_keys", "empty_stats"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def tokenize_corpus(
    texts: Iterable[str] | Iterable[Sequence[str]], unit: str = "char"
) -> list[list[str]]:
    """Turn texts into token lists: characters (``unit="char"``) or jieba words (``"word"``).

    Items that are already sequences of strings (pre-tokenised) are kept as they are.
    """
    if isinstance(texts, str):
        raise TypeError(
            "expected an iterable of texts, got a single str; wrap it in a list: [text]"
        )
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
    cut = None
    if unit == "word":
        import jieba

        cut = jieba.lcut
    out: list[list[str]] = []
    for i, t in enumerate(texts):
        if isinstance(t, str):
            out.append(list(t) if cut is None else [w for w in cut(t) if w.strip()])
        elif isinstance(t, Sequence) and all(isinstance(w, str) for w in t):
            out.append(list(t))
        else:
            raise TypeError(
                f"text {i} is {type(t).__name__}; pass strings or lists of token strings"
            )
    return out


@dataclass
class OrderTable:
    """Tables of one order m: sorted keys of the distinct m-grams and their statistics."""

    keys: IntArray  # ctx_id * V + word, sorted; for m = 1 the token ids 0..V-1
    count: FloatArray  # raw count of each m-gram
    cont: FloatArray  # continuation count N1+(. gram) (filled for m < n)
    ctx_total: FloatArray  # per (m-1)-gram context: sum of raw counts (top) or cont counts
    ctx_types: FloatArray  # per context: distinct followers (continuation or raw)
    ctx_types_raw: FloatArray  # per context: distinct followers by raw counts (NLTK)


class TokenIds(dict[str, int]):
    """Token -> id with unknown tokens mapped to ``<unk>`` (fast with ``map``)."""

    def __init__(self, stoi: dict[str, int], unk: int) -> None:
        super().__init__(stoi)
        self.unk = unk

    def __missing__(self, key: str) -> int:
        return self.unk


def unique_keys(keys: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Like ``np.unique(return_index, return_inverse, return_counts)`` but with an unstable
    sort: the "first" index is *some* occurrence of each key, which is all we need."""
    order = np.argsort(keys)
    srt = keys[order]
    flag = np.empty(len(srt), dtype=bool)
    flag[:1] = True
    np.not_equal(srt[1:], srt[:-1], out=flag[1:])
    starts = np.flatnonzero(flag)
    inv = np.empty(len(keys), dtype=np.int64)
    inv[order] = np.cumsum(flag) - 1
    counts = np.diff(np.append(starts, len(srt)))
    return srt[starts], order[starts], inv, counts


def empty_stats() -> tuple[FloatArray, FloatArray, FloatArray]:
    return np.zeros(0), np.zeros(0), np.zeros(0)
