"""Tests for llmbook.models.ngram: equality with nltk.lm, normalisation, the bpc protocol, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nltk.lm import MLE, KneserNeyInterpolated, Laplace, Lidstone, Vocabulary
from nltk.lm.preprocessing import pad_both_ends, padded_everygram_pipeline
from nltk.util import ngrams

from llmbook.data.poetry import poem_lm_texts
from llmbook.models.ngram import EOS, NGramLM, NotFittedError, unseen_ngram_rate


@pytest.fixture(scope="module")
def poems() -> tuple[list[str], list[str]]:
    return poem_lm_texts("train")[:250], poem_lm_texts("valid")[:12]


def _nltk(model, n: int, train: list[str], cutoff: int = 1):  # type: ignore[no-untyped-def]
    data, vocab_text = padded_everygram_pipeline(n, [list(t) for t in train])
    model.vocab = Vocabulary(unk_cutoff=cutoff)
    model.fit(data, vocab_text)
    return model


def _nltk_ngrams(n: int, texts: list[str]) -> list[tuple[str, ...]]:
    return [g for t in texts for g in ngrams(pad_both_ends(list(t), n=n), n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1.0, 0.1])
def test_addk_perplexity_equals_nltk(poems, n: int, k: float) -> None:  # type: ignore[no-untyped-def]
    train, test = poems
    ref = _nltk(Laplace(n) if k == 1.0 else Lidstone(k, n), n, train)
    ours = NGramLM(n, "addk", k=k, nltk_compat=True).fit(train)
    assert ours.vocab_size == len(ref.vocab)
    assert ours.perplexity(test) == pytest.approx(ref.perplexity(_nltk_ngrams(n, test)), rel=1e-10)


def test_mle_equals_nltk_on_training_text(poems) -> None:  # type: ignore[no-untyped-def]
    train, _ = poems
    ref = _nltk(MLE(3), 3, train)
    ours = NGramLM(3, "mle", nltk_compat=True).fit(train)
    seen = train[:20]
    assert ours.perplexity(seen) == pytest.approx(ref.perplexity(_nltk_ngrams(3, seen)), rel=1e-10)
    # an unseen n-gram has MLE probability 0 in both
    assert ours.prob("。", ["床", "前"]) == ref.score("。", ["床", "前"]) == 0.0


@pytest.mark.parametrize("n", [2, 3, 4])
def test_kneser_ney_equals_nltk(poems, n: int) -> None:  # type: ignore[no-untyped-def]
    train, test = poems
    train, test = train[:150], test[:4]  # NLTK's KN scans every context per query: keep small
    ref = _nltk(KneserNeyInterpolated(n, discount=0.75), n, train, cutoff=2)
    ours = NGramLM(n, "kn", discount=0.75, min_count=2, nltk_compat=True).fit(train)
    assert ours.vocab_size == len(ref.vocab)
    grams = _nltk_ngrams(n, test)
    want = [ref.score(g[-1], g[:-1]) for g in grams]
    got = [p for t in test for _, p in ours.token_probs(t)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert ours.perplexity(test) == pytest.approx(ref.perplexity(grams), rel=1e-10)


@pytest.mark.parametrize("smoothing", ["kn", "addk"])
def test_distributions_sum_to_one(poems, smoothing: str) -> None:  # type: ignore[no-untyped-def]
    train, _ = poems
    lm = NGramLM(4, smoothing, discount=0.9, k=0.5).fit(train)  # type: ignore[arg-type]
    for ctx in ([], ["明"], ["床", "前", "明"], ["罕", "見", "字"], ["<s>", "<s>", "<s>"]):
        p = lm.next_token_distribution(ctx)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert (p > 0).all()  # every token, <unk> included, keeps some probability


def test_bits_per_char_protocol(poems) -> None:  # type: ignore[no-untyped-def]
    train, test = poems
    lm = NGramLM(3, "kn", discount=0.9).fit(train)
    bits = 0.0
    for t in test:
        probs = lm.token_probs(t)
        assert [tok for tok, _ in probs] == list(t) + [EOS]
        bits += -sum(math.log2(p) for _, p in probs)
        assert lm.sentence_logprob(t) == pytest.approx(sum(math.log(p) for _, p in probs))
    assert lm.bits_per_char(test) == pytest.approx(bits / sum(len(t) + 1 for t in test))
    assert lm.perplexity(test) == pytest.approx(2 ** lm.bits_per_char(test))  # char model


def test_word_model_bpc_counts_characters() -> None:
    train = ["今天天气很好", "明天天气不好", "今天我们去公园"]
    lm = NGramLM(2, "addk", k=0.5, unit="word").fit(train)
    assert "天气" in lm.stoi
    bits = -sum(math.log2(p) for t in train for _, p in lm.token_probs(t))
    assert lm.bits_per_char(train) == pytest.approx(bits / sum(len(t) + 1 for t in train))


def test_pretokenized_equals_strings(poems) -> None:  # type: ignore[no-untyped-def]
    train, test = poems
    a = NGramLM(3).fit(train[:50])
    b = NGramLM(3).fit([list(t) for t in train[:50]])
    assert a.perplexity(test) == b.perplexity([list(t) for t in test])


def test_higher_order_fits_training_text_better(poems) -> None:  # type: ignore[no-untyped-def]
    train, _ = poems
    ppl = [NGramLM(n, "kn").fit(train).perplexity(train[:30]) for n in (2, 3, 4)]
    assert ppl[0] > ppl[1] > ppl[2]


def test_unseen_rate_grows_with_n(poems) -> None:  # type: ignore[no-untyped-def]
    train, test = poems
    rate = unseen_ngram_rate(train, test, max_n=4)
    assert list(rate) == [1, 2, 3, 4]
    assert rate[1] < rate[2] < rate[3] < rate[4] <= 1.0
    for n in rate:  # the definition, counted directly: share of test n-gram occurrences unseen
        seen = {g for t in train for g in ngrams(t, n)}
        grams = [g for t in test for g in ngrams(t, n)]
        assert rate[n] == pytest.approx(sum(g not in seen for g in grams) / len(grams), abs=1e-12)
    # by hand: only 照 is new, so 1 of 4 unigrams, 1 of 3 bigrams, 1 of 2 trigrams, 1 of 1
    hand = unseen_ngram_rate(["床前明月光"], ["明月光照"], max_n=4)
    assert hand == {1: 1 / 4, 2: 1 / 3, 3: 1 / 2, 4: 1.0}


def test_generate_is_deterministic_and_in_vocab(poems) -> None:  # type: ignore[no-untyped-def]
    train, _ = poems
    lm = NGramLM(3, "kn").fit(train)
    a = lm.generate(30, prefix="春", seed=1)
    assert a == lm.generate(30, prefix="春", seed=1)
    assert a.startswith("春") and 1 <= len(a) <= 31
    assert "<s>" not in a and "<unk>" not in a
    assert set(a) <= set(lm.vocab)


def test_errors() -> None:
    with pytest.raises(ValueError, match="n must be"):
        NGramLM(0)
    with pytest.raises(ValueError, match="smoothing must be"):
        NGramLM(2, "good-turing")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k > 0"):
        NGramLM(2, "addk", k=0)
    with pytest.raises(ValueError, match="discount"):
        NGramLM(2, "kn", discount=1.5)
    with pytest.raises(ValueError, match="Kneser–Ney needs n >= 2"):
        NGramLM(1, "kn")
    with pytest.raises(NotFittedError, match="call .fit"):
        NGramLM(2).perplexity(["床前明月光"])
    with pytest.raises(ValueError, match="empty corpus"):
        NGramLM(2).fit([])
    with pytest.raises(ValueError, match="empty corpus"):
        NGramLM(2).fit([""])
    with pytest.raises(TypeError, match="single str"):
        NGramLM(2).fit("床前明月光")
    with pytest.raises(TypeError, match="text 1 is int"):
        NGramLM(2).fit(["床前明月光", 42])  # type: ignore[list-item]
    lm = NGramLM(2, nltk_compat=True).fit(["床前明月光"])
    with pytest.raises(ValueError, match="nltk_compat=False"):
        lm.bits_per_char(["明月"])


def test_coverage_counts_text_ngrams_only() -> None:
    lm = NGramLM(3, "mle").fit(["abcd"])
    # test "abx": 1-grams a,b seen, x not; 2-grams ab seen, bx not; 3-gram abx not
    assert lm.coverage(["abx"]) == {1: pytest.approx(1 / 3), 2: 0.5, 3: 1.0}
    assert lm.coverage(["bcd"]) == {1: 0.0, 2: 0.0, 3: 0.0}
    with pytest.raises(ValueError, match="no text has 3 or more tokens"):
        lm.coverage(["ab"])
