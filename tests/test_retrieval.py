"""BM25 against a direct evaluation of the formula; dense search; top-k; the QA set."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from llmbook.applications.retrieval import (
    BM25,
    DenseRetriever,
    load_qa,
    mean_word_vectors,
    qa_passages,
    tokenize_zh,
    topk_accuracy,
)

DOCS = [
    "北京举行新年音乐会，首都各界群众欢聚一堂。",
    "中国选手吴艳艳在世界游泳锦标赛上夺冠。",
    "国务院总理李鹏在北京考察企业，向职工祝贺新年。",
    "西藏遭受雪灾，中央下拨资金救济灾民。",
    "游泳比赛中国队获得三枚金牌。",
]


def _char(s: str) -> list[str]:
    return tokenize_zh(s, "char")


def _bm25_direct(docs: list[str], query: str, k1: float, b: float) -> list[float]:
    toks = [_char(d) for d in docs]
    n = len(docs)
    avgdl = sum(map(len, toks)) / n
    out = []
    for t in toks:
        c = Counter(t)
        s = 0.0
        for q in _char(query):
            df = sum(q in set(u) for u in toks)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            f = c[q]
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(t) / avgdl))
        out.append(s)
    return out


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.0), (2.0, 1.0)])
def test_bm25_matches_formula(k1: float, b: float) -> None:
    bm = BM25(DOCS, k1=k1, b=b, tokenizer=_char)
    for query in ["游泳冠军", "北京新年", "雪灾救济资金", "火星"]:
        np.testing.assert_allclose(bm.scores(query), _bm25_direct(DOCS, query, k1, b))


def test_bm25_ranking_and_pre_tokenised_docs() -> None:
    bm = BM25(DOCS, tokenizer=_char)
    assert bm.search("吴艳艳夺冠", k=1) == [1]
    assert bm.search("火星", k=3) == [0, 1, 2]  # all zero: ties by index
    same = BM25(DOCS, tokenizer=_char, doc_tokens=[_char(d) for d in DOCS])
    np.testing.assert_allclose(same.scores("北京"), bm.scores("北京"))
    with pytest.raises(ValueError, match="empty"):
        BM25([])
    with pytest.raises(ValueError, match="k1"):
        BM25(DOCS, b=2.0)
    with pytest.raises(ValueError, match="give one each"):
        BM25(DOCS, doc_tokens=[["a"]])
    with pytest.raises(ValueError, match="k must be"):
        bm.search("北京", k=0)


def test_tokenize_zh_modes() -> None:
    assert tokenize_zh("１９９８年，北京！", "char") == ["1", "9", "9", "8", "年", "北", "京"]
    assert tokenize_zh("北京大学", "bigram") == ["北京", "京大", "大学"]
    assert "北京" in tokenize_zh("我爱北京天安门", "word")
    with pytest.raises(ValueError, match="mode must be"):
        tokenize_zh("x", "sentence")


class _Vectors:
    vector_size = 2
    table = {"北": np.array([1.0, 0.0]), "游": np.array([0.0, 1.0])}

    def __contains__(self, w: str) -> bool:
        return w in self.table

    def __getitem__(self, w: str) -> np.ndarray:
        return self.table[w]


def test_dense_retriever_cosine() -> None:
    embed = mean_word_vectors(_Vectors(), tokenizer=_char)
    dr = DenseRetriever(DOCS, embed)
    assert dr.search("游", k=1)[0] in (1, 4)
    scores = dr.scores("北")
    assert scores[3] == 0.0  # no known characters -> zero vector -> similarity 0
    assert max(scores) == pytest.approx(1.0) or max(scores) <= 1.0
    with pytest.raises(ValueError, match="one row per input"):
        DenseRetriever(DOCS, lambda texts: np.zeros((1, 2)))


def test_topk_accuracy() -> None:
    acc = topk_accuracy([[3, 1, 2], [0, 2, 1], [5, 6, 7]], [1, 0, 9], ks=(1, 2, 3))
    assert acc == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="one per question"):
        topk_accuracy([[1]], [1, 2])


def test_qa_set_is_consistent_with_the_corpus() -> None:
    items = load_qa()
    assert len(items) >= 50
    assert len({q.id for q in items}) == len(items)
    ids, _ = qa_passages()
    collection = set(ids)
    for q in items:
        assert q.passage_id in collection, q.id
        assert q.answer in q.passage
        assert q.question.endswith("？")
        assert q.question not in q.passage  # questions are written, not copied


def _zipf_corpus(seed: int) -> list[list[str]]:
    """Random passages over 40 terms with Zipf-like frequencies: the commonest terms occur in
    more than half of the passages (where Okapi's raw IDF would be negative)."""
    rng = np.random.default_rng(seed)
    terms = [f"t{i}" for i in range(40)]
    p = 1.0 / np.arange(1, 41)
    return [list(rng.choice(terms, size=rng.integers(1, 30), p=p / p.sum())) for _ in range(60)]


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.0), (2.0, 1.0)])
def test_bm25_matches_rank_bm25(k1: float, b: float) -> None:
    """Oracle: ``rank_bm25``'s Okapi scoring with our IDF plugged in.

    The IDF differs: ours is the non-negative ``ln(1 + (N - n + 0.5) / (n + 0.5))`` (Lucene's),
    ``rank_bm25.BM25Okapi`` uses ``ln((N - n + 0.5) / (n + 0.5))`` and replaces negative values
    by ``0.25 * mean IDF``.  So the oracle overrides ``BM25Okapi._calc_idf`` (fed the library's
    own document frequencies ``n``) with ours; term counts, lengths, ``avgdl``, the saturation
    formula and repeated query terms all stay rank_bm25's.  Where Okapi's IDF ``x`` is positive
    the two IDFs are related by ``ln(1 + e^x)``, checked against the unmodified library.
    """
    rank_bm25 = pytest.importorskip("rank_bm25")

    class LuceneIdf(rank_bm25.BM25Okapi):  # type: ignore[misc]
        def _calc_idf(self, nd: dict[str, int]) -> None:
            n = self.corpus_size
            self.idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t, df in nd.items()}

    corpus = _zipf_corpus(0)
    ours = BM25([" ".join(d) for d in corpus], k1=k1, b=b, tokenizer=str.split, doc_tokens=corpus)
    oracle = LuceneIdf(corpus, k1=k1, b=b)
    queries = [d[:5] for d in _zipf_corpus(1)[:20]] + [["t0", "t0", "t39"], ["nowhere"]]
    for q in queries:
        np.testing.assert_allclose(ours.scores(" ".join(q)), oracle.get_scores(q), rtol=1e-12)
    okapi = rank_bm25.BM25Okapi(corpus, k1=k1, b=b)
    positive = [t for t in ours.index if len(ours.index[t][0]) < len(corpus) / 2]
    assert 0 < len(positive) < len(ours.index)  # both IDF regimes occur
    for t in positive:
        assert ours.idf(t) == pytest.approx(math.log1p(math.exp(okapi.idf[t])), rel=1e-12)


def test_gold_ranks_and_rank_metrics() -> None:
    from llmbook.applications.retrieval import gold_ranks, rank_metrics

    bm = BM25(DOCS, tokenizer=_char)
    queries = ["吴艳艳夺冠", "雪灾救济", "火星"]
    ranks = gold_ranks(bm, queries, [1, 3, 4])
    assert ranks[:2] == [1, 1]
    # "火星" matches nothing: all scores tie at 0 and ties go to the lower index
    assert ranks[2] == 5
    for q, g, r in zip(queries, [1, 3, 4], ranks):
        assert bm.search(q, k=5).index(g) + 1 == r
    m = rank_metrics(ranks, ks=(5,))
    assert m["top-1"] == pytest.approx(2 / 3) and m["recall@5"] == 1.0
    assert m["MRR"] == pytest.approx((1 + 1 + 1 / 5) / 3)
    with pytest.raises(ValueError, match="one per query"):
        gold_ranks(bm, queries, [1])
    with pytest.raises(ValueError, match="ranks >= 1"):
        rank_metrics([0])


def test_chance_metrics() -> None:
    from llmbook.applications.retrieval import chance_metrics

    c = chance_metrics(4, ks=(2,))
    assert c["top-1"] == 0.25 and c["recall@2"] == 0.5
    assert c["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    with pytest.raises(ValueError, match="n_passages"):
        chance_metrics(0)


def test_bag_encoder_contrastive_training_ranks_passages() -> None:
    import torch

    from llmbook.applications.retrieval import BagEncoder, char_ngrams, train_contrastive

    assert char_ngrams("北京，新年") == ["北", "京", "新", "年", "北京", "京新", "新年"]
    docs = DOCS * 2  # ten passages; duplicates are harmless
    enc = BagEncoder(buckets=1 << 12, dim=16, seed=0)
    before = enc.table.weight.detach().clone()
    losses = train_contrastive(
        enc,
        docs,
        steps=30,
        batch_size=4,
        lr=0.05,
        query_chars=(4, 6),
        passage_chars=(8, 12),
        progress=False,
    )
    assert len(losses) == 30 and not torch.equal(before, enc.table.weight)
    dense = DenseRetriever(DOCS, enc.embed)
    assert dense.search("吴艳艳在世界游泳锦标赛夺冠", k=1) == [1]
    v = enc.embed(["北京", ""])
    assert v.shape == (2, 16) and abs(float(np.linalg.norm(v[0])) - 1) < 1e-5
    assert float(np.abs(v[1]).sum()) == 0.0  # no n-gram: the zero vector
    with pytest.raises(ValueError, match="batch_size"):
        train_contrastive(enc, DOCS, steps=1, batch_size=9, progress=False)
    with pytest.raises(ValueError, match="two passages"):
        train_contrastive(enc, DOCS[:1], steps=1, progress=False)
