"""Attention from its formula agrees with SDPA and torch.nn.MultiheadAttention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmbook.models.attention import MultiHeadAttention, attention, causal_mask, padding_mask
from llmbook.models.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _qkv(seed: int = 0, b: int = 2, h: int = 3, t: int = 5, s: int = 5, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, t, d, generator=g),
        torch.randn(b, h, s, d, generator=g),
        torch.randn(b, h, s, d, generator=g),
    )


def test_formula_equals_sdpa_plain_causal_and_masked() -> None:
    q, k, v = _qkv()
    torch.testing.assert_close(attention(q, k, v)[0], F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(
        attention(q, k, v, is_causal=True)[0],
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
    )
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    m = padding_mask(ids)
    torch.testing.assert_close(
        attention(q, k, v, mask=m)[0], F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    )


def test_formula_gradients_equal_sdpa() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv(1))
    g1 = torch.autograd.grad(attention(q, k, v, is_causal=True)[0].square().sum(), (q, k, v))
    g2 = torch.autograd.grad(
        F.scaled_dot_product_attention(q, k, v, is_causal=True).square().sum(), (q, k, v)
    )
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_weights_are_distributions_and_respect_masks() -> None:
    q, k, v = _qkv(2)
    ids = torch.tensor([[5, 6, 0, 0, 0], [5, 6, 7, 8, 9]])
    _, w = attention(q, k, v, mask=padding_mask(ids), is_causal=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    assert torch.all(w[0, :, :, 2:] == 0)  # padding gets no weight
    assert torch.all(w.triu(diagonal=1) == 0)  # no look into the future
    assert torch.all(w[:, :, 0, 0] == 1)  # the first query can only see itself


def test_causal_mask_shapes() -> None:
    assert causal_mask(3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    # the last 2 queries of a 4-token sequence (decoding with a cache)
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_scores_variance_grows_with_dk_and_scaling_fixes_it() -> None:
    g = torch.Generator().manual_seed(0)
    for d in (16, 256):
        q, k = torch.randn(4000, d, generator=g), torch.randn(4000, d, generator=g)
        raw = (q * k).sum(-1)
        assert raw.var().item() == pytest.approx(d, rel=0.1)
        assert (raw / math.sqrt(d)).var().item() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_equals_torch_multihead_attention(causal: bool) -> None:
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(12, 3, batch_first=True)
    mine = MultiHeadAttention(12, 3).load_from_torch(ref)
    x = torch.randn(2, 6, 12, requires_grad=True)
    torch_mask = causal_mask(6).logical_not() if causal else None  # torch: True = blocked
    out_ref, w_ref = ref(x, x, x, attn_mask=torch_mask, average_attn_weights=False)
    out_fast, none = mine(x, is_causal=causal)
    out_slow, w = mine(x, is_causal=causal, need_weights=True)
    assert none is None and w is not None
    torch.testing.assert_close(out_fast, out_ref)
    torch.testing.assert_close(out_slow, out_ref)
    torch.testing.assert_close(w, w_ref)
    (g1,) = torch.autograd.grad(out_fast.sum(), x)
    (g2,) = torch.autograd.grad(out_ref.sum(), x)
    torch.testing.assert_close(g1, g2)


def test_mha_cross_attention_with_padding_equals_torch() -> None:
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    mine = MultiHeadAttention(8, 2).load_from_torch(ref)
    xq, mem = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    src = torch.tensor([[4, 4, 4, 0, 0], [4, 4, 4, 4, 4]])
    out_ref, _ = ref(xq, mem, mem, key_padding_mask=src == 0)
    out, _ = mine(xq, mem, mask=padding_mask(src))
    torch.testing.assert_close(out, out_ref)
    out2, _ = mine(xq, mem, mask=padding_mask(src), need_weights=True)
    torch.testing.assert_close(out2, out_ref)


def test_mha_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match=r"\[batch, time, 8\]"):
        MultiHeadAttention(8, 2)(torch.randn(3, 8))
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="bool tensor"):
        attention(q, k, v, mask=torch.ones(5, 5))
    with pytest.raises(ValueError, match="same last dimension"):
        attention(q, k[..., :3], v)


def test_sinusoidal_formula_and_modules() -> None:
    pe = sinusoidal_encoding(50, 8)
    pos, i = 7, 1
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(
        math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6
    )
    x = torch.zeros(2, 5, 8)
    torch.testing.assert_close(SinusoidalPositionalEncoding(8, 50)(x)[0], pe[:5])
    assert LearnedPositionalEmbedding(8, 5)(x).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="exceeds max_len=4"):
        LearnedPositionalEmbedding(8, 4)(x)
    with pytest.raises(ValueError, match="must be even"):
        sinusoidal_encoding(4, 5)


def test_rope_keeps_norms_and_depends_only_on_relative_position() -> None:
    rope = RotaryEmbedding(8, max_len=64)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    seq_q = q.expand(40, 8)
    seq_k = k.expand(40, 8)
    rq, rk = rope(seq_q), rope(seq_k)
    torch.testing.assert_close(rq.norm(dim=-1), seq_q.norm(dim=-1))
    # <R_m q, R_n k> is the same for (m, n) = (3, 1), (20, 18), (39, 37)
    dots = [float(rq[m] @ rk[m - 2]) for m in (3, 20, 39)]
    assert dots == pytest.approx([dots[0]] * 3, abs=1e-4)
    # position 0 is the identity; offset shifts positions
    torch.testing.assert_close(rq[0], q)
    torch.testing.assert_close(rope(seq_q[:5], offset=3), rq[3:8])
