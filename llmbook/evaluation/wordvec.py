"""Word-vector evaluation: analogies and similarity on the book's Chinese sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmbook.text.embeddings import Embeddings

__all__ = [
    "load_analogies",
    "load_similarity",
    "evaluate_analogies",
    "evaluate_similarity",
    "AnalogyResult",
    "SimilarityResult",
    "FrequencyBand",
    "cosine_by_frequency",
]


def load_analogies(path: str | None = None) -> dict[str, list[tuple[str, str, str, str]]]:
    """The analogy questions by category (``data/eval/analogies_zh.txt`` by default)."""
    from pathlib import Path

    from llmbook.data.registry import data_path

    p = Path(path) if path is not None else data_path("eval/analogies_zh.txt")
    out: dict[str, list[tuple[str, str, str, str]]] = {}
    cat = None
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            cat = line[1:].strip()
            out[cat] = []
            continue
        parts = line.split()
        if cat is None or len(parts) != 4:
            raise ValueError(f"{p}:{n}: expected ': category' or four words, got {line!r}")
        out[cat].append((parts[0], parts[1], parts[2], parts[3]))
    return out


def load_similarity(path: str | None = None) -> list[tuple[str, str, float]]:
    """Graded word pairs ``(w1, w2, score 0..10)`` (``data/eval/similarity_zh.tsv`` by default)."""
    from pathlib import Path

    from llmbook.data.registry import data_path

    p = Path(path) if path is not None else data_path("eval/similarity_zh.tsv")
    rows = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{p}:{n}: expected word1<TAB>word2<TAB>score, got {line!r}")
        rows.append((parts[0], parts[1], float(parts[2])))
    return rows


@dataclass
class AnalogyResult:
    """Accuracy over the questions the model can answer, and the share it can answer."""

    accuracy: float
    coverage: float
    correct: int
    answered: int
    total: int
    by_category: dict[str, tuple[float, int, int]]  # category -> (accuracy, answered, total)


def evaluate_analogies(
    emb: Embeddings, questions: dict[str, list[tuple[str, str, str, str]]] | None = None
) -> AnalogyResult:
    """3CosAdd accuracy: a question counts as answered when all four words are in the
    vocabulary, and as correct when the top answer (question words excluded) is ``d``."""
    qs = load_analogies() if questions is None else questions
    by_cat: dict[str, tuple[float, int, int]] = {}
    correct = answered = total = 0
    for cat, items in qs.items():
        ok = n_ans = 0
        for a, b, c, d in items:
            if not all(w in emb for w in (a, b, c, d)):
                continue
            n_ans += 1
            ok += emb.analogy(a, b, c, k=1)[0][0] == d
        by_cat[cat] = (ok / n_ans if n_ans else float("nan"), n_ans, len(items))
        correct += ok
        answered += n_ans
        total += len(items)
    if total == 0:
        raise ValueError("no analogy questions given")
    return AnalogyResult(
        correct / answered if answered else float("nan"),
        answered / total,
        correct,
        answered,
        total,
        by_cat,
    )


@dataclass
class SimilarityResult:
    spearman: float
    coverage: float
    pairs: int
    total: int


def evaluate_similarity(
    emb: Embeddings, pairs: Sequence[tuple[str, str, float]] | None = None
) -> SimilarityResult:
    """Spearman ρ between human scores and cosine similarities over the pairs the model can embed."""
    from scipy.stats import spearmanr

    rows = load_similarity() if pairs is None else list(pairs)
    if not rows:
        raise ValueError("no similarity pairs given")
    human, model = [], []
    for a, b, s in rows:
        if emb.can_embed(a) and emb.can_embed(b):
            human.append(s)
            model.append(emb.similarity(a, b))
    rho = float(spearmanr(human, model).statistic) if len(human) >= 3 else float("nan")
    return SimilarityResult(rho, len(human) / len(rows), len(human), len(rows))


@dataclass
class FrequencyBand:
    """Words whose corpus count lies in ``[low, high)`` and how alike their vectors are."""

    low: int
    high: int | None  #: None: no upper bound
    words: int
    mean_cosine: float  #: mean cosine similarity over all pairs of distinct words

    @property
    def label(self) -> str:
        return f"{self.low}–{self.high - 1}" if self.high is not None else f"≥{self.low}"


def cosine_by_frequency(
    emb: Embeddings, edges: Sequence[int] = (5, 10, 50, 500)
) -> list[FrequencyBand]:
    """Mean pairwise cosine of the word vectors in each frequency band.

    ``edges`` ``(5, 10, 50, 500)`` gives the bands 5–9, 10–49, 50–499 and ≥ 500
    occurrences.  In a healthy space unrelated words are close to orthogonal, so the mean
    over a band is small; a value near 1 means the band's vectors share one common
    direction and cosine similarity among them says little.  The mean over the ``n``
    unit vectors ``u_i`` of a band is ``(|Σ u_i|² − n) / (n(n − 1))``, computed without
    the ``n × n`` matrix.  Bands with fewer than two words are left out.
    """
    if emb.counts is None:
        raise ValueError(f"{emb.name} has no word counts; cosine_by_frequency needs them")
    e = [int(x) for x in edges]
    if not e or any(b <= a for a, b in zip(e, e[1:])):
        raise ValueError(f"edges must be increasing ints, got {list(edges)!r}")
    counts = np.asarray(emb.counts)
    out = []
    for low, high in zip(e, [*e[1:], None]):
        mask = (counts >= low) & (counts < high) if high is not None else counts >= low
        n = int(mask.sum())
        if n < 2:
            continue
        s = emb.unit[mask].astype(np.float64).sum(0)
        out.append(FrequencyBand(low, high, n, float((s @ s - n) / (n * (n - 1)))))
    return out
