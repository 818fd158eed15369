"""Tests for llmbook.evaluation.lm: the shared bits-per-character protocol."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmbook.evaluation.lm import (
    _windows,
    bits_per_char,
    bpc_from_token_loss,
    perplexity,
    protocol_sequences,
    sequence_nll,
)
from llmbook.text.tokenizers import CharTokenizer

TEXTS = ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟。"]


@dataclass
class _Cfg:
    vocab_size: int
    block_size: int


class Bigram(nn.Module):
    """p(x_t | x_{<t}) depends only on x_{t-1}: the sliding window cannot change it."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.config = _Cfg(vocab_size, block_size)
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx, targets=None):
        logits = self.table(idx)
        loss = None if targets is None else F.cross_entropy(logits.transpose(1, 2), targets)
        return logits, loss


class Uniform(nn.Module):
    def __init__(self, vocab_size: int, block_size: int = 8) -> None:
        super().__init__()
        self.config = _Cfg(vocab_size, block_size)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, self.config.vocab_size) + 0 * self.dummy, None


@torch.no_grad()
def _reference_bpc(model: nn.Module, tok: CharTokenizer, texts: list[str]) -> float:
    """Score every poem alone, position by position, with full context."""
    bits = 0.0
    chars = 0
    for t in texts:
        ids = tok.encode(t + "\n")
        x = torch.tensor([[tok.bos_id] + ids[:-1]])
        logits, _ = model(x)
        logp = torch.log_softmax(logits[0], -1)
        bits += -sum(float(logp[i, j]) for i, j in enumerate(ids)) / math.log(2)
        chars += len(t) + 1
    return bits / chars


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer.fit(TEXTS + ["\n"])


def test_uniform_model_gives_log2_vocab(tok: CharTokenizer) -> None:
    bpc = bits_per_char(Uniform(tok.vocab_size), tok, TEXTS)
    assert bpc == pytest.approx(math.log2(tok.vocab_size), rel=1e-6)


@pytest.mark.parametrize("block", [64, 5, 3])
def test_matches_reference_and_window_is_exact_for_bigram(tok: CharTokenizer, block: int) -> None:
    torch.manual_seed(0)
    model = Bigram(tok.vocab_size, block)
    ref = _reference_bpc(model, tok, TEXTS)
    assert bits_per_char(model, tok, TEXTS, batch_size=2) == pytest.approx(ref, rel=1e-5)


def test_batch_size_does_not_matter_and_mode_restored(tok: CharTokenizer) -> None:
    torch.manual_seed(1)
    model = Bigram(tok.vocab_size, 64)
    model.train()
    a = bits_per_char(model, tok, TEXTS, batch_size=1)
    b = bits_per_char(model, tok, TEXTS, batch_size=64)
    assert a == pytest.approx(b, rel=1e-6)
    assert model.training


@pytest.mark.parametrize("n,block", [(10, 4), (5, 4), (9, 3), (7, 1), (4, 8)])
def test_windows_score_every_position_once(n: int, block: int) -> None:
    inputs = list(range(100, 100 + n))
    targets = list(range(n))
    seen: list[int] = []
    for x, y in _windows(inputs, targets, block):
        assert len(x) == len(y) <= block
        # the window's inputs are a contiguous slice of the sequence
        start = x[0] - 100
        assert x == inputs[start : start + len(x)]
        seen += [t for t in y if t != -100]
    assert seen == targets


def test_unit_conversions() -> None:
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    # a character model: loss/ln2; a model with half as many tokens: twice the bits per token
    assert bpc_from_token_loss(math.log(2.0), 10, 10) == pytest.approx(1.0)
    assert bpc_from_token_loss(math.log(2.0), 5, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="must be positive"):
        bpc_from_token_loss(1.0, 0, 10)


def test_clear_errors(tok: CharTokenizer) -> None:
    model = Bigram(tok.vocab_size, 8)
    with pytest.raises(TypeError, match="wrap it"):
        bits_per_char(model, tok, "床前明月光")
    with pytest.raises(ValueError, match="no texts"):
        bits_per_char(model, tok, [])

    class NoConfig(nn.Module):
        def forward(self, idx):
            return idx

    with pytest.raises(TypeError, match=r"NoConfig has no attribute 'config'.*block_size"):
        bits_per_char(NoConfig(), tok, TEXTS)


def test_protocol_sequences_feed_sequence_nll(tok: CharTokenizer) -> None:
    torch.manual_seed(2)
    model = Bigram(tok.vocab_size, 6)
    seqs, n_chars = protocol_sequences(tok, TEXTS, 6)
    assert n_chars == sum(len(t) + 1 for t in TEXTS)
    assert all(len(x) == len(y) <= 6 for x, y in seqs)
    total, count = sequence_nll(model, seqs)
    assert count == n_chars  # a character tokenizer: one target per character
    assert total / math.log(2) / n_chars == pytest.approx(bits_per_char(model, tok, TEXTS))
