"""Tests for llmbook.embeddings: queries, evaluation maths, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from llmbook.evaluation.wordvec import (
    evaluate_analogies,
    evaluate_similarity,
    load_analogies,
    load_similarity,
)
from llmbook.text.embeddings import Embeddings, train_fasttext, train_word2vec
from llmbook.text.sgns import train_sgns

CORPUS = [
    ["国王", "统治", "王国"],
    ["王后", "统治", "王国"],
    ["男人", "工作", "城市"],
    ["女人", "工作", "城市"],
    ["国王", "是", "男人"],
    ["王后", "是", "女人"],
] * 30


def toy() -> Embeddings:
    # 2-D "gender" x "royalty" space: king - man + woman = queen exactly
    words = ["男人", "女人", "国王", "王后", "苹果"]
    vecs = [[1, 0, 0], [-1, 0, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1]]
    return Embeddings(words, vecs, name="toy")


def test_analogy_and_nearest() -> None:
    e = toy()
    assert e.analogy("男人", "国王", "女人")[0][0] == "王后"
    assert e.nearest("国王", k=1)[0][0] in {"男人", "王后"}
    assert e.similarity("男人", "女人") == pytest.approx(-1.0)
    assert e.nearest(np.array([0, 0, 2.0]), k=1) == [("苹果", pytest.approx(1.0))]


def test_evaluate_analogies_counts_coverage() -> None:
    qs = {
        "gender": [("男人", "国王", "女人", "王后"), ("女人", "王后", "男人", "国王")],
        "oov": [("男人", "女人", "猫", "狗")],
    }
    r = evaluate_analogies(toy(), qs)
    assert (r.correct, r.answered, r.total) == (2, 2, 3)
    assert r.accuracy == 1.0 and r.coverage == pytest.approx(2 / 3)
    assert r.by_category["gender"] == (1.0, 2, 2)
    assert np.isnan(r.by_category["oov"][0])


def test_evaluate_similarity_spearman() -> None:
    pairs = [
        ("男人", "国王", 8.0),
        ("男人", "王后", 5.0),
        ("男人", "女人", 1.0),
        ("苹果", "猫", 0.0),
    ]
    r = evaluate_similarity(toy(), pairs)
    assert r.spearman == pytest.approx(1.0)  # cosine order 0.71 > 0 > -1 matches the scores
    assert (r.pairs, r.total, r.coverage) == (3, 4, 0.75)


def test_shipped_eval_sets() -> None:
    qs = load_analogies()
    assert sum(len(v) for v in qs.values()) >= 200 and len(qs) >= 5
    assert all(len(set(q)) == 4 for v in qs.values() for q in v)
    sims = load_similarity()
    assert len(sims) >= 100 and all(0 <= s <= 10 for _, _, s in sims)
    assert len({(a, b) for a, b, _ in sims}) == len(sims)


def test_errors() -> None:
    e = toy()
    with pytest.raises(KeyError, match="'猫' is not in the vocabulary of toy"):
        e.vector("猫")
    with pytest.raises(ValueError, match="k=10 is larger than the 4 candidate words"):
        e.nearest("男人", k=10)
    with pytest.raises(ValueError, match="k must be a positive int"):
        e.nearest("男人", k=0)
    with pytest.raises(TypeError, match="query must be a word"):
        e.nearest(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="word must be a str"):
        e.vector(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="corpus is empty"):
        train_word2vec([])
    with pytest.raises(TypeError, match="sentence 0 is a str"):
        train_word2vec(["国王统治王国"])
    with pytest.raises(TypeError, match="got a str"):
        train_sgns("国王")
    with pytest.raises(ValueError, match="lower min_count"):
        train_sgns([["国王"]], min_count=1)


def test_word2vec_deterministic() -> None:
    a = train_word2vec(CORPUS, sg=1, vector_size=16, min_count=1, epochs=3, seed=3)
    b = train_word2vec(CORPUS, sg=1, vector_size=16, min_count=1, epochs=3, seed=3)
    assert a.words == b.words
    np.testing.assert_array_equal(a.vectors, b.vectors)
    c = train_word2vec(CORPUS, sg=1, vector_size=16, min_count=1, epochs=3, seed=4)
    assert not np.array_equal(a.vectors, c.vectors)


def test_fasttext_embeds_unseen_words() -> None:
    ft = train_fasttext(CORPUS, vector_size=16, min_count=1, epochs=2)
    assert "国王们" not in ft and ft.can_embed("国王们")
    assert ft.vector("国王们").shape == (16,)
    assert ft.similarity("国王们", "国王") > ft.similarity("国王们", "城市")


def test_sgns_learns_and_is_deterministic() -> None:
    r1 = train_sgns(
        CORPUS,
        dim=8,
        window=2,
        min_count=1,
        epochs=4,
        batch_size=64,
        lr=0.05,
        subsample=1.0,
        progress=False,
    )
    r2 = train_sgns(
        CORPUS,
        dim=8,
        window=2,
        min_count=1,
        epochs=4,
        batch_size=64,
        lr=0.05,
        subsample=1.0,
        progress=False,
    )
    assert r1.losses[-1] < r1.losses[0]
    np.testing.assert_array_equal(r1.embeddings.vectors, r2.embeddings.vectors)
    # words that share contexts end up closer than words that do not
    e = r1.embeddings
    assert e.similarity("国王", "王后") > e.similarity("国王", "城市")
