r"""Skip-gram with negative sampling (SGNS) written out in PyTorch: the model of section 2.6.

SGNS (Mikolov et al. 2013) maximises, for each
(centre word :math:`c`, context word :math:`o`) pair and :math:`K` words :math:`n_k`
drawn from the unigram distribution raised to the power 3/4,

.. math::

    \log\sigma(\mathbf u_o^\top\mathbf v_c) + \sum_{k=1}^{K}\log\sigma(-\mathbf u_{n_k}^\top\mathbf v_c),

where :math:`\mathbf v` are the "input" (centre) vectors — the embeddings we keep — and
:math:`\mathbf u` the "output" (context) vectors.
The trained input vectors become an :class:`llmbook.text.embeddings.Embeddings`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from llmbook.text.embeddings import Embeddings, _check_sentences

__all__ = [
    "SGNSResult",
    "SkipGramNS",
    "train_sgns",
]


class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling: input (centre) and output (context) embeddings."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.inp = nn.Embedding(vocab_size, dim)
        self.out = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out.weight)

    def forward(
        self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Mean negative log-likelihood of a batch: ``center``/``context`` [B], ``negatives`` [B, K]."""
        v = self.inp(center)  # [B, D]
        pos = (self.out(context) * v).sum(-1)  # [B]
        neg = torch.bmm(self.out(negatives), v.unsqueeze(-1)).squeeze(-1)  # [B, K]
        loss = -(nn.functional.logsigmoid(pos) + nn.functional.logsigmoid(-neg).sum(-1))
        return loss.mean()


@dataclass
class SGNSResult:
    embeddings: Embeddings
    losses: list[float]
    pairs_per_epoch: int
    seconds: float


def _skipgram_pairs(
    ids: list[npt.NDArray[np.int64]], window: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """All (centre, context) pairs with word2vec's shrunk random window, vectorised per offset."""
    seq = np.concatenate(ids)
    sent = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
    radius = rng.integers(1, window + 1, size=len(seq))
    cs, os_ = [], []
    for d in range(1, window + 1):
        for sign in (-1, 1):
            j = np.arange(len(seq)) + sign * d
            ok = (j >= 0) & (j < len(seq)) & (radius >= d)
            i = np.flatnonzero(ok)
            i = i[sent[i] == sent[j[i]]]
            cs.append(seq[i])
            os_.append(seq[j[i]])
    return np.concatenate(cs), np.concatenate(os_)


def train_sgns(
    sentences: Iterable[Sequence[str]],
    dim: int = 100,
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    epochs: int = 2,
    batch_size: int = 1024,
    lr: float = 0.005,
    subsample: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
    num_threads: int = 1,
) -> SGNSResult:
    """Train :class:`SkipGramNS` with Adam; returns the input vectors as :class:`Embeddings`.

    Frequent words are subsampled as in word2vec (a word of relative frequency ``f`` is
    kept with probability :math:`\\min(1, \\sqrt{t/f} + t/f)`, ``t = subsample``), pairs are
    re-drawn each epoch, and negatives come from the unigram distribution to the 3/4.
    The small per-step tensors run fastest on one thread (``num_threads``; the previous
    setting is restored afterwards).
    """

    sents = _check_sentences(sentences)
    if min_count < 1 or window < 1 or negative < 1 or epochs < 1:
        raise ValueError("min_count, window, negative and epochs must all be >= 1")
    counts = Counter(w for s in sents for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if len(words) < 2:
        raise ValueError(
            f"only {len(words)} word(s) occur at least min_count={min_count} times: "
            "use more text or a lower min_count"
        )
    index = {w: i for i, w in enumerate(words)}
    freq = np.array([counts[w] for w in words], dtype=np.float64)
    ids = [np.array([index[w] for w in s if w in index], dtype=np.int64) for s in sents]
    ids = [x for x in ids if len(x) > 1]
    total = freq.sum()
    keep_p = np.minimum(1.0, np.sqrt(subsample * total / freq) + subsample * total / freq)
    noise = torch.tensor(freq**0.75 / (freq**0.75).sum(), dtype=torch.float)

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        return _train_sgns_loop(
            sents,
            counts,
            words,
            keep_p,
            noise,
            ids,
            dim,
            window,
            negative,
            epochs,
            batch_size,
            lr,
            seed,
            progress,
        )
    finally:
        torch.set_num_threads(prev_threads)


def _train_sgns_loop(
    sents: list[list[str]],
    counts: Counter[str],
    words: list[str],
    keep_p: npt.NDArray[np.float64],
    noise: torch.Tensor,
    ids: list[npt.NDArray[np.int64]],
    dim: int,
    window: int,
    negative: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
) -> SGNSResult:
    import time

    from llmbook.optim import optimizer_step
    from llmbook.utils import progress_bar

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SkipGramNS(len(words), dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    t0 = time.perf_counter()
    n_pairs = 0
    for _ in range(epochs):
        kept = [x[rng.random(len(x)) < keep_p[x]] for x in ids]
        c_np, o_np = _skipgram_pairs([x for x in kept if len(x) > 1], window, rng)
        perm = rng.permutation(len(c_np))
        center, context = torch.from_numpy(c_np[perm]), torch.from_numpy(o_np[perm])
        n_pairs = len(center)
        steps = math.ceil(n_pairs / batch_size)
        running = 0.0
        for step in progress_bar(range(steps), disable=not progress, desc="SGNS", leave=False):
            sl = slice(step * batch_size, (step + 1) * batch_size)
            c, o = center[sl], context[sl]
            neg = torch.multinomial(noise, len(c) * negative, replacement=True, generator=gen)
            loss = model(c, o, neg.view(len(c), negative))
            optimizer_step(model, opt, loss)  # a constant learning rate, no clipping
            running += loss.item()
        losses.append(running / steps)
    emb = Embeddings(
        words,
        model.inp.weight.detach().numpy().copy(),
        [counts[w] for w in words],
        name="SGNS（PyTorch）",
    )
    return SGNSResult(emb, losses, n_pairs, time.perf_counter() - t0)
