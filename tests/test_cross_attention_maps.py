"""Seq2SeqTransformer.cross_attention_maps: the decoder's cross-attention weights, per layer."""

from __future__ import annotations

import pytest
import torch

from llmbook.models.transformer import Seq2SeqTransformer, TransformerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dropout: float = 0.0) -> Seq2SeqTransformer:
    torch.manual_seed(3)
    cfg = TransformerConfig(
        src_vocab_size=13,
        tgt_vocab_size=11,
        d_model=16,
        n_heads=2,
        n_encoder_layers=2,
        n_decoder_layers=3,
        dropout=dropout,
        max_len=12,
    )
    return Seq2SeqTransformer(cfg)


def test_shape_rows_and_padding() -> None:
    model = _model().eval()
    src = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]])  # 0 = pad
    tgt = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 9]])
    maps = model.cross_attention_maps(src, tgt)
    assert maps.shape == (3, 2, 2, 4, 5)  # [layers, batch, heads, T, S]
    torch.testing.assert_close(maps.sum(-1), torch.ones(3, 2, 2, 4))
    assert torch.all(maps[:, 0, :, :, 3:] == 0)  # padded source positions get no weight
    assert torch.all(maps[:, 1] > 0)


def test_equals_the_weights_of_a_manual_pass() -> None:
    model = _model().eval()
    src = torch.tensor([[4, 5, 6, 7, 0]])
    tgt = torch.tensor([[2, 3, 4]])
    pad = src == 0
    memory = model.encode(src, pad)
    model.decode(tgt, memory, pad, need_weights=True)
    want = torch.stack([b.last_cross_attention for b in model.decoder])
    torch.testing.assert_close(model.cross_attention_maps(src, tgt), want)
    # the first layer by hand: its queries come from the decoder, keys from the memory
    block = model.decoder[0]
    x = model.tgt_pos(model.tgt_embed(tgt) * model.config.d_model**0.5)
    h = x + block.self_attn(block.norm1(x), is_causal=True)[0]
    _, w = block.cross_attn(
        block.norm2(h), memory, mask=(~pad)[:, None, None, :], need_weights=True
    )
    torch.testing.assert_close(want[0], w)


def test_eval_mode_inside_and_training_mode_restored() -> None:
    model = _model(dropout=0.5).train()
    src, tgt = torch.tensor([[4, 5, 6]]), torch.tensor([[2, 3]])
    a = model.cross_attention_maps(src, tgt)
    b = model.cross_attention_maps(src, tgt)
    torch.testing.assert_close(a, b)  # no dropout noise
    assert model.training
