r"""Cleaning a text corpus: exact and near-duplicate removal and simple quality filters.

Pre-training corpora are scraped, and scraped text repeats itself: the same poem on a
hundred web pages, boilerplate, empty or truncated records.  Lee et al. (2022) showed
that removing duplicates makes language models better *and* makes them regurgitate
training text less.  Three tools:

* :func:`exact_duplicates` — identical after Unicode NFKC and whitespace normalisation;
* :func:`near_duplicates` — MinHash signatures of character :math:`n`-grams with
  locality-sensitive hashing (Broder 1997): two texts whose :math:`n`-gram sets have
  Jaccard similarity :math:`J` share a MinHash value with probability :math:`J`, so with
  :math:`b` bands of :math:`r` rows they become candidates with probability
  :math:`1-(1-J^r)^b`; candidates are then checked with the exact Jaccard similarity;
* :func:`quality_filter` — rules such as minimum length, share of Chinese characters and
  excessive repetition of one character, each reported separately.
"""

from __future__ import annotations

import hashlib
import unicodedata
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "normalise",
    "ngrams",
    "jaccard",
    "exact_duplicates",
    "minhash_signatures",
    "near_duplicates",
    "QualityReport",
    "quality_filter",
    "clean_corpus",
    "make_dirty_corpus",
]


def normalise(text: str) -> str:
    """NFKC (full-width → half-width letters and digits) and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def ngrams(text: str, n: int = 3) -> set[str]:
    """Set of character ``n``-grams of the normalised text (the text itself if shorter)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    t = normalise(text)
    if len(t) <= n:
        return {t}
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of the character ``n``-gram sets of ``a`` and ``b``."""
    sa, sb = ngrams(a, n), ngrams(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def exact_duplicates(texts: Sequence[str]) -> list[bool]:
    """``True`` for every text identical (after :func:`normalise`) to an earlier one."""
    seen: set[bytes] = set()
    out = []
    for t in texts:
        h = hashlib.blake2b(normalise(t).encode("utf-8"), digest_size=16).digest()
        out.append(h in seen)
        seen.add(h)
    return out


def minhash_signatures(
    texts: Sequence[str], *, n: int = 3, num_perm: int = 64, seed: int = 0
) -> np.ndarray:
    """``[len(texts), num_perm]`` MinHash signatures of the character ``n``-gram sets.

    Each ``n``-gram is hashed to 32 bits (CRC-32 of its UTF-8 bytes, the same on every
    machine) and each "permutation" is the multiply–add hash
    :math:`h(x) = (a x + b) \bmod 2^{64}` with random odd :math:`a`.
    """
    if num_perm <= 0:
        raise ValueError(f"num_perm must be positive, got {num_perm}")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    sig = np.empty((len(texts), num_perm), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, t in enumerate(texts):
            x = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in ngrams(t, n)), dtype=np.uint64)
            sig[i] = (x[:, None] * a[None, :] + b[None, :]).min(axis=0)
    return sig


def near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.7,
    n: int = 3,
    num_perm: int = 64,
    bands: int = 16,
    seed: int = 0,
) -> list[bool]:
    """``True`` for every text whose Jaccard similarity to an earlier kept text ≥ ``threshold``.

    Candidates come from MinHash LSH (``bands`` bands of ``num_perm // bands`` rows);
    each candidate pair is confirmed with the exact :func:`jaccard`.
    """
    if num_perm % bands:
        raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    sig = minhash_signatures(texts, n=n, num_perm=num_perm, seed=seed)
    rows = num_perm // bands
    buckets: list[dict[bytes, list[int]]] = [defaultdict(list) for _ in range(bands)]
    dup = [False] * len(texts)
    grams = [ngrams(t, n) for t in texts]
    for i in range(len(texts)):
        keys = [sig[i, j * rows : (j + 1) * rows].tobytes() for j in range(bands)]
        candidates = {k for j, key in enumerate(keys) for k in buckets[j].get(key, ())}
        for k in sorted(candidates):
            inter = len(grams[i] & grams[k])
            if inter / len(grams[i] | grams[k]) >= threshold:
                dup[i] = True
                break
        if not dup[i]:
            for j, key in enumerate(keys):
                buckets[j][key].append(i)
    return dup


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


@dataclass
class QualityReport:
    """Which texts a filter kept and why the others were removed."""

    kept: list[str]
    removed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        return sum(self.removed.values())


def quality_filter(
    texts: Sequence[str],
    *,
    min_chars: int = 10,
    max_chars: int = 2000,
    min_cjk_ratio: float = 0.6,
    max_top_char_ratio: float = 0.3,
    n_examples: int = 3,
) -> QualityReport:
    """Drop texts that are too short/long, not mostly Chinese, or one character repeated.

    ``min_cjk_ratio`` is the minimum share of Chinese characters among non-space
    characters; ``max_top_char_ratio`` the maximum share of the most frequent Chinese
    character (catches "哈哈哈哈…" and garbled records).  The first rule that fails is
    recorded as the reason.
    """
    report = QualityReport(kept=[])
    for t in texts:
        chars = [c for c in t if not c.isspace()]
        cjk = [c for c in chars if _is_cjk(c)]
        reason = None
        if len(chars) < min_chars:
            reason = "too_short"
        elif len(chars) > max_chars:
            reason = "too_long"
        elif len(cjk) < min_cjk_ratio * len(chars):
            reason = "not_chinese"
        elif Counter(cjk).most_common(1)[0][1] > max_top_char_ratio * len(cjk):
            reason = "repetitive"
        if reason is None:
            report.kept.append(t)
        else:
            report.removed[reason] += 1
            ex = report.examples.setdefault(reason, [])
            if len(ex) < n_examples:
                ex.append(t)
    return report


def clean_corpus(
    texts: Sequence[str], *, near: bool = True, threshold: float = 0.7, **filter_kwargs: float
) -> QualityReport:
    """Quality filter, then exact and (optionally) near-duplicate removal, in that order."""
    rep = quality_filter(texts, **filter_kwargs)  # type: ignore[arg-type]
    kept = rep.kept
    ex = exact_duplicates(kept)
    rep.removed["exact_duplicate"] = sum(ex)
    kept = [t for t, d in zip(kept, ex) if not d]
    if near:
        nd = near_duplicates(kept, threshold=threshold)
        rep.removed["near_duplicate"] = sum(nd)
        kept = [t for t, d in zip(kept, nd) if not d]
    rep.kept = kept
    return rep


def make_dirty_corpus(
    clean: Sequence[str],
    *,
    seed: int = 0,
    popular_frac: float = 0.05,
    exact_copies: int = 10,
    near_copies: int = 5,
    fragment_frac: float = 0.1,
) -> tuple[list[str], dict[str, int]]:
    """Add the dirt of a scraped corpus to clean texts, in known amounts.

    A ``popular_frac`` share of the texts is repeated ``exact_copies`` times verbatim (the
    same poem on many web pages) and ``near_copies`` times with one punctuation mark
    changed (re-typeset copies); a ``fragment_frac`` share is added as truncated records
    of 1–6 characters.  Returns the shuffled corpus and how many texts of each kind it has.
    """
    import random

    rng = random.Random(seed)
    popular = rng.sample(list(clean), max(1, int(popular_frac * len(clean))))
    dups = [p for p in popular for _ in range(exact_copies)]
    near = [
        p.replace("。", "！", 1) if i % 2 else p.replace("，", "、", 1)
        for i, p in enumerate(popular)
        for _ in range(near_copies)
    ]
    fragments = [
        p[: rng.randint(1, 6)] for p in rng.sample(list(clean), int(fragment_frac * len(clean)))
    ]
    dirty = list(clean) + dups + near + fragments
    rng.shuffle(dirty)
    counts = {
        "clean": len(clean),
        "exact_copies": len(dups),
        "near_copies": len(near),
        "fragments": len(fragments),
    }
    return dirty, counts
