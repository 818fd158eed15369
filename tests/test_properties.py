"""Property-based tests (Hypothesis) for the parts of llmbook that take arbitrary input.

* tokenizers: ``decode(encode(t)) == t`` for any Unicode text the tokenizer was fitted on
  (CJK, full-width punctuation, emoji with joiners and variation selectors, other
  scripts, control characters, empty and very long strings), the vocabulary invariants,
  unknown characters, persistence;
* n-gram language models: every next-token distribution is a probability distribution
  over the vocabulary, whatever the context;
* generation parameters: every invalid value is rejected with a message that names the
  parameter, and every valid combination produces valid token ids;
* dataset splits: disjoint, covering, stable under reordering and repetition.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path

import conftest
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from llmbook.data.poetry import Poem, poetry_split
from llmbook.data.sentiment import SentimentExample, make_sentiment_split
from llmbook.generation.decoding import GenerationError, generate
from llmbook.models.gpt import GPT
from llmbook.models.ngram import BOS, EOS, UNK, NGramLM
from llmbook.text import tokenizers as tokmod
from llmbook.text.tokenizers import SPECIAL_TOKENS, CharTokenizer

FAST = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
FEW = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

# --------------------------------------------------------------------------- text strategies

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
FULLWIDTH = st.sampled_from(
    list("，。、；：？！「」『』（）《》〈〉【】—…·～￥％＃＠＆＊＋－＝／＼｜")
)
EMOJI = st.sampled_from(
    ["😀", "🐉", "🌕", "👍🏽", "👨‍👩‍👧", "❤️", "🇨🇳", "🏳️‍🌈", "1️⃣", "🀄"]
)  # skin tones, ZWJ sequences, variation selectors, flags, keycaps
OTHER_SCRIPTS = st.sampled_from(list("aZ9 éßØΩжعבदกᄀ가かカ한\t\n\r\x00\u200b\ufeff\u3000"))
ANY_CHAR = st.characters(blacklist_categories=("Cs",))  # every code point except surrogates

PIECE = st.one_of(
    CJK, FULLWIDTH, EMOJI, OTHER_SCRIPTS, ANY_CHAR, st.sampled_from(["<pad>", "<unk>", "<bos>"])
)
TEXT = st.lists(PIECE, max_size=60).map("".join)
CORPUS = st.lists(TEXT, min_size=1, max_size=6)

LONG_TEXT = "床前明月光，疑是地上霜。🌕" * 20_000 + "".join(chr(c) for c in range(0x20, 0x3000))


def _tokenizer_classes() -> list[type]:
    """CharTokenizer and the other vocabulary tokenizers that exist so far."""
    return [CharTokenizer] + [
        c for name in ("WordTokenizer",) if (c := getattr(tokmod, name, None)) is not None
    ]


# --------------------------------------------------------------------------- tokenizers


@FAST
@given(corpus=CORPUS)
@example(corpus=[""])
@example(corpus=["", "<unk><pad>", "\r\n\x00"])
@example(corpus=[LONG_TEXT])
def test_char_round_trip_on_fitted_text(corpus: list[str]) -> None:
    tok = CharTokenizer.fit(corpus)
    for text in corpus:
        ids = tok.encode(text)
        assert len(ids) == len(text)  # one id per code point
        assert tok.unk_id not in ids
        assert tok.decode(ids) == text
        with_marks = tok.encode(text, add_bos=True, add_eos=True)
        assert with_marks == [tok.bos_id, *ids, tok.eos_id]
        assert tok.decode(with_marks) == text


@FAST
@given(corpus=CORPUS, min_freq=st.integers(1, 4), max_size=st.none() | st.integers(5, 40))
def test_char_vocabulary_invariants(corpus: list[str], min_freq: int, max_size: int | None) -> None:
    tok = CharTokenizer.fit(corpus, min_freq=min_freq, max_size=max_size)
    counts = Counter("".join(corpus))
    assert tuple(tok.itos[:4]) == SPECIAL_TOKENS
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    learned = tok.itos[4:]
    assert len(set(learned)) == len(learned)  # no duplicates
    assert all(counts[c] >= min_freq for c in learned)
    if max_size is not None:
        assert tok.vocab_size <= max_size
    # ordered by decreasing frequency
    freqs = [counts[c] for c in learned]
    assert freqs == sorted(freqs, reverse=True)
    # nothing frequent enough is dropped unless max_size forced it
    eligible = {c for c, n in counts.items() if n >= min_freq}
    if max_size is None or len(eligible) + 4 <= max_size:
        assert set(learned) == eligible
    # ids and tokens are inverse maps
    for i, t in enumerate(tok.itos):
        assert tok.token_to_id(t) == i and tok.id_to_token(i) == t


@FAST
@given(corpus=CORPUS, text=TEXT)
def test_char_unknown_characters_become_unk_and_vanish_on_decode(
    corpus: list[str], text: str
) -> None:
    tok = CharTokenizer.fit(corpus)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    for ch, i in zip(text, ids):
        assert (i == tok.unk_id) == (ch not in tok)
    assert tok.decode(ids) == "".join(ch for ch in text if ch in tok)


@FEW
@given(corpus=CORPUS)
def test_tokenizer_save_load_round_trip(corpus: list[str], tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    path = Path(tmp_path_factory.mktemp("tok")) / "tok.json"
    for cls in _tokenizer_classes():
        tok = cls.fit(corpus)
        tok.save(path)
        again = cls.load(path)
        assert again.itos == tok.itos
        for text in corpus:
            assert again.encode(text) == tok.encode(text)


@FEW
@given(
    corpus=st.lists(st.lists(PIECE, min_size=1, max_size=30).map("".join), min_size=1, max_size=4)
)
def test_word_tokenizer_round_trip(corpus: list[str]) -> None:
    cls = getattr(tokmod, "WordTokenizer", None)
    if cls is None:
        pytest.skip("llmbook.text.tokenizers.WordTokenizer does not exist yet")
    tok = cls.fit(corpus)
    for text in corpus:
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        # documented: jieba's whitespace tokens are dropped; every other character survives
        back = tok.decode(ids)
        assert _no_space(back) == _no_space(text)


def _no_space(s: str) -> str:
    return "".join(ch for ch in s if not ch.isspace())


@pytest.fixture(scope="module")
def bpe():  # type: ignore[no-untyped-def]
    cls = getattr(tokmod, "BPETokenizer", None)
    if cls is None:
        pytest.skip("llmbook.text.tokenizers.BPETokenizer does not exist yet")
    from llmbook.data.poetry import poem_lm_texts

    return cls.train(poem_lm_texts("train")[:300], vocab_size=400)


@FAST
@given(text=TEXT)
@example(text="")
@example(text=LONG_TEXT[:50_000])
def test_bpe_round_trips_any_string(bpe, text: str) -> None:  # type: ignore[no-untyped-def]
    """BPE works on bytes, so every string survives, even ones never seen in training."""
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.unk_id not in ids
    assert bpe.decode(ids) == text
    assert bpe.decode(bpe.encode(text, add_bos=True, add_eos=True)) == text


@FAST
@given(bad=st.one_of(st.integers(), st.none(), st.binary(), st.lists(st.text(), max_size=2)))
def test_encode_rejects_non_strings_clearly(bad: object) -> None:
    tok = CharTokenizer.fit(["明月"])
    with pytest.raises(TypeError, match="expects a str"):
        tok.encode(bad)  # type: ignore[arg-type]


@FAST
@given(ids=st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=5))
def test_decode_rejects_out_of_range_ids(ids: list[int]) -> None:
    tok = CharTokenizer.fit(["床前明月光"])
    assume(any(not 0 <= i < tok.vocab_size for i in ids))
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(ids)


# --------------------------------------------------------------------------- n-gram LMs

NGRAM_TEXT = st.lists(
    st.sampled_from(list("床前明月光疑是地上霜，。")), min_size=1, max_size=12
).map("".join)
CONTEXT_TOKEN = st.one_of(
    st.sampled_from(list("床前明月光疑是地上霜，。") + [BOS, EOS, UNK]), st.characters()
)


@FAST
@given(
    corpus=st.lists(NGRAM_TEXT, min_size=1, max_size=5),
    n=st.integers(1, 4),
    smoothing=st.sampled_from(["mle", "addk", "kn"]),
    k=st.floats(0.01, 2.0),
    discount=st.floats(0.05, 1.0),
    min_count=st.integers(1, 2),
    context=st.lists(CONTEXT_TOKEN, max_size=6),
)
def test_ngram_next_token_distribution_sums_to_one(
    corpus: list[str],
    n: int,
    smoothing: str,
    k: float,
    discount: float,
    min_count: int,
    context: list[str],
) -> None:
    assume(not (smoothing == "kn" and n < 2))
    lm = NGramLM(n=n, smoothing=smoothing, k=k, discount=discount, min_count=min_count)  # type: ignore[arg-type]
    lm.fit(corpus)
    dist = lm.next_token_distribution(context)
    assert dist.shape == (lm.vocab_size,)
    assert np.all(np.isfinite(dist)) and np.all(dist >= 0)
    if smoothing == "mle":
        # MLE is undefined (0/0) after a context never seen in training; it must be a
        # distribution after any context that was seen, e.g. a prefix of a training text.
        text = corpus[0]
        seen = list(text[: len(context) % (len(text) + 1)])
        dist = lm.next_token_distribution(seen)
    assert math.isclose(float(dist.sum()), 1.0, rel_tol=1e-9, abs_tol=1e-9)
    # prob() agrees with the vector
    w = lm.vocab[len(context) % lm.vocab_size]
    ctx = seen if smoothing == "mle" else context
    assert lm.prob(w, ctx) == pytest.approx(float(lm.next_token_distribution(ctx)[lm.stoi[w]]))


# --------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def tiny_gpt() -> GPT:
    return conftest.tiny_gpt(vocab_size=11, block_size=8, n_embd=8)


def _gen(model: GPT, **kw: object) -> torch.Tensor:
    kw.setdefault("max_new_tokens", 3)
    kw.setdefault("strategy", "sample")
    g = torch.Generator().manual_seed(0)
    return generate(model, torch.tensor([[2, 5]]), generator=g, **kw)  # type: ignore[arg-type]


NON_NUMBERS = st.one_of(st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))

INVALID = {
    "temperature": st.one_of(
        st.floats(max_value=1e-6, exclude_max=True),
        st.sampled_from([float("nan"), float("inf"), -float("inf")]),
        NON_NUMBERS.filter(lambda v: v is not None),
    ),
    "top_k": st.one_of(
        st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)
    ),
    "top_p": st.one_of(
        st.floats(max_value=0.0),
        st.floats(min_value=1.0, exclude_min=True),
        st.just(float("nan")),
        st.text(max_size=2),
        st.booleans(),
    ),
    "repetition_penalty": st.one_of(
        st.floats(max_value=0.0),
        st.sampled_from([float("nan"), float("inf")]),
        NON_NUMBERS.filter(lambda v: v is not None),
    ),
    "max_new_tokens": st.one_of(st.integers(max_value=-1), st.floats(), st.booleans(), NON_NUMBERS),
    "num_beams": st.one_of(st.integers(max_value=0), st.floats(), st.booleans(), NON_NUMBERS),
    "strategy": st.text(max_size=8).filter(lambda s: s not in ("greedy", "sample", "beam")),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_generation_parameters_are_rejected_by_name(tiny_gpt: GPT, name: str) -> None:
    @FAST
    @given(value=INVALID[name])
    def check(value: object) -> None:
        kw: dict[str, object] = {name: value}
        if name == "num_beams":
            kw["strategy"] = "beam"
        with pytest.raises(GenerationError, match=name):
            _gen(tiny_gpt, **kw)

    check()


@FAST
@given(
    strategy=st.sampled_from(["greedy", "sample", "beam"]),
    temperature=st.floats(1e-6, 1e6),
    top_k=st.none() | st.integers(1, 50),
    top_p=st.none() | st.floats(0.0, 1.0, exclude_min=True),
    repetition_penalty=st.floats(1e-3, 1e3),
    max_new_tokens=st.integers(0, 6),
    num_beams=st.integers(1, 4),
)
def test_valid_generation_parameters_give_valid_tokens(
    tiny_gpt: GPT,
    strategy: str,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
    max_new_tokens: int,
    num_beams: int,
) -> None:
    out = _gen(
        tiny_gpt,
        strategy=strategy,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
    )
    assert out.shape == (1, 2 + max_new_tokens)
    assert out[0, :2].tolist() == [2, 5]
    assert int(out.min()) >= 0 and int(out.max()) < tiny_gpt.config.vocab_size


# --------------------------------------------------------------------------- dataset splits

POEM_TEXT = st.lists(CJK | FULLWIDTH, min_size=1, max_size=16).map("".join)


def _poems(texts: list[str]) -> list[Poem]:
    return [Poem(i, "唐", "诗", "题", "佚名", (t,)) for i, t in enumerate(texts)]


@FAST
@given(
    texts=st.lists(POEM_TEXT, max_size=80),
    valid=st.floats(0.0, 0.45),
    test=st.floats(0.0, 0.45),
    data=st.data(),
)
def test_poetry_split_is_disjoint_covering_and_stable(
    texts: list[str], valid: float, test: float, data: st.DataObject
) -> None:
    poems = _poems(texts)
    parts = poetry_split(poems, valid=valid, test=test)
    assert sorted(parts) == ["test", "train", "valid"]
    ids = [p.id for part in parts.values() for p in part]
    assert sorted(ids) == list(range(len(poems)))  # every poem exactly once
    where = {p.text: name for name, part in parts.items() for p in part}
    for name, part in parts.items():  # identical texts never straddle two splits
        assert all(where[p.text] == name for p in part)
    shuffled = data.draw(st.permutations(poems))
    again = poetry_split(shuffled + poems[:5], valid=valid, test=test)
    for name in parts:  # the split of a poem depends on its text only
        assert {p.id for p in again[name]} == {p.id for p in parts[name]}
    if not texts:
        assert all(len(v) == 0 for v in parts.values())


@FAST
@given(bad=st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)))
def test_poetry_split_rejects_bad_fractions(bad: tuple[float, float]) -> None:
    valid, test = bad
    assume(not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1))
    with pytest.raises(ValueError, match="fractions"):
        poetry_split(_poems(["明月"]), valid=valid, test=test)


REVIEW = st.text(alphabet=string.ascii_letters + "好差很不的了", min_size=1, max_size=12)


@FAST
@given(
    items=st.dictionaries(REVIEW, st.integers(0, 1), max_size=60),
    valid=st.floats(0.0, 0.4),
    test=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_sentiment_split_is_disjoint_stratified_and_stable(
    items: dict[str, int], valid: float, test: float, seed: int, data: st.DataObject
) -> None:
    examples = [SentimentExample(t, y) for t, y in items.items()]
    parts = make_sentiment_split(examples, valid=valid, test=test, seed=seed)
    flat = [e for part in parts.values() for e in part]
    assert sorted(flat, key=lambda e: e.text) == sorted(examples, key=lambda e: e.text)
    for label in (0, 1):  # stratified: each label is split with the requested fractions
        n = sum(e.label == label for e in examples)
        assert sum(e.label == label for e in parts["test"]) == round(n * test)
        assert sum(e.label == label for e in parts["valid"]) == round(n * valid)
    # stable: the input order does not matter, and the same seed gives the same split
    shuffled = data.draw(st.permutations(examples))
    assert make_sentiment_split(shuffled, valid=valid, test=test, seed=seed) == parts
