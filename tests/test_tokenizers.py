"""Tests for llmbook.text.tokenizers: round-trips, special ids, unknowns, errors, persistence."""

from __future__ import annotations

import pytest

from llmbook.text.tokenizers import SPECIAL_TOKENS, CharTokenizer

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


# ---------------------------------------------------------------------- word and BPE

from llmbook.text.tokenizers import BPETokenizer, WordTokenizer, compare_tokenizers  # noqa: E402

NEWS = [
    "今天北京天气很好，我们去公园散步。",
    "明天上海下雨，我们在家里读书。",
    "中国经济保持稳定增长，人民生活水平不断提高。",
    "我们要努力学习，建设美好的家乡。",
] * 5


def test_word_tokenizer_round_trip_and_unk() -> None:
    tok = WordTokenizer.fit(NEWS)
    assert "我们" in tok and tok.counts["我们"] == 15
    ids = tok.encode(NEWS[0])
    assert tok.decode(ids) == NEWS[0]
    assert tok.unk_id not in ids
    ids = tok.encode("我们喜欢火星。")
    assert tok.unk_id in ids  # 喜欢/火星 never seen
    assert tok.decode(ids) != "我们喜欢火星。"


def test_word_tokenizer_fit_tokens_and_save(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tok = WordTokenizer.fit_tokens([["迈向", "新", "世纪"], ["新", "年"]], min_freq=2)
    assert tok.itos[4:] == ["新"]
    tok.save(tmp_path / "w.json")
    assert WordTokenizer.load(tmp_path / "w.json").itos == tok.itos
    with pytest.raises(ValueError, match="'word' tokenizer, not 'char'"):
        CharTokenizer.load(tmp_path / "w.json")
    with pytest.raises(TypeError, match="pass lists of words"):
        WordTokenizer.fit_tokens(["迈向新世纪"])


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(NEWS, vocab_size=300, min_frequency=2)


def test_bpe_round_trip_any_string(bpe: BPETokenizer) -> None:
    assert bpe.vocab_size <= 300
    assert [bpe.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    for s in [*NEWS[:4], "", "  two  spaces\nnew line", "没见过的字：龘𠀀😀", "ＡＢＣ１２３"]:
        ids = bpe.encode(s)
        assert bpe.unk_id not in ids
        assert bpe.decode(ids) == s
    ids = bpe.encode("我们", add_bos=True, add_eos=True)
    assert ids[0] == bpe.bos_id and ids[-1] == bpe.eos_id
    assert bpe.decode(ids, skip_special=False) == "<bos>我们<eos>"


def test_bpe_merges_frequent_words(bpe: BPETokenizer) -> None:
    # 我们 (6 UTF-8 bytes) occurs 15 times: merged into few tokens; an unseen character
    # stays three single-byte tokens
    assert len(bpe.encode("我们")) <= 3
    assert len(bpe.encode("龘")) == 3


def test_bpe_save_load(bpe: BPETokenizer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bpe.save(tmp_path / "bpe.json")
    again = BPETokenizer.load(tmp_path / "bpe.json")
    assert again.encode(NEWS[2]) == bpe.encode(NEWS[2])
    with pytest.raises(KeyError, match="not in the BPE vocabulary"):
        bpe.token_to_id("no-such-token")
    with pytest.raises(ValueError, match="vocab_size must be"):
        BPETokenizer.train(NEWS, vocab_size=100)


def test_compare_tokenizers() -> None:
    char = CharTokenizer.fit(NEWS)
    word = WordTokenizer.fit(NEWS)
    rows = {r["tokenizer"]: r for r in compare_tokenizers({"char": char, "word": word}, NEWS[:4])}
    assert rows["char"]["tokens_per_char"] == 1.0
    assert rows["word"]["tokens_per_char"] < 1.0
    assert rows["char"]["unk_rate"] == rows["word"]["unk_rate"] == 0.0
    rows = {r["tokenizer"]: r for r in compare_tokenizers({"char": char}, ["火星"])}
    assert rows["char"]["unk_rate"] == 1.0
