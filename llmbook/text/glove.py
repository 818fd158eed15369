r"""GloVe (Pennington, Socher & Manning 2014): word vectors from a weighted least-squares fit
to the logarithm of a co-occurrence matrix — the model of section 2.8.

Two steps.  :func:`cooccurrence` counts, for every pair of vocabulary words, how often
they appear within ``window`` words of each other in the same sentence, each occurrence
at distance :math:`d` adding :math:`1/d` (the paper's weighting); the matrix :math:`X` is
symmetric and sparse.  :class:`GloVe` then fits, over the nonzero entries only,

.. math::

    J=\sum_{i,j:\,X_{ij}>0} f(X_{ij})\,
      \bigl(\mathbf w_i^\top\tilde{\mathbf w}_j+b_i+\tilde b_j-\log X_{ij}\bigr)^2,
    \qquad f(x)=\min\bigl(1,(x/x_{\max})^{\alpha}\bigr),

with word vectors :math:`\mathbf w`, context vectors :math:`\tilde{\mathbf w}` and two
biases.  :func:`train_glove` minimises :math:`J` over the entries in shuffled minibatches
with AdaGrad, as the paper and its reference code do: every entry touches only two rows,
AdaGrad's per-parameter step sizes need no state beyond one accumulator per parameter,
and rows of rare words (seldom updated, small accumulated gradients) keep large steps.
The final vectors are :math:`\mathbf w+\tilde{\mathbf w}`, returned as
:class:`llmbook.text.embeddings.Embeddings` so that the evaluations of section 2.5 apply
unchanged.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from llmbook.text.embeddings import Embeddings, _check_sentences

__all__ = [
    "Cooccurrence",
    "cooccurrence",
    "weighting",
    "GloVe",
    "GloVeResult",
    "train_glove",
]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


@dataclass
class Cooccurrence:
    """A symmetric co-occurrence matrix over a vocabulary sorted by corpus frequency.

    ``matrix[i, j]`` (a ``scipy.sparse.csr_matrix`` of float64) is the distance-weighted
    number of times ``words[j]`` appeared within ``window`` words of ``words[i]``;
    ``counts[i]`` is how often ``words[i]`` occurs in the corpus.
    """

    words: list[str]
    counts: list[int]
    matrix: Any  # scipy.sparse.csr_matrix; scipy has no type stubs
    window: int
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        return (
            f"Cooccurrence({len(self.words)} words, {self.nnz:,} nonzero entries, "
            f"window={self.window})"
        )

    @property
    def nnz(self) -> int:
        """Number of nonzero entries — what GloVe trains on."""
        return int(self.matrix.nnz)

    def id(self, word: str) -> int:
        """Row of ``word``; a clear ``KeyError`` for a word outside the vocabulary."""
        if not isinstance(word, str):
            raise TypeError(f"word must be a str, got {type(word).__name__}")
        i = self.index.get(word)
        if i is None:
            raise KeyError(
                f"{word!r} is not in the co-occurrence vocabulary ({len(self.words)} words): "
                "it is absent from the corpus or rarer than min_count; pick another word "
                "or count again with a lower min_count"
            )
        return i

    def value(self, w1: str, w2: str) -> float:
        """:math:`X_{w_1 w_2}` (0 when the two words never co-occur)."""
        return float(self.matrix[self.id(w1), self.id(w2)])

    def row_sums(self) -> npt.NDArray[np.float64]:
        r""":math:`X_i=\sum_k X_{ik}` for every word."""
        return np.asarray(self.matrix.sum(axis=1)).ravel()

    def prob(self, context: str, word: str) -> float:
        r""":math:`P(k\mid w)=X_{wk}/X_w`: how likely ``context`` is near ``word``."""
        i = self.id(word)
        return float(self.matrix[i, self.id(context)]) / float(self.matrix[i].sum())

    def top(self, n: int) -> Cooccurrence:
        """The counts among the ``n`` most frequent words only (a smaller problem for demos;
        the counts themselves are unchanged, i.e. still measured in the full vocabulary)."""
        _positive_int("n", n)
        n = min(n, len(self.words))
        sub = self.matrix[:n, :n].tocsr()
        sub.eliminate_zeros()
        return Cooccurrence(self.words[:n], self.counts[:n], sub, self.window)

    def entries(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Rows, columns and values of the nonzero entries (row-major order)."""
        coo = self.matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float64)

    def ppmi(self, smoothing: float = 1.0) -> Any:
        r"""Positive pointwise mutual information, :math:`\max(0,\log\frac{X_{ij}X}{X_iX_j})`.

        ``smoothing`` < 1 raises the context marginal to that power before normalising
        (``0.75`` is word2vec's negative-sampling exponent).  Returns a sparse matrix with
        the nonzero entries of :math:`X` that have positive PMI.
        """
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        i, j, x = self.entries()
        rows = self.row_sums()
        total = rows.sum()
        ctx = rows**smoothing
        ctx = ctx / ctx.sum()
        pmi = np.log(x / total) - np.log(rows[i] / total) - np.log(ctx[j])
        keep = pmi > 0
        from scipy.sparse import csr_matrix

        n = len(self.words)
        return csr_matrix((pmi[keep], (i[keep], j[keep])), shape=(n, n))


def cooccurrence(
    sentences: Iterable[Sequence[str]],
    window: int = 10,
    min_count: int = 5,
    distance_weighting: bool = True,
) -> Cooccurrence:
    """Count co-occurrences of the words seen at least ``min_count`` times.

    Words outside the vocabulary are dropped first (as in GloVe's ``cooccur`` tool and in
    word2vec), so distances are measured in the remaining words; windows never cross a
    sentence boundary.  A pair at distance :math:`d\\le` ``window`` adds :math:`1/d` to
    both :math:`X_{ij}` and :math:`X_{ji}` (1 with ``distance_weighting=False``).  The
    counting is vectorised per distance and the duplicates summed by scipy, so the whole
    of People's Daily takes a few seconds.
    """
    from scipy.sparse import coo_matrix

    sents = _check_sentences(sentences)
    _positive_int("window", window)
    _positive_int("min_count", min_count)
    counts = Counter(w for s in sents for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if len(words) < 2:
        raise ValueError(
            f"only {len(words)} word(s) occur at least min_count={min_count} times: "
            "use more text or a lower min_count"
        )
    index = {w: i for i, w in enumerate(words)}
    ids = [np.array([index[w] for w in s if w in index], dtype=np.int64) for s in sents]
    ids = [x for x in ids if len(x) > 1]
    n = len(words)
    if not ids:
        return Cooccurrence(words, [counts[w] for w in words], _empty(n), window)
    seq = np.concatenate(ids)
    sent = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        same = np.flatnonzero(sent[d:] == sent[:-d]) if d < len(seq) else np.array([], int)
        a, b = seq[same], seq[same + d]
        weight = 1.0 / d if distance_weighting else 1.0
        rows += [a, b]
        cols += [b, a]
        vals.append(np.full(2 * len(a), weight))
    mat = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()  # tocsr sums duplicate (i, j) entries
    mat.sum_duplicates()
    mat.sort_indices()
    return Cooccurrence(words, [counts[w] for w in words], mat, window)


def _empty(n: int) -> Any:
    from scipy.sparse import csr_matrix

    return csr_matrix((n, n), dtype=np.float64)


def weighting(x: Any, x_max: float = 100.0, alpha: float = 0.75) -> Any:
    r"""GloVe's weight :math:`f(x)=\min(1,(x/x_{\max})^\alpha)` of an entry :math:`X_{ij}=x`.

    Works elementwise on a number, a NumPy array or a tensor.  :math:`f(0)=0`, it grows
    with :math:`x` and stops at 1 for :math:`x\ge x_{\max}`, so frequent pairs do not
    dominate and rare (noisy) ones count little.
    """
    if not x_max > 0:
        raise ValueError(f"x_max must be > 0, got {x_max!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if isinstance(x, torch.Tensor):
        return torch.clamp(x / x_max, min=0.0, max=1.0) ** alpha
    out = np.minimum(1.0, np.maximum(np.asarray(x, dtype=np.float64), 0.0) / x_max) ** alpha
    return float(out) if out.ndim == 0 else out


class GloVe(nn.Module):
    r"""Word vectors :math:`\mathbf w_i`, context vectors :math:`\tilde{\mathbf w}_j` and
    biases :math:`b_i,\tilde b_j`, initialised uniformly in :math:`\pm0.5/d` like the
    reference code."""

    def __init__(self, vocab_size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        _positive_int("vocab_size", vocab_size)
        _positive_int("dim", dim)
        gen = torch.Generator().manual_seed(seed)

        def init(*shape: int) -> nn.Parameter:
            return nn.Parameter((torch.rand(*shape, generator=gen) - 0.5) / dim)

        self.w, self.w_ctx = init(vocab_size, dim), init(vocab_size, dim)
        self.b, self.b_ctx = init(vocab_size), init(vocab_size)

    def predict(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbf w_i^\top\tilde{\mathbf w}_j+b_i+\tilde b_j`, the model's :math:`\log X_{ij}`."""
        return (self.w[i] * self.w_ctx[j]).sum(-1) + self.b[i] + self.b_ctx[j]

    def loss(
        self,
        i: torch.Tensor,
        j: torch.Tensor,
        x: torch.Tensor,
        x_max: float = 100.0,
        alpha: float = 0.75,
    ) -> torch.Tensor:
        """The objective :math:`J` summed over the entries ``(i[k], j[k], x[k])``."""
        diff = self.predict(i, j) - torch.log(x)
        return (weighting(x, x_max, alpha) * diff**2).sum()

    def entry_gradients(
        self,
        i: torch.Tensor,
        j: torch.Tensor,
        x: torch.Tensor,
        x_max: float = 100.0,
        alpha: float = 0.75,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Each entry's gradient of :meth:`loss` with respect to its own rows, by hand.

        With :math:`g=2f(X_{ij})(\mathbf w_i^\top\tilde{\mathbf w}_j+b_i+\tilde b_j-\log X_{ij})`:
        :math:`\partial/\partial\mathbf w_i=g\,\tilde{\mathbf w}_j`,
        :math:`\partial/\partial\tilde{\mathbf w}_j=g\,\mathbf w_i`,
        :math:`\partial/\partial b_i=\partial/\partial\tilde b_j=g`.  Returns
        ``(dw [B, D], dw_ctx [B, D], db [B], db_ctx [B])``; rows repeated in a batch add up.
        """
        with torch.no_grad():
            w, wc = self.w.index_select(0, i), self.w_ctx.index_select(0, j)
            pred = (w * wc).sum(-1) + self.b.index_select(0, i) + self.b_ctx.index_select(0, j)
            g = 2 * weighting(x, x_max, alpha) * (pred - torch.log(x))
            return g[:, None] * wc, g[:, None] * w, g, g

    def gradients(
        self,
        i: torch.Tensor,
        j: torch.Tensor,
        x: torch.Tensor,
        x_max: float = 100.0,
        alpha: float = 0.75,
    ) -> dict[str, torch.Tensor]:
        """Full gradients of :meth:`loss` (same shapes as the parameters), by hand."""
        dw, dwc, db, dbc = self.entry_gradients(i, j, x, x_max, alpha)
        return {
            "w": torch.zeros_like(self.w).index_add_(0, i, dw),
            "w_ctx": torch.zeros_like(self.w_ctx).index_add_(0, j, dwc),
            "b": torch.zeros_like(self.b).index_add_(0, i, db),
            "b_ctx": torch.zeros_like(self.b_ctx).index_add_(0, j, dbc),
        }

    def vectors(self, combine: str = "sum") -> npt.NDArray[np.float32]:
        r"""``"sum"``: :math:`\mathbf w+\tilde{\mathbf w}` (the paper's choice); ``"word"``: :math:`\mathbf w` only."""
        if combine not in ("sum", "word"):
            raise ValueError(f"combine must be 'sum' or 'word', got {combine!r}")
        with torch.no_grad():
            v = self.w + self.w_ctx if combine == "sum" else self.w.clone()
        return v.float().numpy().copy()


@dataclass
class GloVeResult:
    """The trained vectors, the model, the mean weighted loss per entry of every epoch
    (measured during the epoch, as parameters change) and the training time."""

    embeddings: Embeddings
    model: GloVe
    losses: list[float]
    seconds: float


class _SparseAdaGrad:
    """AdaGrad on the rows a minibatch touches: accumulator ``G += g²``, step
    ``-lr · g / sqrt(G)`` (gradients of a row repeated in the batch are summed first).

    ``G`` starts at ``init``.  The reference code starts it at 1, which makes the first
    steps plain SGD steps of size ``lr · g``; with a tiny ``init`` every parameter's first
    step has length about ``lr`` whatever the scale of its gradient, which lets rare
    words — whose entries have small weights :math:`f(X_{ij})` — move as fast as frequent
    ones.
    """

    def __init__(self, param: torch.Tensor, lr: float, init: float) -> None:
        self.param, self.lr = param, lr
        self.acc = torch.full_like(param, init)

    def step(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        uniq, inv = torch.unique(rows, return_inverse=True)
        g = torch.zeros((len(uniq), *grads.shape[1:]), dtype=grads.dtype).index_add_(0, inv, grads)
        acc = self.acc.index_select(0, uniq).addcmul_(g, g)
        self.acc.index_copy_(0, uniq, acc)
        self.param.data.index_add_(0, uniq, g.div_(acc.sqrt_()).mul_(-self.lr))


def train_glove(
    cooc: Cooccurrence,
    dim: int = 100,
    epochs: int = 25,
    batch_size: int = 512,
    lr: float = 0.05,
    x_max: float = 100.0,
    alpha: float = 0.75,
    accumulator_init: float = 1e-8,
    seed: int = 0,
    progress: bool = False,
    num_threads: int = 1,
    on_epoch: Callable[[int, GloVe], None] | None = None,
) -> GloVeResult:
    """Fit :class:`GloVe` to ``cooc`` by AdaGrad over its nonzero entries.

    Each epoch visits every nonzero :math:`X_{ij}` once, in an order drawn from
    ``numpy.random.default_rng(seed)``, ``batch_size`` entries per step; with the same
    seed and ``num_threads`` the result is identical bit for bit.  ``on_epoch(epoch,
    model)`` is called after each epoch (e.g. to evaluate).  Defaults follow the paper
    (:math:`x_{\\max}=100`, :math:`\\alpha=3/4`, learning rate 0.05), except that
    AdaGrad's accumulator starts near 0 (``accumulator_init``) where the reference code
    starts it at 1 (at 1 the first epochs barely move on this corpus).
    """
    if not isinstance(cooc, Cooccurrence):
        raise TypeError(
            f"train_glove needs a Cooccurrence (see cooccurrence()), got {type(cooc).__name__}"
        )
    for name, v in (("dim", dim), ("epochs", epochs), ("batch_size", batch_size)):
        _positive_int(name, v)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not accumulator_init > 0:
        raise ValueError(
            f"accumulator_init must be > 0 (AdaGrad divides by its square root), "
            f"got {accumulator_init!r}"
        )
    _positive_int("num_threads", num_threads)
    if cooc.nnz == 0:
        raise ValueError(
            "the co-occurrence matrix is empty: no two vocabulary words share a window"
        )
    prev = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return _train(
            cooc,
            dim,
            epochs,
            batch_size,
            lr,
            x_max,
            alpha,
            accumulator_init,
            seed,
            progress,
            on_epoch,
        )
    finally:
        torch.set_num_threads(prev)


def _train(
    cooc: Cooccurrence,
    dim: int,
    epochs: int,
    batch_size: int,
    lr: float,
    x_max: float,
    alpha: float,
    accumulator_init: float,
    seed: int,
    progress: bool,
    on_epoch: Callable[[int, GloVe], None] | None,
) -> GloVeResult:
    from llmbook.utils import progress_bar

    rows, cols, vals = cooc.entries()
    i_all, j_all = torch.from_numpy(rows), torch.from_numpy(cols)
    x_all = torch.from_numpy(vals).float()
    rng = np.random.default_rng(seed)
    model = GloVe(len(cooc), dim, seed=seed)
    opts = [
        _SparseAdaGrad(p, lr, accumulator_init)
        for p in (model.w, model.w_ctx, model.b, model.b_ctx)
    ]
    steps = math.ceil(cooc.nnz / batch_size)
    losses: list[float] = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.from_numpy(rng.permutation(cooc.nnz))
        total = 0.0
        for s in progress_bar(
            range(steps), disable=not progress, desc=f"GloVe {epoch + 1}/{epochs}", leave=False
        ):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            i, j, x = i_all[idx], j_all[idx], x_all[idx]
            dw, dwc, db, dbc = model.entry_gradients(i, j, x, x_max, alpha)
            # the loss of the batch before the step: g = 2 f diff, so f diff² = g² / (4 f)
            fx = weighting(x, x_max, alpha)
            total += float((db * db / (4 * fx)).sum())
            opts[0].step(i, dw)
            opts[1].step(j, dwc)
            opts[2].step(i, db)
            opts[3].step(j, dbc)
        losses.append(total / cooc.nnz)
        if on_epoch is not None:
            on_epoch(epoch + 1, model)
    seconds = time.perf_counter() - t0
    emb = Embeddings(cooc.words, model.vectors("sum"), cooc.counts, name="GloVe")
    return GloVeResult(emb, model, losses, seconds)
