"""汉字→拼音 data, vocabulary, and the decoders on a tiny trained model."""

from __future__ import annotations

import pytest

from llmbook.applications.seq2seq import (
    SyllableTokenizer,
    beam_search,
    char_baseline,
    fit_sorted,
    greedy,
    hanzi_segments,
    to_pinyin,
    train_seq2seq,
)
from llmbook.interfaces import Tokenizer
from llmbook.text.tokenizers import CharTokenizer


def test_pinyin_labels_use_context() -> None:
    assert to_pinyin("银行") == "yin2 hang2"
    assert to_pinyin("行走") == "xing2 zou3"
    assert hanzi_segments(["北京，１９９８年新年快乐！中华人民共和国成立五十周年"], 4, 6) == [
        "年新年快乐",
        "中华人民共和",
        "国成立五十周",
    ]


def test_syllable_tokenizer_round_trip_with_named_special_ids() -> None:
    tok = fit_sorted(SyllableTokenizer, ["b c", "a b"])
    assert isinstance(tok, Tokenizer)
    # the ids follow the sorted tokens after the special ones, whatever the text order
    assert tok.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c"]
    ids = tok.encode("a  c zz", add_bos=True, add_eos=True)
    assert ids == [tok.bos_id, 4, 6, tok.unk_id, tok.eos_id]
    assert tok.decode(ids) == "a c"
    chars = fit_sorted(CharTokenizer, ["银行", "行走"])
    assert chars.itos[4:] == sorted("银行走")
    assert chars.decode(chars.encode("行银")) == "行银"


def test_char_baseline_takes_the_majority_reading() -> None:
    pred = char_baseline([("银行", "yin2 hang2"), ("行长", "hang2 zhang3"), ("行走", "xing2 zou3")])
    assert pred(["行"]) == ["hang2"]


def test_tiny_model_memorises_and_decoders_agree() -> None:
    pairs = [
        ("中国", "zhong1 guo2"),
        ("银行", "yin2 hang2"),
        ("行走", "xing2 zou3"),
        ("人民", "ren2 min2"),
    ]
    run = train_seq2seq(
        pairs, d_model=32, n_heads=2, layers=1, steps=150, batch_size=8, lr=1e-2, progress=False
    )
    assert run.losses[-1] < run.losses[0] / 4
    src = [h for h, _ in pairs]
    assert greedy(run, src) == [p for _, p in pairs]
    assert [beam_search(run, s, beam=3) for s in src] == [p for _, p in pairs]
    assert beam_search(run, "中国", beam=1) == greedy(run, ["中国"])[0]
    with pytest.raises(ValueError, match="beam must be"):
        beam_search(run, "中国", beam=0)
