"""The glossary: every term links to the section that teaches it.

Each row of ``chapters/glossary.md`` names its teaching sections with {ref}`sec-N-M` (a
section, not a whole chapter); every label must exist, and the term itself (one of its Chinese
names, or its English name) must occur in the source of at least one section it points to.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "chapters" / "glossary.md"
REF = re.compile(r"\{ref\}`([^`<]*<)?([\w-]+)>?`")


@functools.cache
def _labels() -> dict[str, str]:
    """Section label -> text of the section source that defines it."""
    out: dict[str, str] = {}
    for path in sorted(ROOT.glob("chapters/[0-9][0-9]_*/*.md")):
        text = path.read_text(encoding="utf-8")
        for label in re.findall(r"^\((sec-[\w-]+)\)=", text, re.M):
            out[label] = text
    return out


def _rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("中文", "---") or set(cells[0]) <= {"-", " "}:
            continue
        rows.append((cells[0], cells[1], cells[3]))
    return rows


def _names(zh: str, en: str) -> list[str]:
    names = [n.strip() for n in re.split(r"[、,，/]", re.sub(r"[（(][^）)]*[）)]", "", zh))]
    names += [n.strip() for n in re.findall(r"[（(]([^）)]*)[）)]", zh + " " + en)]
    names += [n.strip() for n in re.split(r"[,，]", re.sub(r"\([^)]*\)", "", en))]
    return [n for n in names if len(n) >= 2]


ROWS = _rows()


def test_glossary_has_rows() -> None:
    assert len(ROWS) >= 60


@pytest.mark.parametrize(("zh", "en", "where"), ROWS, ids=[r[0] for r in ROWS])
def test_term_links_to_a_section_that_teaches_it(zh: str, en: str, where: str) -> None:
    labels = _labels()
    refs = [m.group(2) for m in REF.finditer(where)]
    assert refs, f"术语「{zh}」没有链接到任何章节"
    for ref in refs:
        assert ref.startswith("sec-"), f"术语「{zh}」链接到整章 {ref}：请指向讲解它的那一节"
        assert ref in labels, f"术语「{zh}」链接的 {ref} 不存在"
    names = _names(zh, en)
    found = [r for r in refs if any(n.lower() in labels[r].lower() for n in names)]
    assert found, f"术语「{zh}」（{names}）没有出现在它链接的 {refs} 中：请改指讲解它的那一节"
