r"""Count-based n-gram language models over characters or words, vectorised with NumPy.

An n-gram model approximates the chain rule of probability by forgetting all but the
last :math:`n-1` tokens:

.. math::

    P(w_1,\dots,w_T) = \prod_{t=1}^{T} P(w_t \mid w_{<t})
    \approx \prod_{t=1}^{T} P(w_t \mid w_{t-n+1},\dots,w_{t-1}).

Every sentence is padded with :math:`n-1` start symbols ``<s>`` and one end symbol
``</s>`` (the same convention as ``nltk.lm.preprocessing.padded_everygram_pipeline``), so
the model also predicts where a text ends.  Counting is done once for all orders
:math:`1..n` with ``np.unique`` on integer keys: the dense id of an :math:`m`-gram is found
from the id of its :math:`(m-1)`-gram prefix and its last token, so no Python object is
created per n-gram and no dictionary is queried per test position.

Smoothing
---------
``"mle"``
    :math:`c(hw)/c(h\cdot)` — unseen events get probability 0.
``"addk"`` (Lidstone; ``k=1`` is Laplace)
    :math:`\dfrac{c(hw)+k}{c(h\cdot)+k|V|}` with :math:`c(h\cdot)=\sum_w c(hw)`.
``"kn"`` (interpolated Kneser–Ney with absolute discount :math:`D`)
    .. math::

        P_{KN}(w\mid h) = \frac{\max(c^*(hw)-D,0)}{\sum_{w'} c^*(hw')}
        + \frac{D\,N_{1+}(h\,\cdot)}{\sum_{w'} c^*(hw')}\,P_{KN}(w\mid h')

    where :math:`h'` drops the oldest token of :math:`h`; :math:`c^*` is the raw count at
    the highest order and the *continuation count* :math:`N_{1+}(\cdot\,hw)` (the number
    of distinct tokens seen before :math:`hw`) at lower orders.  A context never seen in
    training passes all its mass to the lower order.  By default the unigram level is
    itself discounted and interpolated with the uniform distribution :math:`1/|V|`, so
    every token of the vocabulary has non-zero probability and every conditional
    distribution sums to one.  ``nltk_compat=True`` reproduces NLTK's
    ``KneserNeyInterpolated`` instead: undiscounted unigram continuation probabilities
    (zero for a token never seen after another one) and, at the middle orders,
    :math:`N_{1+}(h\,\cdot)` counted from raw rather than continuation counts, which
    differs only for contexts made purely of ``<s>`` (the first token of a sentence).

The vocabulary holds every training token (``<s>`` and ``</s>`` included) seen at least
``min_count`` times, plus ``<unk>``; rarer training tokens and unseen test tokens are
replaced by ``<unk>`` — exactly as ``nltk.lm.Vocabulary(unk_cutoff=min_count)`` does, so
:math:`|V|` is the same number in both libraries.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

from llmbook.models.ngram_tables import (
    OrderTable,
    TokenIds,
    empty_stats,
    tokenize_corpus,
    unique_keys,
)

__all__ = [
    "NGramLM",
    "BOS",
    "EOS",
    "UNK",
    "tokenize_corpus",
    "unseen_ngram_rate",
    "NotFittedError",
]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
Smoothing = Literal["mle", "addk", "kn"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class NotFittedError(RuntimeError):
    """The model was used before :meth:`NGramLM.fit`."""


class NGramLM:
    """An n-gram language model with MLE, add-k or interpolated Kneser–Ney smoothing.

    >>> lm = NGramLM(n=2, smoothing="addk", k=1.0).fit(["床前明月光", "明月几时有"])
    >>> round(lm.prob("月", ["明"]), 4)  # (2 + 1) / (2 + 1 * |V|), |V| = 11
    0.2308

    Parameters
    ----------
    n: order of the model (context of ``n-1`` tokens), ``n >= 1``.
    smoothing: ``"mle"``, ``"addk"`` or ``"kn"`` (see the module docstring).
    k: pseudo-count of add-k smoothing (``k=1`` Laplace, ``0 < k < 1`` Lidstone).
    discount: absolute discount ``D`` of Kneser–Ney, ``0 < D <= 1``.
    min_count: training tokens seen fewer times become ``<unk>``.
    unit: how plain strings are split: ``"char"`` or ``"word"`` (jieba).
    nltk_compat: reproduce ``nltk.lm`` exactly: pad each text with ``n-1`` end symbols
        as ``pad_both_ends`` does (so ``</s>`` is predicted ``n-1`` times) and, for
        ``"kn"``, use NLTK's variant of Kneser–Ney (see the module docstring).
    """

    def __init__(
        self,
        n: int = 3,
        smoothing: Smoothing = "kn",
        k: float = 1.0,
        discount: float = 0.75,
        min_count: int = 1,
        unit: str = "char",
        nltk_compat: bool = False,
    ) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if smoothing not in ("mle", "addk", "kn"):
            raise ValueError(f"smoothing must be 'mle', 'addk' or 'kn', got {smoothing!r}")
        if smoothing == "addk" and not k > 0:
            raise ValueError(
                f"add-k smoothing needs k > 0, got k={k!r} (use smoothing='mle' for k=0)"
            )
        if smoothing == "kn":
            if n < 2:
                raise ValueError("Kneser–Ney needs n >= 2 (it interpolates with lower orders)")
            if not 0 < discount <= 1:
                raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
        if unit not in ("char", "word"):
            raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
        self.n = n
        self.smoothing: Smoothing = smoothing
        self.k = float(k)
        self.discount = float(discount)
        self.min_count = min_count
        self.unit = unit
        self.nltk_compat = nltk_compat
        #: number of ``</s>`` appended to each text: 1, or n-1 like NLTK's ``pad_both_ends``
        self.n_end = n - 1 if nltk_compat else 1
        self.vocab: list[str] = []
        self.stoi: dict[str, int] = {}
        self._orders: list[OrderTable] = []
        self.num_tokens = 0

    def __repr__(self) -> str:
        extra = {"addk": f", k={self.k:g}", "kn": f", discount={self.discount:g}", "mle": ""}
        return (
            f"NGramLM(n={self.n}, smoothing={self.smoothing!r}{extra[self.smoothing]}, "
            f"unit={self.unit!r}, vocab={len(self.vocab)})"
        )

    # ------------------------------------------------------------------ encoding
    @property
    def vocab_size(self) -> int:
        """|V|: distinct training tokens (with ``<s>``, ``</s>``) kept, plus ``<unk>``."""
        return len(self.vocab)

    def _check_fitted(self) -> None:
        if not self._orders:
            raise NotFittedError("this NGramLM is not fitted yet: call .fit(texts) first")

    def _encode(self, sents: list[list[str]]) -> tuple[IntArray, IntArray]:
        """Padded token ids of all sentences, concatenated, and the tokens left in each sentence."""
        pad, end = [BOS] * (self.n - 1), [EOS] * self.n_end
        lookup = TokenIds(self.stoi, self.stoi[UNK])
        flat = chain.from_iterable(pad + s + end for s in sents)
        ids = np.fromiter(map(lookup.__getitem__, flat), dtype=np.int64)
        lengths = np.fromiter((len(s) for s in sents), dtype=np.int64, count=len(sents))
        lengths += self.n - 1 + self.n_end
        ends = np.cumsum(lengths)
        rem = np.repeat(ends, lengths) - np.arange(len(ids), dtype=np.int64)
        return ids, rem

    # ------------------------------------------------------------------ fitting
    def fit(self, texts: Iterable[str] | Iterable[Sequence[str]]) -> NGramLM:
        """Count all 1..n-grams of ``texts`` (strings or token lists); returns ``self``."""
        sents = tokenize_corpus(texts, self.unit)
        if not sents or not any(sents):
            raise ValueError("cannot fit an n-gram model on an empty corpus: pass non-empty texts")
        n = self.n
        freq: Counter[str] = Counter()
        for s in sents:
            freq.update(s)
        freq[BOS] += (n - 1) * len(sents)
        if self.n_end:
            freq[EOS] += self.n_end * len(sents)
        freq.pop(UNK, None)
        kept = sorted(t for t, c in freq.items() if c >= self.min_count)
        self.vocab = kept + [UNK]
        self.stoi = {t: i for i, t in enumerate(self.vocab)}
        V = len(self.vocab)
        seq, rem = self._encode(sents)
        self.num_tokens = int(len(seq))

        orders: list[OrderTable] = []
        count1 = np.bincount(seq, minlength=V).astype(np.float64)
        orders.append(OrderTable(np.arange(V, dtype=np.int64), count1, np.zeros(V), *empty_stats()))
        gids: list[IntArray] = [seq]  # id of the m-gram starting at each position, -1 if none
        for m in range(2, n + 1):
            valid = np.flatnonzero(rem >= m)
            keys = gids[-1][valid] * V + seq[valid + m - 1]
            uniq, first, inv, cnt = unique_keys(keys)
            gid = np.full(len(seq), -1, dtype=np.int64)
            gid[valid] = inv.reshape(-1)
            gids.append(gid)
            orders.append(
                OrderTable(uniq, cnt.astype(np.float64), np.zeros(len(uniq)), *empty_stats())
            )
            # continuation counts: N1+(. g) for g of order m-1 = number of distinct m-grams
            # whose suffix is g; the suffix of the m-gram at i is the (m-1)-gram at i+1.
            suffix = gids[m - 2][valid[first] + 1]
            orders[m - 2].cont = np.bincount(suffix, minlength=len(orders[m - 2].keys)).astype(
                np.float64
            )
        for m in range(2, n + 1):
            o = orders[m - 1]
            ctx = o.keys // V
            n_ctx = len(orders[m - 2].keys)
            weight = o.count if m == n else o.cont
            o.ctx_total = np.bincount(ctx, weights=weight, minlength=n_ctx).astype(np.float64)
            o.ctx_types_raw = np.bincount(ctx, minlength=n_ctx).astype(np.float64)
            o.ctx_types = (
                o.ctx_types_raw
                if m == n
                else np.bincount(
                    ctx, weights=(o.cont > 0).astype(np.float64), minlength=n_ctx
                ).astype(np.float64)
            )
        self._orders = orders
        return self

    def _all_gids(
        self, seq: IntArray, rem: IntArray, orders: list[OrderTable] | None = None
    ) -> list[IntArray]:
        """For each order m, the training id of the m-gram starting at each position (-1: unseen)."""
        orders = self._orders if orders is None else orders
        V = len(orders[0].keys)
        out = [seq]
        prev = seq
        for m in range(2, len(orders) + 1):
            keys_m = orders[m - 1].keys
            g = np.full(len(seq), -1, dtype=np.int64)
            valid = np.flatnonzero((rem >= m) & (prev >= 0))
            key = prev[valid] * V + seq[valid + m - 1]
            pos = np.searchsorted(keys_m, key)
            pos_c = np.minimum(pos, len(keys_m) - 1)
            hit = keys_m[pos_c] == key
            g[valid[hit]] = pos_c[hit]
            out.append(g)
            prev = g
        return out

    # ------------------------------------------------------------------ scoring
    def _probs(self, w: IntArray, ctx_ids: list[IntArray], gram_ids: list[IntArray]) -> FloatArray:
        """P(w | context) for arrays of queries.

        ``gram_ids[m-1]`` is the id of the m-gram (context suffix + w) of order m and
        ``ctx_ids[m-1]`` the id of its (m-1)-token context (unused for m = 1); -1 = unseen.
        """
        n, V, orders = self.n, self.vocab_size, self._orders
        top = orders[n - 1]
        if self.smoothing in ("mle", "addk"):
            g = gram_ids[n - 1]
            num = np.where(g >= 0, top.count[np.maximum(g, 0)], 0.0)
            if n == 1:
                den = np.full(len(w), top.count.sum())
            else:
                c = ctx_ids[n - 1]
                den = np.where(c >= 0, top.ctx_total[np.maximum(c, 0)], 0.0)
            if self.smoothing == "addk":
                return cast(FloatArray, (num + self.k) / (den + self.k * V))
            with np.errstate(invalid="ignore", divide="ignore"):
                return cast(FloatArray, np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0))
        D = self.discount
        u = orders[0]
        total1 = u.cont.sum()
        if self.nltk_compat:
            p = u.cont[w] / total1
        else:
            types1 = float((u.cont > 0).sum())
            p = np.maximum(u.cont[w] - D, 0.0) / total1 + D * types1 / total1 / V
        for m in range(2, n + 1):
            o = orders[m - 1]
            c, g = ctx_ids[m - 1], gram_ids[m - 1]
            cc = np.maximum(c, 0)
            gg = np.maximum(g, 0)
            stat = o.count if m == n else o.cont
            num = np.where(g >= 0, stat[gg], 0.0)
            tot = np.where(c >= 0, o.ctx_total[cc], 0.0)
            types_arr = o.ctx_types_raw if self.nltk_compat else o.ctx_types
            types = np.where(c >= 0, types_arr[cc], 0.0)
            seen = tot > 0
            safe = np.where(seen, tot, 1.0)
            p = np.where(seen, (np.maximum(num - D, 0.0) + D * types * p) / safe, p)
        return cast(FloatArray, p)

    def _positions(self, sents: list[list[str]]) -> tuple[FloatArray, IntArray, IntArray]:
        """Probabilities of every predicted token (real tokens and ``</s>``) of ``sents``.

        Returns (probabilities, sentence index of each position, token id).
        """
        self._check_fitted()
        n = self.n
        seq, rem = self._encode(sents)
        gids = self._all_gids(seq, rem)
        lengths = np.asarray([len(s) + n - 1 + self.n_end for s in sents], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sent_of = np.repeat(np.arange(len(sents)), lengths - (n - 1))
        # predicted positions: everything after the n-1 pads of each sentence
        offs = np.arange(len(seq)) - np.repeat(starts, lengths)
        t = np.flatnonzero(offs >= n - 1)
        ctx_ids = [np.zeros(0, dtype=np.int64)] + [gids[m - 2][t - m + 1] for m in range(2, n + 1)]
        gram_ids = [gids[m - 1][t - m + 1] for m in range(1, n + 1)]
        return self._probs(seq[t], ctx_ids, gram_ids), sent_of, seq[t]

    def prob(self, word: str, context: Sequence[str] = ()) -> float:
        """P(word | context); only the last ``n-1`` context tokens are used.

        A shorter context is padded on the left with ``<s>`` (a sentence start); unknown
        tokens count as ``<unk>``.
        """
        self._check_fitted()
        if not isinstance(word, str):
            raise TypeError(f"word must be a str token, got {type(word).__name__}")
        if isinstance(context, str):
            context = list(context) if self.unit == "char" else [context]
        dist = self.next_token_distribution(context)
        return float(dist[self.stoi.get(word, self.stoi[UNK])])

    def next_token_distribution(self, context: Sequence[str] = ()) -> FloatArray:
        """The vector P(· | context) over :attr:`vocab` (left-padded with ``<s>``)."""
        self._check_fitted()
        n, V = self.n, self.vocab_size
        unk = self.stoi[UNK]
        ctx_list = [self.stoi.get(t, unk) for t in context][-(n - 1) :] if n > 1 else []
        # <s> is not in the vocabulary when n == 1 or when it is rarer than min_count; pad
        # with what training used then, <unk> (KeyError found by tests/test_properties.py)
        ctx_list = [self.stoi.get(BOS, unk)] * (n - 1 - len(ctx_list)) + ctx_list
        w = np.arange(V, dtype=np.int64)
        ctx_ids: list[IntArray] = [np.zeros(0, dtype=np.int64)]
        gram_ids: list[IntArray] = [w]
        for m in range(2, n + 1):
            # id of the (m-1)-token context = last m-1 tokens of ctx_list
            toks = ctx_list[len(ctx_list) - (m - 1) :]
            cid = self._lookup(toks)
            ctx_ids.append(np.full(V, cid, dtype=np.int64))
            if cid < 0:
                gram_ids.append(np.full(V, -1, dtype=np.int64))
            else:
                keys_m = self._orders[m - 1].keys
                key = cid * V + w
                pos = np.minimum(np.searchsorted(keys_m, key), len(keys_m) - 1)
                gram_ids.append(np.where(keys_m[pos] == key, pos, -1))
        return self._probs(w, ctx_ids, gram_ids)

    def _lookup(self, toks: Sequence[int]) -> int:
        """Training id of the gram with token ids ``toks`` (-1 if never seen)."""
        V = self.vocab_size
        gid = toks[0]
        for m, t in enumerate(toks[1:], start=2):
            keys_m = self._orders[m - 1].keys
            key = gid * V + t
            pos = int(np.searchsorted(keys_m, key))
            if pos >= len(keys_m) or keys_m[pos] != key:
                return -1
            gid = pos
        return int(gid)

    def token_probs(self, text: str | Sequence[str]) -> list[tuple[str, float]]:
        """Each predicted token of one text (its tokens, then ``</s>``) with its probability."""
        sents = tokenize_corpus([text], self.unit)
        p, _, ids = self._positions(sents)
        toks = sents[0] + [EOS] * self.n_end
        return [(t, float(q)) for t, q in zip(toks, p)]

    def sentence_logprob(self, text: str | Sequence[str]) -> float:
        """Natural log of P(text), the end symbol ``</s>`` included (``-inf`` if impossible)."""
        p, _, _ = self._positions(tokenize_corpus([text], self.unit))
        with np.errstate(divide="ignore"):
            return float(np.log(p).sum())

    def sentence_prob(self, text: str | Sequence[str]) -> float:
        """P(text) (underflows to 0 for long texts: prefer :meth:`sentence_logprob`)."""
        return math.exp(self.sentence_logprob(text))

    def _total_bits(
        self, texts: Iterable[str] | Iterable[Sequence[str]]
    ) -> tuple[float, int, list[list[str]]]:
        sents = tokenize_corpus(texts, self.unit)
        if not sents:
            raise ValueError("cannot evaluate on an empty corpus: pass at least one text")
        p, _, _ = self._positions(sents)
        with np.errstate(divide="ignore"):
            bits = float(-np.log2(p).sum())
        return bits, len(p), sents

    def cross_entropy(self, texts: Iterable[str] | Iterable[Sequence[str]]) -> float:
        """Average bits per predicted token (tokens and ``</s>``) of ``texts``."""
        bits, count, _ = self._total_bits(texts)
        return bits / count

    def perplexity(self, texts: Iterable[str] | Iterable[Sequence[str]]) -> float:
        r"""Perplexity :math:`2^{H}` with :math:`H` the cross-entropy in bits per token.

        Equals ``nltk.lm``'s ``perplexity`` over the padded n-grams of the same texts.
        """
        return float(2.0 ** self.cross_entropy(texts))

    def bits_per_char(self, texts: Iterable[str]) -> float:
        """The book's shared bpc protocol (every model in the book reports it the same way).

        Each text is scored independently from a sentence-start context; every token and
        the end marker (``</s>``, standing for the final ``"\\n"``) is predicted.
        bpc = total bits / sum(len(text) + 1) — characters, also for word models.
        """
        if self.nltk_compat:
            raise ValueError(
                "bits_per_char follows the book's protocol (one end marker per text); "
                "nltk_compat=True pads n-1 end markers like NLTK: use nltk_compat=False"
            )
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"bits_per_char needs strings; text {i} is {type(t).__name__}")
        bits, _, _ = self._total_bits(texts)
        return bits / sum(len(t) + 1 for t in texts)

    def coverage(self, texts: Iterable[str] | Iterable[Sequence[str]]) -> dict[int, float]:
        """Share of the m-grams of ``texts`` (m = 1..n) never seen in training.

        Only m-grams made of text tokens count (none of the ``<s>``/``</s>`` padding), so
        the rates measure how sparse the language itself is; texts shorter than m
        contribute no m-gram.
        """
        self._check_fitted()
        sents = tokenize_corpus(texts, self.unit)
        if not sents:
            raise ValueError("cannot evaluate on an empty corpus: pass at least one text")
        n = self.n
        seq, rem = self._encode(sents)
        gids = self._all_gids(seq, rem)
        lengths = np.asarray([len(s) + n - 1 + self.n_end for s in sents], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        offs = np.arange(len(seq)) - np.repeat(starts, lengths)
        text_left = rem - self.n_end  # text tokens from this position to the end of its text
        out = {}
        for m in range(1, n + 1):
            pos = np.flatnonzero((offs >= n - 1) & (text_left >= m))
            if len(pos) == 0:
                raise ValueError(
                    f"no text has {m} or more tokens: cannot measure {m}-gram coverage"
                )
            g = gids[m - 1][pos]
            if m == 1:
                g = np.where(self._orders[0].count[g] > 0, g, -1)
            out[m] = float((g < 0).mean())
        return out

    # ------------------------------------------------------------------ sampling
    def generate(
        self,
        max_tokens: int = 50,
        prefix: str | Sequence[str] = "",
        seed: int | None = 0,
        temperature: float = 1.0,
    ) -> str:
        """Sample a continuation of ``prefix`` token by token until ``</s>`` or ``max_tokens``.

        ``<s>`` and ``<unk>`` are never emitted; ``temperature`` < 1 sharpens the distribution.
        Returns the prefix plus the sampled tokens, joined (with no separator).
        """
        self._check_fitted()
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        rng = np.random.default_rng(seed)
        ctx = tokenize_corpus([prefix], self.unit)[0] if prefix else []
        out = list(ctx)
        banned = [self.stoi[t] for t in (BOS, UNK) if t in self.stoi]
        eos_id = self.stoi.get(EOS, -1)
        for _ in range(max_tokens):
            p = self.next_token_distribution(out).copy()
            p[banned] = 0.0
            if temperature != 1.0:
                p = np.power(p, 1.0 / temperature)
            s = p.sum()
            if s <= 0:
                break
            i = int(rng.choice(len(p), p=p / s))
            if i == eos_id:
                break
            out.append(self.vocab[i])
        return "".join(out)


def unseen_ngram_rate(
    train: Iterable[str] | Iterable[Sequence[str]],
    test: Iterable[str] | Iterable[Sequence[str]],
    max_n: int = 6,
    unit: str = "char",
) -> dict[int, float]:
    """Share of test n-grams (n = 1..max_n) that never occur in ``train`` — the sparsity problem.

    Counts n-grams inside the texts only (no start/end padding); see :meth:`NGramLM.coverage`.
    """
    lm = NGramLM(n=max_n, smoothing="mle", unit=unit)
    lm.fit(train)
    return lm.coverage(test)
