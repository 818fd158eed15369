"""Executable claims: a sentence of the book held by an assertion that CI runs.

A chapter states a result in prose ("the LSTM beats the 7-gram", "about a quarter of the
memory") and glues the numbers into the sentence.  Next to it, in a cell hidden from the
page (``tags: [remove-cell]``), it calls :func:`claim` with the same sentence and the
condition that makes it true::

    claim("长时间训练后 LSTM 的 bpc 低于 7 元 KN", lstm_bpc < ngram_bpc,
          lstm=lstm_bpc, ngram=ngram_bpc)

When the chapter is executed (``pytest --nbval`` in CI) a false claim raises
:class:`ClaimError`, naming the sentence and the values, so the book cannot go on saying
something its own run contradicts.  Helpers build the usual conditions with a readable
message: :func:`ratio_between`, :func:`close_to`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Claim",
    "ClaimError",
    "claim",
    "claims_made",
    "close_to",
    "ratio_between",
]


class ClaimError(AssertionError):
    """A sentence of the book is contradicted by the numbers its own run produced."""


@dataclass(frozen=True)
class Claim:
    """One checked sentence and the values it was checked on."""

    text: str
    values: dict[str, Any] = field(default_factory=dict)


_MADE: list[Claim] = []


def _fmt(values: dict[str, Any]) -> str:
    parts = []
    for k, v in values.items():
        parts.append(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v!r}")
    return ", ".join(parts)


def claim(text: str, holds: bool, **values: Any) -> Claim:
    """Check that the sentence ``text`` holds for this run; raise :class:`ClaimError` if not.

    ``holds`` is the condition (a ``bool``; numpy booleans are accepted), ``values`` the
    numbers it depends on, reported in the error.  A claim that does not hold means the
    prose must change (or the experiment is wrong), never that the check should go.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("claim needs the sentence it checks as a non-empty str")
    if not isinstance(holds, bool):
        if (
            getattr(getattr(holds, "dtype", None), "kind", None) == "b"
            and getattr(holds, "ndim", 1) == 0
        ):
            holds = bool(holds)  # a numpy scalar comparison
        else:
            raise TypeError(
                f"claim's condition must be a bool (e.g. a < b), got {type(holds).__name__}; "
                "compare the numbers instead of passing one of them"
            )
    for k, v in values.items():
        if isinstance(v, float) and math.isnan(v):
            raise ClaimError(f"claim {text!r}: value {k} is NaN; the run produced no number")
    if not holds:
        detail = f" ({_fmt(values)})" if values else ""
        raise ClaimError(
            f"the book says {text!r}, but this run contradicts it{detail}; "
            "fix the experiment or change the sentence"
        )
    made = Claim(text, dict(values))
    _MADE.append(made)
    return made


def claims_made() -> list[Claim]:
    """Every claim checked so far in this process (a chapter's hidden cells append here)."""
    return list(_MADE)


def ratio_between(x: float, y: float, low: float, high: float) -> bool:
    """``low <= x / y <= high`` ("about a quarter": ``ratio_between(a, b, 0.2, 0.3)``)."""
    if y == 0:
        raise ZeroDivisionError("ratio_between: the denominator y is 0")
    if low > high:
        raise ValueError(f"ratio_between: low {low} is above high {high}")
    return bool(low <= x / y <= high)


def close_to(x: float, target: float, rel: float = 0.05, abs_tol: float = 0.0) -> bool:
    """``x`` is within ``rel`` (relative) or ``abs_tol`` (absolute) of ``target``."""
    if rel < 0 or abs_tol < 0:
        raise ValueError("close_to: tolerances must be >= 0")
    return bool(math.isclose(x, target, rel_tol=rel, abs_tol=abs_tol))
