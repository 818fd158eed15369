"""llmbook.book.tables: text tables aligned by display width, HTML tables, clear errors."""

from __future__ import annotations

import unicodedata

import pytest

from llmbook.book.tables import Table, display_width


def test_display_width_counts_wide_characters_twice() -> None:
    assert display_width("abc") == 3
    assert display_width("中文") == 4
    assert display_width("ＫＶ缓存") == 8  # full-width letters are wide too
    assert display_width("e\u0301") == 1  # a combining accent takes no column


def _columns_of(line: str) -> list[int]:
    """Display column at which each run of non-space text starts."""
    cols, col, prev_space = [], 0, True
    for ch in line:
        if ch != " " and prev_space:
            cols.append(col)
        prev_space = ch == " "
        col += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return cols


def test_text_columns_line_up_with_mixed_scripts() -> None:
    t = Table(["名称", "值"], [["字", 1.5], ["jieba分词", 22.25], ["BPE", 3.0]], digits=2)
    lines = str(t).splitlines()
    widths = {display_width(line) for line in lines[1:]}
    assert len(widths) == 1, str(t)  # the rule and every row end at the same column
    starts = [_columns_of(line)[0] for line in lines]
    assert set(starts) == {0}
    # numbers are right-aligned: their last digit sits in the last column
    assert all(display_width(line) == display_width(lines[1]) for line in lines[2:])


def test_html_escapes_and_right_aligns_numbers() -> None:
    html = Table(["a<b", "n"], [["<x>", 12345]], caption="表 & 图")._repr_html_()
    assert "&lt;x&gt;" in html and "a&lt;b" in html and "表 &amp; 图" in html
    assert '<td style="text-align: right">12,345</td>' in html


def test_a_row_of_the_wrong_length_is_named() -> None:
    with pytest.raises(ValueError, match=r"row 1 has 1 values but the table has 2 columns"):
        Table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="at least one column"):
        Table([], [])
