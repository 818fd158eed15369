"""Byte-level BPE from scratch (llmbook.text.bpe) against Hugging Face ``tokenizers``."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tokenizers = pytest.importorskip("tokenizers")

from llmbook.text.bpe import (  # noqa: E402
    ALPHABET,
    ByteBPE,
    bytes_to_unicode,
    pretokenize,
    train_bpe,
    train_bpe_reference,
)
from llmbook.text.tokenizers import SPECIAL_TOKENS  # noqa: E402


def hf_train(texts: list[str], vocab_size: int):  # type: ignore[no-untyped-def]
    """HF byte-level BPE with the settings llmbook.text.bpe reproduces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    model = json.loads(hf.to_str())["model"]
    # recent tokenizers store a merge as a pair, older ones (0.15) as "a b" (byte-level
    # tokens never contain a space, so splitting is exact)
    merges = [tuple(m.split(" ") if isinstance(m, str) else m) for m in model["merges"]]
    return hf, model["vocab"], merges


def merge_strings(tok: ByteBPE) -> list[tuple[str, str]]:
    return [(tok.tokens[a], tok.tokens[b]) for a, b in tok.merges]


@pytest.fixture(scope="module")
def news() -> list[str]:
    from llmbook.data.people_daily import people_daily_text
    from llmbook.text.chinese import clean_text

    return [clean_text(t) for t in people_daily_text()[:1200]]


@pytest.fixture(scope="module")
def poems() -> list[str]:
    from llmbook.data.poetry import poem_lm_texts

    return [t + "\n" for t in poem_lm_texts("train")[:1500]]


# ---------------------------------------------------------------------- the byte table


def test_bytes_to_unicode_is_gpt2s_table() -> None:
    from tokenizers import pre_tokenizers

    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert table[ord("A")] == "A" and table[32] == "Ġ" and table[10] == "Ċ"
    assert table[0] == "Ā" and table[0xE4] == "ä"
    assert ALPHABET == tuple(sorted(table.values()))


def test_pretokenize_matches_hf_examples() -> None:
    from tokenizers import pre_tokenizers

    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for s in (
        "人民日报，2022年“囧”。 abc123def",
        "Hello world's  test\n\n  x",
        "a\u3000b\t c  ",
        "",
    ):
        assert pretokenize(s) == [w for w, _ in hf.pre_tokenize_str(s)]


# characters in Python's Unicode database; code points unassigned there (category Cn) are
# classified differently by HF's regex engine (Oniguruma) and the `regex` module, which
# follow different Unicode versions
assigned = st.characters(exclude_categories=("Cs", "Cn"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=assigned, max_size=30))
def test_pretokenize_matches_hf_on_any_assigned_text(s: str) -> None:
    from tokenizers import pre_tokenizers

    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    assert pretokenize(s) == [w for w, _ in hf.pre_tokenize_str(s)]


# ---------------------------------------------------------------------- training


@pytest.mark.parametrize("vocab_size", [300, 900, 2000])
def test_merges_equal_hf_on_people_daily(news: list[str], vocab_size: int) -> None:
    mine = train_bpe(news, vocab_size)
    _, vocab, merges = hf_train(news, vocab_size)
    assert merge_strings(mine) == merges
    assert mine.stoi == vocab
    assert mine.vocab_size == vocab_size


@pytest.mark.parametrize("vocab_size", [500, 1500])
def test_merges_equal_hf_on_poems(poems: list[str], vocab_size: int) -> None:
    mine = train_bpe(poems, vocab_size)
    _, vocab, merges = hf_train(poems, vocab_size)
    assert merge_strings(mine) == merges and mine.stoi == vocab


def test_reference_loop_equals_fast_path(news: list[str]) -> None:
    texts = news[:150]
    assert train_bpe_reference(texts, 420).merges == train_bpe(texts, 420).merges


TIES = ["ab ba ab ba", "aa bb aa bb", "abab baba", "ba", "中文 文中 中文 文中"]


def test_ties_are_broken_like_hf() -> None:
    # every pair here occurs equally often at some step: the order is the tie-break rule
    for vocab_size in (262, 266, 275):
        mine, ref = train_bpe(TIES, vocab_size), train_bpe_reference(TIES, vocab_size)
        _, vocab, merges = hf_train(TIES, vocab_size)
        assert merge_strings(mine) == merges == merge_strings(ref)
        assert mine.stoi == vocab


def test_training_stops_when_no_pair_is_left() -> None:
    tok = train_bpe(["aaaa"], 1000)
    _, vocab, merges = hf_train(["aaaa"], 1000)
    assert merge_strings(tok) == merges == [("a", "a"), ("aa", "aa")]
    assert tok.vocab_size == len(vocab) == 262


small_corpora = st.lists(
    st.text(alphabet="ab 中文\n", min_size=1, max_size=12), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(small_corpora, st.integers(261, 300))
def test_random_small_corpora_agree(texts: list[str], vocab_size: int) -> None:
    fast, ref = train_bpe(texts, vocab_size), train_bpe_reference(texts, vocab_size)
    _, vocab, merges = hf_train(texts, vocab_size)
    assert fast.merges == ref.merges
    assert merge_strings(fast) == merges and fast.stoi == vocab


def test_truncated_equals_training_smaller(news: list[str]) -> None:
    big = train_bpe(news[:300], 900)
    small = train_bpe(news[:300], 500)
    cut = big.truncated(500)
    assert cut.merges == small.merges and cut.tokens == small.tokens


# ---------------------------------------------------------------------- encoding


def test_encode_equals_hf(news: list[str], poems: list[str]) -> None:
    for texts in (news, poems):
        mine = train_bpe(texts[:800], 1500)
        hf, _, _ = hf_train(texts[:800], 1500)
        for t in texts[800:]:
            assert mine.encode(t) == hf.encode(t).ids


@pytest.fixture(scope="module")
def trained(news: list[str]):  # type: ignore[no-untyped-def]
    mine = train_bpe(news[:600], 1200)
    hf, _, _ = hf_train(news[:600], 1200)
    return mine, hf


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=assigned, max_size=40))
def test_encode_equals_hf_on_any_text(trained, s: str) -> None:  # type: ignore[no-untyped-def]
    mine, hf = trained
    assert mine.encode(s) == hf.encode(s).ids


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=50))
def test_round_trip_any_unicode(trained, s: str) -> None:  # type: ignore[no-untyped-def]
    tok = trained[0]
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert tok.unk_id not in ids
    assert "".join(tok.tokenize(s)) == "".join(pretokenize(s))


def test_special_ids_and_text_that_spells_them(trained) -> None:  # type: ignore[no-untyped-def]
    tok = trained[0]
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    ids = tok.encode("<eos>", add_bos=True, add_eos=True)
    assert ids[0] == 2 and ids[-1] == 3 and 3 not in ids[1:-1]
    assert tok.decode(ids) == "<eos>"
    assert tok.decode(ids, skip_special=False) == "<bos><eos><eos>"


def test_pieces_are_readable() -> None:
    bare = ByteBPE([*SPECIAL_TOKENS, *ALPHABET], [])
    assert bare.pieces("中a ") == ["<e4>", "<b8>", "<ad>", "a", " "]
    tok = train_bpe(["中国人民，中国人民。"] * 3, 300)
    assert tok.pieces("中国人民") == ["中国人民"]
    # one merge; (e4, b8) and (b8, ad) tie and b8 + ad wins: "¸" (U+00B8) has a smaller
    # id than "ä" (U+00E4), the characters of bytes b8 and e4
    half = train_bpe(["中中中"], 261)
    assert half.pieces("中") == ["<e4>", "<b8><ad>"]
    assert half.decode(half.encode("中")[:1]) == "\ufffd"


def test_interface(tmp_path, trained) -> None:  # type: ignore[no-untyped-def]
    from llmbook.interfaces import Tokenizer

    tok = trained[0]
    assert isinstance(tok, Tokenizer)
    path = tmp_path / "bpe.json"
    tok.save(path)
    back = ByteBPE.load(path)
    assert back.tokens == tok.tokens and back.merges == tok.merges
    assert back.encode("人民日报社论") == tok.encode("人民日报社论")
    assert "ByteBPE(vocab_size=1200)" == repr(tok) and len(tok) == 1200
    with pytest.raises(KeyError, match="byte characters"):
        tok.token_to_id("人民")
    with pytest.raises(KeyError, match="out of range"):
        tok.id_to_token(99999)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([99999])


# ---------------------------------------------------------------------- errors


def test_errors_name_the_problem(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for train in (train_bpe, train_bpe_reference):
        with pytest.raises(ValueError, match="corpus is empty"):
            train([], 300)
        with pytest.raises(ValueError, match="all empty"):
            train(["", ""], 300)
        with pytest.raises(TypeError, match="single str"):
            train("人民日报", 300)
        with pytest.raises(ValueError, match=r"vocab_size must be an int >= 260"):
            train(["abc"], 259)
        with pytest.raises(ValueError, match="vocab_size"):
            train(["abc"], True)
    with pytest.raises(TypeError, match="expects a str"):
        train_bpe(["ab"], 261).encode(None)  # type: ignore[arg-type]
    good = train_bpe(["ab ab ab"], 262)
    path = tmp_path / "t.json"
    good.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))

    bad = tmp_path / "bad.json"
    bad.write_text(path.read_text(encoding="utf-8")[:40], encoding="utf-8")
    with pytest.raises(ValueError, match="not a ByteBPE file"):
        ByteBPE.load(bad)
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not a ByteBPE file"):
        ByteBPE.load(bad)
    hf, _, _ = hf_train(["ab ab"], 262)  # a Hugging Face tokenizer.json is foreign
    bad.write_text(hf.to_str(), encoding="utf-8")
    with pytest.raises(ValueError, match="BPETokenizer.load"):
        ByteBPE.load(bad)
    for damage, msg in (
        ({"merges": [[261, 260], [260, 261]]}, "does not follow"),
        ({"merges": [data["merges"][0], data["merges"][0]]}, "does not follow"),
        ({"merges": [["a", "b"]]}, "two token ids"),
        ({"tokens": data["tokens"][::-1]}, "starts with the 4 special tokens"),
        ({"tokens": data["tokens"] + ["zz"]}, "not made by any merge"),
        ({"tokens": "abc"}, "list of strings"),
    ):
        bad.write_text(json.dumps({**data, **damage}), encoding="utf-8")
        with pytest.raises(ValueError, match=msg):
            ByteBPE.load(bad)
    with pytest.raises(ValueError, match="larger"):
        good.truncated(300)


def test_chinese_character_is_three_bytes() -> None:
    assert all(len(c.encode("utf-8")) == 3 for c in "人民日报")
    assert unicodedata.category("人") == "Lo" and len(pretokenize("人民日报")) == 1


def test_bytebpe_feeds_the_book_lm_protocol() -> None:
    import torch

    from llmbook.data.lmdata import encode_corpus
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models.gpt import GPT, GPTConfig

    texts = ["人民日报社论", "人民生活"]
    tok = train_bpe(texts, 280)
    ids = encode_corpus(texts, tok)
    assert ids[0] == tok.bos_id and tok.decode(ids.tolist()) == "人民日报社论\n人民生活\n"
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    assert 0 < bits_per_char(model, tok, texts) < 40
