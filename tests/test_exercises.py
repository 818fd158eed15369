"""The exercises: every reference solution passes its checker, wrong answers fail, and the
练习 lists of the section pages match the registry one to one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmbook.book import exercises as E

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"^(\d)_(\d+)_")


def _pages() -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / "chapters").glob("0[1-8]_*/*.md")):
        m = SECTION.match(p.name)
        if m:
            out[f"{m.group(1)}.{m.group(2)}"] = p
    return out


def _listed(text: str) -> list[str]:
    """The items of the page's ``## 练习`` list (top-level ``1.``, ``2.`` … lines)."""
    if "\n## 练习\n" not in text:
        return []
    part = text.split("\n## 练习\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^(\d+)\. ", part, flags=re.M)


ALL = E.all_exercises(range(1, 9))
CODE = [e for e in ALL if e.is_code]


@pytest.mark.parametrize("ex", CODE, ids=[e.id for e in CODE])
def test_reference_solution_passes_and_a_wrong_one_fails(ex: E.Exercise) -> None:
    assert E.check(ex.id, ex.solution, quiet=True), f"the solution of {ex.id} fails its checker"
    assert not E.check(ex.id, lambda *a, **k: None, quiet=True), f"{ex.id} accepts anything"


def test_every_listed_exercise_is_registered_and_vice_versa() -> None:
    registered = {e.id for e in ALL}
    listed = set()
    for sec, page in _pages().items():
        items = _listed(page.read_text(encoding="utf-8"))
        assert items == [str(i) for i in range(1, len(items) + 1)], f"{page.name}: 练习 numbering"
        listed |= {f"{sec}.{i}" for i in items}
    assert listed - registered == set(), (
        f"listed in a page but not registered: {listed - registered}"
    )
    assert registered - listed == set(), f"registered but not in any page: {registered - listed}"


def test_coding_exercises_name_their_id_in_the_page() -> None:
    pages = _pages()
    for ex in CODE:
        sec = ex.id.rsplit(".", 1)[0]
        assert f'check("{ex.id}"' in pages[sec].read_text(encoding="utf-8"), (
            f"{ex.id}: the page should show how to check it: check('{ex.id}', ...)"
        )


@pytest.mark.parametrize("chapter", range(1, 9))
def test_every_chapter_has_at_least_eight_exercises_and_some_code(chapter: int) -> None:
    mine = [e for e in ALL if e.id.startswith(f"{chapter}.")]
    assert len(mine) >= 8, f"chapter {chapter} has {len(mine)} exercises"
    assert any(e.is_code for e in mine), f"chapter {chapter} has no coding exercise"


@pytest.mark.parametrize("sec", sorted(_pages()))
def test_every_section_of_chapters_1_to_8_has_exercises(sec: str) -> None:
    text = _pages()[sec].read_text(encoding="utf-8")
    assert _listed(text), f"section {sec} has no ## 练习 list"
    assert text.index("\n## 练习\n") < text.index("\n## 小结"), f"{sec}: 练习 comes before 小结"


def test_check_reports_errors_in_chinese(capsys: pytest.CaptureFixture[str]) -> None:
    ex = CODE[0]

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("故意的")

    assert not E.check(ex.id, boom)
    assert "抛出了 RuntimeError: 故意的" in capsys.readouterr().out
    with pytest.raises(ValueError, match="5.3.2"):
        E.get("5.3")
    with pytest.raises(KeyError, match="没有编号为 1.1.99 的练习"):
        E.get("1.1.99")
    with pytest.raises(TypeError, match="需要一个函数"):
        E.check(ex.id, 3)  # type: ignore[arg-type]
    text = next(e for e in ALL if not e.is_code)
    with pytest.raises(ValueError, match="思考题"):
        E.check(text.id, lambda: None)


def test_expect_helpers() -> None:
    E.expect(3, 3, "x")
    with pytest.raises(E.ExerciseFailure, match="输入 2：应为 4，你的函数返回 5"):
        E.expect(5, 4, "输入 2")
    E.expect_close(1.0 + 1e-9, 1.0, "x")
    with pytest.raises(E.ExerciseFailure, match="应约为"):
        E.expect_close("a", 1.0, "x")
    with pytest.raises(E.ExerciseFailure):
        E.expect_close(float("nan"), 1.0, "x")
