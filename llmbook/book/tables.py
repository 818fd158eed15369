"""Tables for the chapters: an HTML table in the book, a text table aligned by display width.

Padding text with ``str.ljust`` counts characters, but a Chinese character is two columns
wide on a terminal and in a monospaced font, so a text table mixing 中文 and ASCII zig-zags.
:class:`Table` renders as an HTML ``<table>`` in notebooks and the built book
(``_repr_html_``) and, as plain text (``repr``/``print``), pads every cell by its *display
width* (:func:`display_width`, East Asian Width from :mod:`unicodedata`).

>>> t = Table(["分词器", "词表"], [["字", 5000], ["BPE", 8000]])
>>> print(t)
分词器  词表
------  ----
字      5000
BPE     8000
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["Table", "display_width"]


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font: wide and full-width characters count 2."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


class Table:
    """A small table: ``columns`` names and ``rows`` of values (numbers right-aligned).

    Floats are shown with ``digits`` decimals; integers of five or more digits get
    thousands separators.  ``caption`` becomes the HTML caption.
    """

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        digits: int = 3,
        caption: str | None = None,
    ) -> None:
        columns = [str(c) for c in columns]
        if not columns:
            raise ValueError("a table needs at least one column name")
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(
                    f"row {i} has {len(row)} values but the table has {len(columns)} columns "
                    f"({', '.join(columns)}); give every row one value per column"
                )
        self.columns = columns
        self.rows = [list(r) for r in rows]
        self.digits = digits
        self.caption = caption
        self._numeric = [
            bool(self.rows)
            and all(
                isinstance(r[j], (int, float)) and not isinstance(r[j], bool) for r in self.rows
            )
            for j in range(len(columns))
        ]

    def _cells(self) -> list[list[str]]:
        return [[_cell(v, self.digits) for v in row] for row in self.rows]

    def __repr__(self) -> str:
        cells = self._cells()
        widths = [
            max([display_width(c)] + [display_width(r[j]) for r in cells])
            for j, c in enumerate(self.columns)
        ]

        def line(values: Sequence[str], numeric: Sequence[bool]) -> str:
            out = []
            for v, w, num in zip(values, widths, numeric):
                pad = " " * (w - display_width(v))
                out.append(pad + v if num else v + pad)
            return "  ".join(out).rstrip()

        head = line(self.columns, [False] * len(widths))
        rule = "  ".join("-" * w for w in widths)
        body = [line(r, self._numeric) for r in cells]
        return "\n".join([head, rule, *body])

    __str__ = __repr__

    def _repr_html_(self) -> str:
        def align(j: int) -> str:
            return ' style="text-align: right"' if self._numeric[j] else ""

        parts = ['<table class="llmbook-table">']
        if self.caption:
            parts.append(f"<caption>{html.escape(self.caption)}</caption>")
        parts.append(
            "<thead><tr>"
            + "".join(f"<th{align(j)}>{html.escape(c)}</th>" for j, c in enumerate(self.columns))
            + "</tr></thead><tbody>"
        )
        for row in self._cells():
            parts.append(
                "<tr>"
                + "".join(f"<td{align(j)}>{html.escape(v)}</td>" for j, v in enumerate(row))
                + "</tr>"
            )
        parts.append("</tbody></table>")
        return "".join(parts)
