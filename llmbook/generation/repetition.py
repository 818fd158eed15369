r"""Measuring degenerate repetition in generated text.

Greedy decoding of a small language model often falls into a loop (「一夜夜夜夜」,
「国国国国」): once a character has been produced, producing it again becomes the most
likely continuation.  Two simple numbers show how often that happens:

* :func:`longest_run` — the longest run of one character repeated back to back; and
  :func:`repeat_rate`, the share of texts with a run of at least ``run`` (default 3);
* :func:`distinct_n` — distinct :math:`n`-grams divided by all :math:`n`-grams
  (Li et al., 2016): 1 when nothing repeats, lower the more a text repeats itself.

Punctuation and whitespace are ignored, so 「春风，春风」 is not a run but
「风风风」 is.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmbook.text.chinese import is_punct

__all__ = ["longest_run", "repeat_rate", "distinct_n"]


def _chars(text: str) -> list[str]:
    return [c for c in text if not c.isspace() and not is_punct(c)]


def _check_texts(texts: Sequence[str], name: str) -> None:
    if isinstance(texts, str):
        raise TypeError(f"{name} needs a list of texts, got one str; wrap it as [text]")
    if len(texts) == 0:
        raise ValueError(f"{name} needs at least one text, got an empty list")


def longest_run(text: str) -> int:
    """Length of the longest run of one character in ``text`` (punctuation skipped); 0 if empty."""
    best = run = 0
    prev = None
    for c in _chars(text):
        run = run + 1 if c == prev else 1
        prev = c
        best = max(best, run)
    return best


def repeat_rate(texts: Sequence[str], run: int = 3) -> float:
    """Share of ``texts`` in which some character occurs ``run`` or more times in a row."""
    _check_texts(texts, "repeat_rate")
    if not isinstance(run, int) or run < 2:
        raise ValueError(f"run must be an int >= 2, got {run!r}")
    return sum(longest_run(t) >= run for t in texts) / len(texts)


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct character ``n``-grams / all ``n``-grams, pooled over ``texts``
    (punctuation skipped; ``n``-grams do not cross texts).  Raises if there are none."""
    _check_texts(texts, "distinct_n")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    grams: list[tuple[str, ...]] = []
    for t in texts:
        cs = _chars(t)
        grams.extend(tuple(cs[i : i + n]) for i in range(len(cs) - n + 1))
    if not grams:
        raise ValueError(f"distinct_n: the texts have no {n}-gram (all shorter than {n})")
    return len(set(grams)) / len(grams)
