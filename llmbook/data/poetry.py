"""Classical Chinese poetry: the corpus, its fixed split, and the rules of regular verse (line splitting and form)."""

from __future__ import annotations

import json
import lzma
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from llmbook.data.registry import REBUILD, DataFileError, data_path, hash_fraction

__all__ = [
    "Poem",
    "load_poems",
    "poetry_split",
    "poem_lm_texts",
    "REGULAR_FORMS",
    "poem_form",
    "split_lines",
]


_SENT_END = "，。？！；、"


def split_lines(paragraphs: Iterable[str]) -> list[str]:
    """Split poem paragraphs into lines at Chinese punctuation, dropping the marks."""
    lines: list[str] = []
    for para in paragraphs:
        cur = ""
        for ch in para:
            if ch in _SENT_END:
                if cur:
                    lines.append(cur)
                cur = ""
            else:
                cur += ch
        if cur.strip():
            lines.append(cur)
    return lines


def poem_form(paragraphs: Sequence[str]) -> str:
    """Classify a poem: 五言绝句, 七言绝句, 五言律诗, 七言律诗, or 其他."""
    lines = split_lines(paragraphs)
    lengths = {len(line) for line in lines}
    if len(lengths) != 1:
        return "其他"
    n = lengths.pop()
    if n not in (5, 7) or len(lines) not in (4, 8):
        return "其他"
    return ("五言" if n == 5 else "七言") + ("绝句" if len(lines) == 4 else "律诗")


@dataclass(frozen=True)
class Poem:
    """One poem or ci: ``text`` joins the paragraphs (punctuation kept)."""

    id: int
    dynasty: str
    kind: str
    title: str
    author: str
    paragraphs: tuple[str, ...]
    form: str = field(default="其他")

    @property
    def text(self) -> str:
        return "".join(self.paragraphs)

    @property
    def lines(self) -> list[str]:
        return split_lines(self.paragraphs)


@lru_cache(maxsize=1)
def _all_poems() -> tuple[Poem, ...]:
    path = data_path("poetry.jsonl.xz")
    try:
        raw = lzma.decompress(path.read_bytes()).decode("utf-8")
    except (lzma.LZMAError, UnicodeDecodeError) as e:
        raise DataFileError(
            f"{path} is not a valid xz file ({e}); rebuild: {REBUILD['poetry.jsonl.xz']}"
        ) from e
    poems = []
    for line in raw.splitlines():
        d = json.loads(line)
        paras = tuple(d["paragraphs"])
        poems.append(
            Poem(
                d["id"],
                d["dynasty"],
                d["kind"],
                d["title"],
                d["author"],
                paras,
                poem_form(paras) if d["kind"] == "诗" else "词",
            )
        )
    return tuple(poems)


def load_poems(
    dynasty: str | None = None, form: str | Sequence[str] | None = None, limit: int | None = None
) -> list[Poem]:
    """Load poems, optionally filtered.

    ``dynasty``: ``"唐"`` or ``"宋"`` (Song ci); ``form``: one or several of
    ``"五言绝句"``, ``"七言绝句"``, ``"五言律诗"``, ``"七言律诗"``, ``"其他"``, ``"词"``.
    """
    poems = _all_poems()
    if dynasty is not None:
        if dynasty not in ("唐", "宋"):
            raise ValueError(f"dynasty must be '唐' or '宋', got {dynasty!r}")
        poems = tuple(p for p in poems if p.dynasty == dynasty)
    if form is not None:
        forms = {form} if isinstance(form, str) else set(form)
        unknown = forms - {"五言绝句", "七言绝句", "五言律诗", "七言律诗", "其他", "词"}
        if unknown:
            raise ValueError(
                f"unknown poem form(s) {sorted(unknown)}; use 五言绝句/七言绝句/五言律诗/七言律诗/其他/词"
            )
        poems = tuple(p for p in poems if p.form in forms)
    out = list(poems)
    return out[:limit] if limit is not None else out


def poetry_split(
    poems: Sequence[Poem] | None = None, valid: float = 0.05, test: float = 0.05
) -> dict[str, list[Poem]]:
    """Fixed train/valid/test split of poems, by a hash of the poem text.

    The split depends only on each poem's text, so it is the same in every chapter and
    on every machine, and identical poems never land in two splits.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"valid and test must be fractions summing to < 1, got {valid}, {test}")
    poems = load_poems() if poems is None else poems
    out: dict[str, list[Poem]] = {"train": [], "valid": [], "test": []}
    for p in poems:
        b = hash_fraction(p.text)
        out["test" if b < test else "valid" if b < test + valid else "train"].append(p)
    return out


REGULAR_FORMS = ("五言绝句", "七言绝句", "五言律诗", "七言律诗")


def poem_lm_texts(split: str = "train") -> list[str]:
    """The book's shared language-modelling corpus: one string per poem.

    Tang poems of the four regular forms (五言/七言 绝句/律诗, about 37k poems), split by
    :func:`poetry_split`; each string is the poem body with its punctuation, e.g.
    ``"床前明月光，疑是地上霜。举头望明月，低头思故乡。"``.  Chapters 1, 3, 5 and 8 report
    validation/test bits per character on exactly these texts, so their numbers compare.
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    return [p.text for p in _lm_split()[split]]


@lru_cache(maxsize=1)
def _lm_split() -> dict[str, list[Poem]]:
    return poetry_split(load_poems(dynasty="唐", form=REGULAR_FORMS))
