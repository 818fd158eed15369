"""The executable-claims helper, and that every chapter's claims sit in hidden cells."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import llmbook
from llmbook.book.claims import ClaimError, claim, claims_made, close_to, ratio_between

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def test_claim_that_holds_is_recorded():
    made = claim("LSTM 的 bpc 低于 7 元模型", 6.9 < 7.5, lstm=6.9, ngram=7.5)
    assert made.values == {"lstm": 6.9, "ngram": 7.5}
    assert made in claims_made()
    assert llmbook.claim("同一句话", True) is None  # nothing to print in a hidden cell
    assert claims_made()[-1].text == "同一句话"


def test_false_claim_names_the_sentence_and_values():
    with pytest.raises(ClaimError) as e:
        claim("RNN 胜过 7 元 KN", 7.9 < 7.5, rnn=7.9, ngram=7.5)
    msg = str(e.value)
    assert "RNN 胜过 7 元 KN" in msg and "rnn=7.9" in msg and "ngram=7.5" in msg
    assert "change the sentence" in msg


def test_numpy_bool_accepted_but_numbers_are_not():
    claim("numpy 比较", np.float64(1.0) < np.float64(2.0))
    with pytest.raises(TypeError, match="must be a bool"):
        claim("忘了比较", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        claim("  ", True)


def test_nan_value_is_an_error_even_if_condition_true():
    with pytest.raises(ClaimError, match="NaN"):
        claim("损失下降", True, loss=float("nan"))


def test_ratio_between_and_close_to():
    assert ratio_between(1.0, 4.0, 0.2, 0.3)  # about a quarter
    assert not ratio_between(1.84, 2.53, 0.2, 0.3)  # the int8 sentence that lied
    with pytest.raises(ZeroDivisionError):
        ratio_between(1.0, 0.0, 0, 1)
    with pytest.raises(ValueError):
        ratio_between(1.0, 2.0, 0.5, 0.1)
    assert close_to(137.0, 130.0, rel=0.06) and not close_to(137.0, 30.0)
    assert close_to(0.0, 0.001, rel=0.0, abs_tol=0.01)


def _code_cells(text: str) -> list[tuple[str, str]]:
    """(header, body) of every ```{code-cell} block of a MyST page."""
    return re.findall(
        r"```\{code-cell\}[^\n]*\n(---\n.*?\n---\n|(?::[^\n]*\n)*)(.*?)```", text, re.S
    )


def test_claims_live_in_hidden_cells():
    """A claim is the page's test, not its content: its cell carries remove-cell."""
    bad = []
    for page in sorted(CHAPTERS.glob("*/*.md")):
        for header, body in _code_cells(page.read_text(encoding="utf-8")):
            if re.search(r"\bclaim\(", body) and "remove-cell" not in header:
                bad.append(f"{page.relative_to(CHAPTERS)}: {body.strip().splitlines()[0]}")
    assert not bad, "claims in visible cells (tag them remove-cell):\n" + "\n".join(bad)
