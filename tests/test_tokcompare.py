"""The chapter-2.7 tokenizer comparison (llmbook.experiments.tokcompare), on tiny data."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("tokenizers")

from llmbook.experiments import tokcompare as tc  # noqa: E402
from llmbook.text.tokenizers import CharTokenizer  # noqa: E402

TRAIN = ["人民日报社论。", "今天天气很好。", "人民的生活很好。"] * 5


def test_config_loads_and_registers_its_kind() -> None:
    from llmbook.experiments.artifacts import BUILDERS, load_artifact

    art = load_artifact("ch2-tokenizers")
    assert art.kind == "tokcompare" and BUILDERS["tokcompare"] is tc.build_tokcompare
    kinds = {s["kind"] for s in art.config["tokenizers"]}
    assert kinds == set(tc.KINDS)


def test_word_tokenizer_keeps_the_newline() -> None:
    tok = tc.LineWordTokenizer.fit([t + "\n" for t in TRAIN])
    ids = tok.encode("今天天气很好。\n")
    assert tok.unk_id not in ids and tok.decode(ids).endswith("\n")
    spans = tc.unknown_spans(tok, "很好，下雨。\n")
    assert spans == [w for w in tok.tokenize("很好，下雨。\n") if w not in tok]
    assert spans and not {"很", "好", "。", "\n"} & set(spans)


def test_unknown_spans_of_each_kind() -> None:
    from llmbook.text.bpe import train_bpe

    char = CharTokenizer.fit(TRAIN)
    assert tc.unknown_spans(char, "人民下雨") == ["下", "雨"]
    assert tc.unknown_spans(train_bpe(TRAIN, 280), "下雨") == []
    uni = tc.UnigramTokenizer.train([t + "\n" for t in TRAIN], 40)
    assert tc.unknown_spans(uni, "人民囧") == ["囧"]
    assert uni.decode(uni.encode("人民日报很好。\n")) == "人民日报很好。\n"
    stats = tc.tokenizer_stats(char, ["人民下雨"])
    assert stats["unk_rate"] == 0.5 and stats["unk_char_rate"] == 0.5
    assert stats["chars_per_token"] == 1.0


def test_spelling_model_costs() -> None:
    spell = tc.SpellingModel(["aab"], ["ab", "abcd"])  # mean rare length 3
    assert spell.stop == pytest.approx(1 / 3)
    # p(a) = 3/6, p(b) = 2/6 (add-one over N=3, V=2, +1 bucket)
    want = -math.log2(3 / 6) - math.log2(2 / 6) - math.log2(1 / 3) - math.log2(2 / 3)
    assert spell.cost("ab") == pytest.approx(want)
    assert spell.cost("z") == pytest.approx(-math.log2(1 / 6) + 16 - math.log2(1 / 3))
    with pytest.raises(ValueError, match="training text"):
        tc.SpellingModel([""], [])


def test_fit_tokenizers_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        tc.fit_tokenizers([{"name": "x", "kind": "bytes"}], TRAIN)
