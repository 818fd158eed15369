r"""Measuring social bias in word embeddings: the Word Embedding Association Test (WEAT).

Caliskan, Bryson and Narayanan (2017) carried the Implicit Association Test over to word
vectors.  Given two *target* word sets :math:`X, Y` (say, two groups of occupations) and
two *attribute* sets :math:`A, B` (male and female terms), the association of a word
:math:`w` with the attributes is

.. math:: s(w, A, B) = \operatorname{mean}_{a\in A}\cos(w, a) - \operatorname{mean}_{b\in B}\cos(w, b),

the test statistic is :math:`S(X, Y) = \sum_{x\in X} s(x) - \sum_{y\in Y} s(y)` and the
**effect size** (a Cohen's :math:`d`) is

.. math:: d = \frac{\operatorname{mean}_{x\in X} s(x) - \operatorname{mean}_{y\in Y} s(y)}
                 {\operatorname{std}_{w\in X\cup Y} s(w)} .

The one-sided **permutation p-value** is the share of equal-size re-partitions
:math:`(X_i, Y_i)` of :math:`X\cup Y` with :math:`S(X_i, Y_i) \ge S(X, Y)`: how often a
random relabelling of the targets looks at least as biased as the real one.

Works with any object that maps words to vectors: gensim's ``KeyedVectors`` or a dict
(``word in kv`` and ``kv[word]``), or :class:`llmbook.text.embeddings.Embeddings`
(``word in emb`` and ``emb.vector(word)``).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WEATResult", "weat", "association", "load_weat_lists", "run_weat_tests"]


@dataclass(frozen=True)
class WEATResult:
    """Outcome of one WEAT: effect size ``d``, statistic ``S``, p-value and what was used."""

    name: str
    effect_size: float
    statistic: float
    p_value: float
    n_permutations: int
    exact: bool
    x_words: tuple[str, ...]
    y_words: tuple[str, ...]
    missing: tuple[str, ...]


def _vector(kv: Any, word: str) -> np.ndarray:
    # gensim KeyedVectors / dicts: kv[word]; llmbook.text.embeddings.Embeddings: kv.vector(word)
    if hasattr(kv, "vector") and callable(kv.vector):
        return np.asarray(kv.vector(word), dtype=np.float64)
    return np.asarray(kv[word], dtype=np.float64)


def _matrix(kv: Any, words: Sequence[str]) -> np.ndarray:
    m = np.stack([_vector(kv, w) for w in words])
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    if np.any(norms == 0):
        zero = [w for w, n in zip(words, norms[:, 0]) if n == 0]
        raise ValueError(f"zero vectors for {zero}; cosine similarity is undefined for them")
    return m / norms


def association(kv: Any, words: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """:math:`s(w, A, B)` for every ``w`` in ``words`` (all must be in ``kv``)."""
    w, ma, mb = _matrix(kv, words), _matrix(kv, a), _matrix(kv, b)
    return (w @ ma.T).mean(axis=1) - (w @ mb.T).mean(axis=1)


def _filter(kv: Any, words: Sequence[str], label: str, missing: list[str]) -> list[str]:
    kept = [w for w in words if w in kv]
    missing.extend(w for w in words if w not in kv)
    if len(kept) < 2:
        raise KeyError(
            f"only {len(kept)} of the {len(words)} words of set {label} are in the embedding "
            f"vocabulary (missing: {[w for w in words if w not in kv]}); train the vectors on a "
            "corpus containing them, lower min_count, or choose other words"
        )
    return kept


def weat(
    kv: Any,
    x: Sequence[str],
    y: Sequence[str],
    a: Sequence[str],
    b: Sequence[str],
    *,
    n_permutations: int = 10_000,
    seed: int = 0,
    name: str = "WEAT",
    drop_missing: bool = True,
) -> WEATResult:
    """Run a WEAT: effect size and one-sided permutation p-value.

    Words absent from ``kv`` are dropped (and listed in ``result.missing``) when
    ``drop_missing`` is true, otherwise a :class:`KeyError` names them.  After dropping,
    ``X`` and ``Y`` are cut to the same size (the first words are kept).  If the number
    of equal-size partitions of :math:`X\\cup Y` is at most ``n_permutations`` all of them
    are enumerated (exact p-value); otherwise ``n_permutations`` random ones are drawn.
    """
    missing: list[str] = []
    if not drop_missing:
        absent = [w for w in [*x, *y, *a, *b] if w not in kv]
        if absent:
            raise KeyError(
                f"words not in the embedding vocabulary: {absent}; pass drop_missing=True "
                "to ignore them"
            )
    xs = _filter(kv, x, "X", missing)
    ys = _filter(kv, y, "Y", missing)
    as_ = _filter(kv, a, "A", missing)
    bs = _filter(kv, b, "B", missing)
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    if n_permutations <= 0:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    s = association(kv, xs + ys, as_, bs)
    sx, sy = s[:n], s[n:]
    statistic = float(sx.sum() - sy.sum())
    std = float(s.std(ddof=1))
    effect = float((sx.mean() - sy.mean()) / std) if std > 0 else 0.0
    total = float(s.sum())
    # S(Xi, Yi) = sum_{Xi} s - (total - sum_{Xi} s) = 2 * sum_{Xi} s - total
    n_partitions = math.comb(2 * n, n)
    if n_partitions <= n_permutations:
        sums = np.array([s[list(c)].sum() for c in itertools.combinations(range(2 * n), n)])
        exact, used = True, n_partitions
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((n_permutations, 2 * n)), axis=1)[:, :n]
        sums = s[idx].sum(axis=1)
        exact, used = False, n_permutations
    stats = 2.0 * sums - total
    p = float(np.mean(stats >= statistic - 1e-12))
    if not exact:  # the observed partition counts as one of the draws
        p = (p * used + 1.0) / (used + 1.0)
    return WEATResult(name, effect, statistic, p, used, exact, tuple(xs), tuple(ys), tuple(missing))


def load_weat_lists(path: str | Path | None = None) -> dict[str, Any]:
    """The book's Chinese word lists, ``data/eval/weat_zh.json`` (or another file)."""
    if path is None:
        from llmbook.data.registry import data_path

        path = data_path("eval/weat_zh.json")
    with open(path, encoding="utf-8") as f:
        spec: dict[str, Any] = json.load(f)
    for t in spec.get("tests", []):
        for key in ("A", "B"):
            if t[key] not in spec["attributes"]:
                raise ValueError(
                    f"test {t['name']!r} refers to attribute set {t[key]!r}, which is not "
                    f"defined under 'attributes' (have {sorted(spec['attributes'])})"
                )
    return spec


def run_weat_tests(
    kv: Any, spec: dict[str, Any] | None = None, *, n_permutations: int = 10_000, seed: int = 0
) -> list[WEATResult]:
    """Run every test of a word-list spec (default: :func:`load_weat_lists`)."""
    spec = load_weat_lists() if spec is None else spec
    out = []
    for t in spec["tests"]:
        out.append(
            weat(
                kv,
                t["X"],
                t["Y"],
                spec["attributes"][t["A"]],
                spec["attributes"][t["B"]],
                n_permutations=n_permutations,
                seed=seed,
                name=t["name"],
            )
        )
    return out
