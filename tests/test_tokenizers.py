"""Tests for llmbook.tokenizers: round-trips, special ids, unknowns, errors, persistence."""

from __future__ import annotations

import pytest

from llmbook.tokenizers import SPECIAL_TOKENS, CharTokenizer

POEMS = ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]


def test_char_special_ids() -> None:
    tok = CharTokenizer.fit(POEMS)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert tok.vocab_size == 4 + len(set("".join(POEMS)))


def test_char_round_trip_and_bos_eos() -> None:
    tok = CharTokenizer.fit(POEMS)
    for p in POEMS:
        ids = tok.encode(p, add_bos=True, add_eos=True)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert len(ids) == len(p) + 2
        assert tok.decode(ids) == p
        assert tok.decode(ids, skip_special=False) == "<bos>" + p + "<eos>"


def test_char_frequency_order_and_cutoffs() -> None:
    tok = CharTokenizer.fit(POEMS)
    # 明 月 头 ， 。 occur twice, every other character once; ties keep first-seen order.
    top = [tok.id_to_token(i) for i in range(4, 9)]
    assert top == ["明", "月", "，", "。", "头"]
    assert tok.id_to_token(9) == "床"
    assert CharTokenizer.fit(POEMS, min_freq=2).vocab_size == 4 + 5
    assert CharTokenizer.fit(POEMS, max_size=6).vocab_size == 6


def test_char_unknown_maps_to_unk() -> None:
    tok = CharTokenizer.fit(POEMS)
    ids = tok.encode("明日")
    assert ids == [tok.token_to_id("明"), tok.unk_id]
    assert tok.decode(ids) == "明"


def test_char_save_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tok = CharTokenizer.fit(POEMS)
    path = tmp_path / "tok.json"
    tok.save(path)
    tok2 = CharTokenizer.load(path)
    assert tok2.itos == tok.itos
    assert tok2.encode(POEMS[1]) == tok.encode(POEMS[1])


def test_char_errors() -> None:
    tok = CharTokenizer.fit(POEMS)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tok.token_to_id("日")
    with pytest.raises(KeyError, match="out of range"):
        tok.id_to_token(10_000)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([10_000])
    with pytest.raises(TypeError, match="expects a str"):
        tok.encode(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single str"):
        CharTokenizer.fit("床前明月光")
    with pytest.raises(ValueError, match="corpus is empty"):
        CharTokenizer.fit([])
    with pytest.raises(ValueError, match="min_freq"):
        CharTokenizer.fit(POEMS, min_freq=0)
