"""GloVe (llmbook.text.glove): co-occurrence counts, the loss, its gradients, training."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix

from llmbook.text.embeddings import Embeddings
from llmbook.text.glove import Cooccurrence, GloVe, cooccurrence, train_glove, weighting

CORPUS = [
    "我 爱 北京 天安门".split(),
    "北京 是 中国 的 首都".split(),
    "我 爱 我 的 祖国".split(),
    "中国 的 首都 是 北京 我 爱 北京".split(),
    "孤".split(),
]


def brute_force(sentences, window, min_count, weighted=True):
    counts = defaultdict(int)
    for s in sentences:
        for w in s:
            counts[w] += 1
    vocab = {w for w, c in counts.items() if c >= min_count}
    x = defaultdict(float)
    for s in sentences:
        kept = [w for w in s if w in vocab]
        for a in range(len(kept)):
            for b in range(len(kept)):
                d = abs(a - b)
                if 1 <= d <= window:
                    x[kept[a], kept[b]] += 1.0 / d if weighted else 1.0
    return vocab, x


@pytest.mark.parametrize(
    ("window", "min_count", "weighted"), [(1, 1, True), (2, 1, True), (3, 2, True), (10, 1, False)]
)
def test_cooccurrence_equals_brute_force(window: int, min_count: int, weighted: bool) -> None:
    c = cooccurrence(CORPUS, window=window, min_count=min_count, distance_weighting=weighted)
    vocab, want = brute_force(CORPUS, window, min_count, weighted)
    assert set(c.words) == vocab
    dense = c.matrix.toarray()
    assert np.allclose(dense, dense.T)
    for a in c.words:
        for b in c.words:
            assert c.value(a, b) == pytest.approx(want.get((a, b), 0.0)), (a, b)
    assert c.nnz == sum(1 for v in want.values() if v > 0)


def test_vocabulary_sorted_by_frequency_and_counts_kept() -> None:
    c = cooccurrence(CORPUS, window=2, min_count=2)
    assert c.counts == sorted(c.counts, reverse=True)
    assert dict(zip(c.words, c.counts))["北京"] == 4
    assert "孤" not in c.index and "天安门" not in c.index
    assert c.prob("爱", "我") == pytest.approx(
        c.value("我", "爱") / c.matrix.toarray()[c.id("我")].sum()
    )


def test_ppmi_matches_dense_formula() -> None:
    c = cooccurrence(CORPUS, window=3, min_count=1)
    x = c.matrix.toarray()
    total, rows = x.sum(), x.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(x * total / np.outer(rows, rows))
    want = np.where(x > 0, np.maximum(pmi, 0), 0)
    assert np.allclose(c.ppmi().toarray(), want)


def test_weighting_function_properties() -> None:
    x = np.array([0.0, 1.0, 10.0, 50.0, 100.0, 150.0, 1e6])
    f = weighting(x)
    assert f[0] == 0 and np.all(np.diff(f) >= 0)
    assert np.all(f[x >= 100] == 1.0)
    assert np.allclose(f[1:4], (x[1:4] / 100) ** 0.75)
    assert weighting(1.0, x_max=10, alpha=1.0) == pytest.approx(0.1)
    t = weighting(torch.tensor([5.0, 200.0]), x_max=50)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([0.1**0.75, 1.0]))
    # the weighted squared error of a rare pair is smaller than that of a frequent pair
    assert weighting(2.0) < weighting(20.0) < weighting(200.0)
    with pytest.raises(ValueError, match="x_max"):
        weighting(1.0, x_max=0)
    with pytest.raises(ValueError, match="alpha"):
        weighting(1.0, alpha=-1)


def _tiny_model() -> tuple[GloVe, torch.Tensor, torch.Tensor, torch.Tensor]:
    model = GloVe(6, 4, seed=3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=torch.Generator().manual_seed(p.numel()))
    i = torch.tensor([0, 1, 2, 0, 5, 1])
    j = torch.tensor([1, 1, 3, 4, 0, 1])  # (1, 1) twice: gradients of repeated rows add up
    x = torch.tensor([3.0, 120.0, 0.5, 40.0, 1.0, 7.0], dtype=torch.float64)
    return model, i, j, x


def test_loss_equals_the_formula_by_hand() -> None:
    model, i, j, x = _tiny_model()
    w, wc = model.w.detach().numpy(), model.w_ctx.detach().numpy()
    b, bc = model.b.detach().numpy(), model.b_ctx.detach().numpy()
    want = 0.0
    for a, c, v in zip(i.tolist(), j.tolist(), x.tolist()):
        f = min(1.0, (v / 50.0) ** 0.5)
        want += f * (float(w[a] @ wc[c]) + b[a] + bc[c] - math.log(v)) ** 2
    assert float(model.loss(i, j, x, x_max=50.0, alpha=0.5).detach()) == pytest.approx(
        want, rel=1e-12
    )


def test_gradients_equal_autograd() -> None:
    model, i, j, x = _tiny_model()
    model.zero_grad()
    model.loss(i, j, x, x_max=50.0, alpha=0.75).backward()
    mine = model.gradients(i, j, x, x_max=50.0, alpha=0.75)
    for name, p in model.named_parameters():
        assert p.grad is not None
        assert torch.allclose(mine[name], p.grad, rtol=1e-10, atol=1e-12), name


def _low_rank_cooccurrence(n: int = 24, rank: int = 3) -> Cooccurrence:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(n, rank)) * 0.6, rng.normal(size=(n, rank)) * 0.6
    a, b = rng.uniform(0, 2, n), rng.uniform(0, 2, n)
    logx = u @ v.T + a[:, None] + b[None, :]
    words = [f"w{k}" for k in range(n)]
    return Cooccurrence(words, [1] * n, csr_matrix(np.exp(logx)), window=1)


def test_training_fits_an_exactly_low_rank_log_count_matrix() -> None:
    cooc = _low_rank_cooccurrence()
    res = train_glove(cooc, dim=3, epochs=60, batch_size=64, lr=0.5, accumulator_init=1.0, seed=0)
    i, j, x = (torch.from_numpy(a) for a in cooc.entries())
    model = res.model
    with torch.no_grad():
        final = float(model.loss(i, j, x.float())) / cooc.nnz
        start = float(GloVe(len(cooc), 3, seed=0).loss(i, j, x.float())) / cooc.nnz
    assert res.losses[-1] < res.losses[0] / 100
    assert final < 1e-4 < 0.1 < start
    assert isinstance(res.embeddings, Embeddings) and res.embeddings.name == "GloVe"
    assert np.allclose(res.embeddings.vectors, (model.w + model.w_ctx).detach().numpy())


def test_training_is_deterministic_under_a_seed() -> None:
    cooc = cooccurrence(CORPUS, window=2, min_count=1)
    a = train_glove(cooc, dim=5, epochs=3, batch_size=4, seed=7)
    b = train_glove(cooc, dim=5, epochs=3, batch_size=4, seed=7)
    c = train_glove(cooc, dim=5, epochs=3, batch_size=4, seed=8)
    assert np.array_equal(a.embeddings.vectors, b.embeddings.vectors)
    assert a.losses == b.losses
    assert not np.array_equal(a.embeddings.vectors, c.embeddings.vectors)


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        cooccurrence([[], []])
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        cooccurrence(CORPUS, window=0)
    with pytest.raises(ValueError, match="min_count"):
        cooccurrence(CORPUS, min_count=100)
    with pytest.raises(TypeError, match="lists of words"):
        cooccurrence(["我 爱 北京"])
    c = cooccurrence(CORPUS, window=2, min_count=1)
    with pytest.raises(KeyError, match="not in the co-occurrence vocabulary"):
        c.value("上海", "北京")
    with pytest.raises(TypeError, match="Cooccurrence"):
        train_glove(c.matrix)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs"):
        train_glove(c, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train_glove(c, lr=0)
    lonely = cooccurrence([["甲"], ["乙"], ["甲", "丙"]], window=1, min_count=1)
    assert lonely.nnz == 2
    empty = Cooccurrence(["甲", "乙"], [1, 1], csr_matrix((2, 2)), window=1)
    with pytest.raises(ValueError, match="co-occurrence matrix is empty"):
        train_glove(empty)


def test_top_keeps_the_most_frequent_words_and_their_counts() -> None:
    c = cooccurrence(CORPUS, window=3, min_count=1)
    small = c.top(3)
    assert small.words == c.words[:3] and small.counts == c.counts[:3]
    for a in small.words:
        for b in small.words:
            assert small.value(a, b) == c.value(a, b)
    assert len(c.top(1000)) == len(c)
