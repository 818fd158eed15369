"""Checks of regular verse used as metrics: form accuracy of generated poems and per-instruction form compliance."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "form_compliance",
    "form_accuracy",
    "is_regular_poem",
]


def form_compliance(text: str, form: str) -> dict[str, bool]:
    """Does ``text`` have the line count and characters per line that ``form`` asks for?

    ``form`` is 五言绝句 / 七言绝句 / 五言律诗 / 七言律诗.  Returns ``{"lines": …,
    "chars": …, "both": …}``: right number of lines; every line of the right length.
    """
    from llmbook.data.poetry import split_lines

    spec = {"五言绝句": (4, 5), "七言绝句": (4, 7), "五言律诗": (8, 5), "七言律诗": (8, 7)}
    if form not in spec:
        raise ValueError(f"form must be one of {sorted(spec)}, got {form!r}")
    n_lines, n_chars = spec[form]
    lines = split_lines([text])
    ok_lines = len(lines) == n_lines
    ok_chars = bool(lines) and all(len(line) == n_chars for line in lines)
    return {"lines": ok_lines, "chars": ok_chars, "both": ok_lines and ok_chars}


def is_regular_poem(text: str, chars_per_line: int | None = None) -> bool:
    """Is ``text`` a 五言/七言 poem: 4 or 8 lines, every line of the same 5 or 7 characters?

    ``chars_per_line`` (5 or 7) fixes the expected length; by default the first line's.
    """
    from llmbook.data.poetry import split_lines

    lines = split_lines([text])
    if not lines:
        return False
    n = len(lines[0]) if chars_per_line is None else chars_per_line
    if n not in (5, 7) or len(lines) not in (4, 8):
        return False
    return all(len(line) == n for line in lines) and text.rstrip()[-1:] in "。！？"


def form_accuracy(texts: Sequence[str], chars_per_line: int | None = None) -> float:
    """Share of ``texts`` that are well-formed 五言/七言 poems (:func:`is_regular_poem`)."""
    if not texts:
        raise ValueError("form_accuracy needs at least one text")
    return sum(is_regular_poem(t, chars_per_line) for t in texts) / len(texts)
