"""The modern-Chinese pretraining corpus: People's Daily plus the training reviews, with every held-out review kept out."""

from __future__ import annotations

from llmbook.data.registry import hash_fraction

__all__ = [
    "modern_pretraining_texts",
]


#: held-out reviews at least this long may not occur even inside a pretraining text
MIN_LEAK_CHARS = 10


def modern_pretraining_texts(split: str = "train", valid_share: float = 0.02) -> list[str]:
    """Texts for pretraining the modern-Chinese GPT.

    ``"train"``: People's Daily paragraphs (all but a hash-chosen ``valid_share``) plus every
    review of the sentiment **train** split, minus any text that equals a valid/test review
    or contains one of ``>= MIN_LEAK_CHARS`` characters; ``"valid"``: the held-out People's Daily paragraphs only.  No
    sentiment valid/test review is ever included, not even inside a longer text (tested).
    """
    from llmbook.data.people_daily import people_daily_text
    from llmbook.data.sentiment import load_sentiment

    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
    news = [t for t in dict.fromkeys(people_daily_text()) if t.strip()]
    if split == "valid":
        return [t for t in news if hash_fraction(t) < valid_share]
    reviews = [e.text for e in load_sentiment("train")]  # type: ignore[union-attr]
    texts = [t for t in news if hash_fraction(t) >= valid_share] + reviews
    # Some held-out reviews are fragments of longer training reviews (near-duplicates in the
    # source data); drop every training text equal to a held-out review or containing one of
    # at least MIN_LEAK_CHARS characters (shorter ones, like "不错", occur everywhere).
    held = [e.text for s in ("valid", "test") for e in load_sentiment(s)]  # type: ignore[union-attr]
    held_set = set(held)
    joined = "\n".join(texts)
    leaking = [h for h in held if len(h) >= MIN_LEAK_CHARS and h in joined]
    return [t for t in texts if t not in held_set and not any(h in t for h in leaking)]
