"""Transformer blocks agree with torch.nn; the seq2seq and decoder-only models behave."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmbook.evaluation.lm import bits_per_char
from llmbook.models.attention import causal_mask
from llmbook.models.transformer import (
    DecoderBlock,
    EncoderBlock,
    Seq2SeqTransformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
)
from llmbook.text.tokenizers import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_block_equals_torch(norm_first: bool) -> None:
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    )
    mine = EncoderBlock(16, 4, 32, norm_first=norm_first).load_from_torch(ref)
    ref.train()  # keep torch on its reference (non-fused) path
    x = torch.randn(2, 7, 16, requires_grad=True)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[0, 5:] = True
    out_ref = ref(x, src_key_padding_mask=pad)
    out = mine(x, mask=(~pad)[:, None, None, :])
    torch.testing.assert_close(out, out_ref)
    out_ref_c = ref(x, src_mask=causal_mask(7).logical_not(), is_causal=True)
    out_c = mine(x, is_causal=True)
    torch.testing.assert_close(out_c, out_ref_c)
    (g1,) = torch.autograd.grad(out_c.sum(), x)
    (g2,) = torch.autograd.grad(out_ref_c.sum(), x)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_equals_torch(norm_first: bool) -> None:
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(
        16, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    )
    mine = DecoderBlock(16, 4, 32, norm_first=norm_first).load_from_torch(ref)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 6, 16)
    mem_pad = torch.zeros(2, 6, dtype=torch.bool)
    mem_pad[1, 4:] = True
    out_ref = ref(
        x,
        mem,
        tgt_mask=causal_mask(5).logical_not(),
        tgt_is_causal=True,
        memory_key_padding_mask=mem_pad,
    )
    out = mine(x, mem, memory_mask=(~mem_pad)[:, None, None, :])
    torch.testing.assert_close(out, out_ref)
    out_w = mine(x, mem, memory_mask=(~mem_pad)[:, None, None, :], need_weights=True)
    torch.testing.assert_close(out_w, out_ref)
    assert mine.last_cross_attention is not None
    assert torch.all(mine.last_cross_attention[1, :, :, 4:] == 0)


def _seq2seq(**kw) -> Seq2SeqTransformer:
    torch.manual_seed(2)
    cfg = TransformerConfig(
        src_vocab_size=13,
        tgt_vocab_size=11,
        d_model=16,
        n_heads=2,
        n_encoder_layers=2,
        n_decoder_layers=2,
        dropout=0.0,
        max_len=12,
        **kw,
    )
    return Seq2SeqTransformer(cfg).eval()


def test_seq2seq_shapes_padding_and_causality() -> None:
    model = _seq2seq()
    src = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]])
    tgt = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 9]])
    logits = model(src, tgt)
    assert logits.shape == (2, 4, 11)
    # more source padding changes nothing
    src_more = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(src_more, tgt), logits)
    # a target prefix does not see later target tokens
    tgt2 = tgt.clone()
    tgt2[:, 3] = 1
    torch.testing.assert_close(model(src, tgt2)[:, :3], logits[:, :3])
    # the decoder uses the source
    assert not torch.allclose(model(src.flip(1), tgt), logits)
    # encode + decode == forward
    memory = model.encode(src)
    torch.testing.assert_close(model.decode(tgt, memory, src == 0), logits)
    # padded target positions give finite numbers
    tgt_pad = torch.tensor([[2, 4, 0, 0], [2, 7, 8, 9]])
    assert torch.isfinite(model(src, tgt_pad)).all()


def test_seq2seq_learns_to_reverse_and_greedy_decodes() -> None:
    torch.manual_seed(3)
    model = _seq2seq()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    bos, eos = 2, 3
    losses = []
    for _ in range(150):
        src = torch.randint(4, 11, (32, 4))
        tgt = torch.cat([torch.full((32, 1), bos), src.flip(1), torch.full((32, 1), eos)], 1)
        logits = model(src, tgt[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 11), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    src = torch.tensor([[4, 5, 6, 7], [8, 9, 10, 4]])
    out = model.greedy_decode(src, bos, eos, max_new_tokens=6)
    assert out[:, :5].tolist() == [[7, 6, 5, 4, eos], [4, 10, 9, 8, eos]]


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rope"])
def test_lm_interface_and_causality(positional: str) -> None:
    torch.manual_seed(4)
    cfg = TransformerLMConfig(
        vocab_size=20, block_size=10, d_model=16, n_heads=2, n_layers=2, positional=positional
    )  # type: ignore[arg-type]
    lm = TransformerLM(cfg).eval()
    idx = torch.randint(0, 20, (3, 10))
    tgt = torch.randint(0, 20, (3, 10))
    logits, loss = lm(idx, tgt)
    assert logits.shape == (3, 10, 20) and loss is not None
    ref = nn.functional.cross_entropy(logits.reshape(-1, 20), tgt.reshape(-1))
    torch.testing.assert_close(loss, ref)
    idx2 = idx.clone()
    idx2[:, 6:] = (idx2[:, 6:] + 1) % 20
    torch.testing.assert_close(lm(idx2)[0][:, :6], logits[:, :6])
    # order matters (positions are used)
    assert not torch.allclose(lm(idx.flip(1))[0][:, -1], logits[:, 0])
    maps = lm.attention_maps(idx)
    assert maps.shape == (2, 3, 2, 10, 10)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 2, 10))
    # the attention-weight path gives the same logits as the fused path
    torch.testing.assert_close(lm(idx, need_weights=True)[0], logits)
    with pytest.raises(ValueError, match="exceeds block_size=10"):
        lm(torch.zeros(1, 11, dtype=torch.long))


def test_lm_bits_per_char_with_sliding_window() -> None:
    texts = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。"]
    tok = CharTokenizer.fit([t + "\n" for t in texts])
    torch.manual_seed(5)
    lm = TransformerLM(
        TransformerLMConfig(
            vocab_size=tok.vocab_size, block_size=32, d_model=16, n_heads=2, n_layers=1
        )
    )
    full = bits_per_char(lm, tok, texts)
    assert 0 < full < 10
    # with a window shorter than the poem the number changes (less context) but stays close
    lm.config.block_size = 8
    windowed = bits_per_char(lm, tok, texts)
    assert windowed == pytest.approx(full, rel=0.2)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerLMConfig(vocab_size=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="positional must be"):
        TransformerLMConfig(vocab_size=5, positional="alibi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="src_vocab_size must be a positive int"):
        TransformerConfig(src_vocab_size=0, tgt_vocab_size=5)
    model = _seq2seq()
    with pytest.raises(ValueError, match="max_len=12"):
        model(torch.ones(1, 13, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
