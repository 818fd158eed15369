r"""Chinese text processing: cleaning, jieba segmentation, stop words, counting, Zipf's law,
and scoring a segmenter against a gold segmentation.

Chinese is written without spaces, so "words" only exist after *segmentation*.  This
module wraps jieba (precise / full / search modes, optional user dictionary) behind
small functions that validate their input, and adds the measurements the book makes on
segmented text: word-frequency counts, the Zipf slope, and word-level precision /
recall / F1 of a segmentation against the People's Daily gold standard.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "clean_text",
    "segment",
    "segment_corpus",
    "make_segmenter",
    "load_stopwords",
    "remove_stopwords",
    "is_punct",
    "count_tokens",
    "zipf_fit",
    "ZipfFit",
    "word_spans",
    "segmentation_scores",
    "segmentation_errors",
    "words_missing_from_jieba",
    "SEGMENT_MODES",
    "FULLWIDTH_ALNUM",
]

#: jieba's three cutting modes.
SEGMENT_MODES = ("precise", "full", "search")

_URL = re.compile(r"https?://\S+|www\.\S+")
_SPACE = re.compile(r"[ \t\u3000\xa0]+")
#: full-width digits and Latin letters -> ASCII (``str.translate`` table)
FULLWIDTH_ALNUM = {c: c - 0xFEE0 for c in range(0xFF10, 0xFF5B) if chr(c - 0xFEE0).isalnum()}
_CTRL = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\ufeff]")


def _check_str(text: object, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    return text


def clean_text(
    text: str,
    *,
    halfwidth_alnum: bool = True,
    remove_urls: bool = True,
    to_simplified: bool = False,
) -> str:
    """Normalise one text for counting and modelling.

    * control and zero-width characters are removed, runs of spaces (also the full-width
      space U+3000) become one space, leading/trailing space is stripped;
    * ``halfwidth_alnum``: full-width digits and Latin letters (``１９９８``, ``ＡＢＣ``)
      become ASCII — Chinese punctuation such as ``，`` and ``。`` is kept as it is;
    * ``remove_urls``: ``http://…`` and ``www.…`` are deleted;
    * ``to_simplified``: traditional characters are converted with OpenCC (t2s).
    """
    _check_str(text)
    text = _CTRL.sub("", text)
    if remove_urls:
        text = _URL.sub("", text)
    if halfwidth_alnum:
        text = text.translate(FULLWIDTH_ALNUM)
    if to_simplified:
        text = _opencc_t2s().convert(text)
    return _SPACE.sub(" ", text).strip()


@lru_cache(maxsize=1)
def _opencc_t2s() -> Any:
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=1)
def _default_jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba.dt


def make_segmenter(
    user_words: Iterable[str | tuple[str, int]] = (), user_dict: str | Path | None = None
) -> Any:
    """A separate ``jieba.Tokenizer`` with extra words, leaving jieba's global one untouched.

    ``user_words`` are words (optionally ``(word, freq)`` pairs) to add; ``user_dict`` is
    a file in jieba's format (``word [freq [tag]]`` per line).
    """
    import jieba

    jieba.setLogLevel(logging.WARNING)
    seg = jieba.Tokenizer()
    seg.initialize()
    if user_dict is not None:
        path = Path(user_dict)
        if not path.is_file():
            raise FileNotFoundError(f"user dictionary {path} does not exist")
        seg.load_userdict(str(path))
    for w in user_words:
        if isinstance(w, tuple):
            seg.add_word(w[0], freq=w[1])
        else:
            seg.add_word(_check_str(w, "a user word"))
    return seg


def segment(text: str, mode: str = "precise", hmm: bool = True, segmenter: Any = None) -> list[str]:
    """Cut ``text`` into words with jieba.

    ``mode="precise"`` gives one segmentation (the default for modelling), ``"full"``
    lists every dictionary word found (overlapping), ``"search"`` is precise mode plus the
    shorter words inside long ones (for search-engine indexing).  ``hmm`` lets jieba guess
    words missing from its dictionary with its HMM.  Whitespace tokens are dropped.
    """
    _check_str(text)
    if mode not in SEGMENT_MODES:
        raise ValueError(f"mode must be one of {SEGMENT_MODES}, got {mode!r}")
    seg = segmenter if segmenter is not None else _default_jieba()
    if mode == "precise":
        words = seg.lcut(text, HMM=hmm)
    elif mode == "full":
        words = seg.lcut(text, cut_all=True)
    else:
        words = seg.lcut_for_search(text, HMM=hmm)
    return [w for w in words if w.strip()]


def segment_corpus(
    texts: Iterable[str], mode: str = "precise", hmm: bool = True, segmenter: Any = None
) -> list[list[str]]:
    """:func:`segment` every text of a corpus (raises ``ValueError`` on an empty corpus)."""
    if isinstance(texts, str):
        raise TypeError("segment_corpus expects a list of texts; for one text use segment(text)")
    out = [segment(t, mode, hmm, segmenter) for t in texts]
    if not out:
        raise ValueError("the corpus is empty: pass at least one text")
    return out


@lru_cache(maxsize=1)
def load_stopwords() -> frozenset[str]:
    """The book's Chinese stop-word list (``data/stopwords_zh.txt``, one word per line)."""
    from llmbook.data.registry import data_path

    lines = data_path("stopwords_zh.txt").read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


def remove_stopwords(tokens: Sequence[str], stopwords: Iterable[str] | None = None) -> list[str]:
    """Drop stop words and pure punctuation from a token list."""
    if isinstance(tokens, str):
        raise TypeError("remove_stopwords expects a list of tokens; segment the text first")
    stop = load_stopwords() if stopwords is None else frozenset(stopwords)
    return [t for t in tokens if t not in stop and not is_punct(t)]


def is_punct(token: str) -> bool:
    """Is ``token`` made only of punctuation, symbols and spaces?

    A character counts when its Unicode category is punctuation (``P*``: ，。、“”《》—…
    ,.!?), a symbol (``S*``: ＋￥%°～) or a separator (``Z*``: the spaces ' ' and '\u3000').
    Such tokens carry no word, so the empty token counts too.  Control characters such as
    ``"\n"`` do not: test those with ``str.isspace``.

    >>> is_punct("，"), is_punct("……"), is_punct("１９９８"), is_punct("不错！")
    (True, True, False, False)
    """
    return all(unicodedata.category(c)[0] in "PSZ" for c in token)


def count_tokens(token_lists: Iterable[Sequence[str]]) -> Counter[str]:
    """Frequency of every token over a segmented corpus."""
    c: Counter[str] = Counter()
    for toks in token_lists:
        if isinstance(toks, str):
            raise TypeError("count_tokens expects lists of tokens, got a str; segment it first")
        c.update(toks)
    if not c:
        raise ValueError("the corpus has no tokens: nothing to count")
    return c


@dataclass(frozen=True)
class ZipfFit:
    r"""Least-squares line :math:`\log_{10} f = a + s\log_{10} r` over ranks ``r_min..r_max``."""

    slope: float
    intercept: float
    r_min: int
    r_max: int
    r2: float


def zipf_fit(counts: Counter[str] | Sequence[int], r_min: int = 10, r_max: int = 10_000) -> ZipfFit:
    """Fit Zipf's law :math:`f(r) \\propto r^{s}` on the log–log rank–frequency curve.

    The very top ranks (function words) and the long tail of hapaxes bend away from a
    straight line, so the fit uses ranks ``r_min..r_max`` only (clipped to the data).
    """
    freqs = np.sort(
        np.asarray(list(counts.values()) if isinstance(counts, Counter) else counts, float)
    )[::-1]
    if len(freqs) < 3:
        raise ValueError(f"need at least 3 distinct tokens to fit Zipf's law, got {len(freqs)}")
    r_max = min(r_max, len(freqs))
    if not 1 <= r_min < r_max:
        raise ValueError(f"need 1 <= r_min < r_max, got r_min={r_min}, r_max={r_max}")
    ranks = np.arange(1, len(freqs) + 1)
    x = np.log10(ranks[r_min - 1 : r_max])
    y = np.log10(freqs[r_min - 1 : r_max])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    r2 = 1 - resid.var() / y.var()
    return ZipfFit(float(slope), float(intercept), r_min, r_max, float(r2))


# ---------------------------------------------------------------------- segmentation quality


def word_spans(words: Sequence[str]) -> set[tuple[int, int]]:
    """Character spans ``(start, end)`` of a segmentation: two segmentations of the same
    text agree on a word exactly when they share its span."""
    spans, i = set(), 0
    for w in words:
        spans.add((i, i + len(w)))
        i += len(w)
    return spans


def segmentation_scores(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> dict[str, float]:
    r"""Word-level precision, recall and F1 of ``pred`` against ``gold`` (micro-averaged).

    A predicted word is correct when the gold segmentation has a word with the same
    character span: :math:`P = |G\cap S|/|S|`, :math:`R = |G\cap S|/|G|`,
    :math:`F_1 = 2PR/(P+R)`.  Both must segment the same texts.
    """
    if len(gold) != len(pred):
        raise ValueError(
            f"gold has {len(gold)} sentences but pred has {len(pred)}: pass aligned lists"
        )
    if not gold:
        raise ValueError("nothing to score: gold is empty")
    n_gold = n_pred = n_ok = 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        if "".join(g) != "".join(p):
            raise ValueError(
                f"sentence {i}: gold and prediction are not segmentations of the same text "
                "(whitespace dropped or text changed?)"
            )
        gs, ps = word_spans(g), word_spans(p)
        n_gold += len(gs)
        n_pred += len(ps)
        n_ok += len(gs & ps)
    prec = n_ok / n_pred if n_pred else 0.0
    rec = n_ok / n_gold if n_gold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "gold_words": n_gold, "pred_words": n_pred}


def segmentation_errors(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], top: int = 10
) -> list[tuple[str, str, int]]:
    """The most frequent disagreements as ``(gold words, predicted words, count)``.

    Each disagreement is a minimal stretch of text where the two segmentations place
    different boundaries, shown with ``/`` between words, e.g. ``("一九九八年", "一九九八/年")``.
    """
    errs: Counter[tuple[str, str]] = Counter()
    for g, p in zip(gold, pred):
        gb = _boundaries(g)
        pb = _boundaries(p)
        text = "".join(g)
        common = sorted(gb & pb)
        for a, b in zip(common, common[1:]):
            if any(a < x < b for x in gb ^ pb):
                gw = "/".join(text[x:y] for x, y in _pairs(sorted(x for x in gb if a <= x <= b)))
                pw = "/".join(text[x:y] for x, y in _pairs(sorted(x for x in pb if a <= x <= b)))
                errs[(gw, pw)] += 1
    return [(g, p, c) for (g, p), c in errs.most_common(top)]


def words_missing_from_jieba(
    token_lists: Iterable[Sequence[str]], min_count: int = 3, min_len: int = 2
) -> list[tuple[str, int]]:
    """Words of a segmented corpus that jieba's dictionary lacks, as ``(word, count)``.

    These are candidates for a user dictionary: words of at least ``min_len`` characters
    seen at least ``min_count`` times, made of Chinese characters and ASCII letters/digits
    (such as ``1997年``), most frequent first.
    """
    freq = _default_jieba().FREQ
    counts = count_tokens(token_lists)
    out = [
        (w, c)
        for w, c in counts.items()
        if c >= min_count
        and len(w) >= min_len
        and not freq.get(w)
        and all("\u4e00" <= ch <= "\u9fff" or (ch.isascii() and ch.isalnum()) for ch in w)
    ]
    return sorted(out, key=lambda x: (-x[1], x[0]))


def _boundaries(words: Sequence[str]) -> set[int]:
    out, i = {0}, 0
    for w in words:
        i += len(w)
        out.add(i)
    return out


def _pairs(xs: list[int]) -> list[tuple[int, int]]:
    return list(zip(xs, xs[1:]))
