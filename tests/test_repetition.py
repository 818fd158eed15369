"""Repetition measures of generated text: longest run, repeat rate, distinct-n."""

from __future__ import annotations

import pytest

from llmbook.generation.repetition import distinct_n, longest_run, repeat_rate


def test_longest_run_skips_punctuation() -> None:
    assert longest_run("一夜夜夜夜，一夜夜来闻。") == 4
    assert longest_run("床前明月光") == 1
    assert longest_run("风，风。风") == 3  # punctuation does not break a run
    assert longest_run("") == 0 and longest_run("，。") == 0


def test_repeat_rate() -> None:
    texts = ["一夜夜夜夜", "春风又绿江南岸", "国国", "白日依山尽"]
    assert repeat_rate(texts) == 0.25
    assert repeat_rate(texts, run=2) == 0.5
    with pytest.raises(ValueError, match="run must be"):
        repeat_rate(texts, run=1)
    with pytest.raises(TypeError, match="list of texts"):
        repeat_rate("一夜夜夜")
    with pytest.raises(ValueError, match="at least one text"):
        repeat_rate([])


def test_distinct_n() -> None:
    assert distinct_n(["春风又绿"], 1) == 1.0
    assert distinct_n(["夜夜夜夜"], 1) == 0.25
    # bigrams: 夜夜 ×3 → 1 distinct of 3; n-grams do not cross texts
    assert distinct_n(["夜夜夜夜"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["春风", "春风"], 2) == 0.5
    with pytest.raises(ValueError, match="no 3-gram"):
        distinct_n(["春风"], 3)
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["春风"], 0)
