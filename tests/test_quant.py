"""Weight-only int8 quantisation: accuracy of Int8Linear, tied embeddings, sizes, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.quant import (
    Int8Embedding,
    Int8Linear,
    quantize_linear_int8,
    quantize_weight_int8,
    weight_bytes,
)


def test_quantize_weight_round_trip_error_is_at_most_half_a_step() -> None:
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    w[3] = 0.0  # an all-zero row gets scale 1 and stays exactly 0
    q, scale = quantize_weight_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (16,)
    assert int(q.abs().max()) <= 127
    err = (q.float() * scale[:, None] - w).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-7).all())
    assert bool((q[3] == 0).all()) and float(scale[3]) == 1.0
    # the largest entry of each row maps to ±127 exactly
    assert bool((q.abs().amax(dim=1)[torch.arange(16) != 3] == 127).all())


def test_int8_linear_output_close_to_float_linear() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    q = Int8Linear.from_linear(lin)
    x = torch.randn(5, 7, 64)
    y, yq = lin(x), q(x)
    assert yq.shape == y.shape
    rel = float((yq - y).detach().norm() / y.detach().norm())
    assert rel < 0.01, rel
    # exactly the float layer with the dequantised weight
    ref = torch.nn.functional.linear(x, q.dequantized_weight(), lin.bias)
    torch.testing.assert_close(yq, ref, rtol=1e-5, atol=1e-5)


def test_int8_linear_without_bias_and_state_dict() -> None:
    lin = nn.Linear(8, 4, bias=False)
    q = Int8Linear.from_linear(lin)
    assert q.bias is None and "bias" not in q.state_dict()
    assert set(q.state_dict()) == {"qweight", "scale"}
    assert "weight=int8" in repr(q)


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def test_quantized_gpt_keeps_the_tie_and_its_outputs() -> None:
    gpt = _tiny_gpt()
    q = quantize_linear_int8(gpt)
    assert isinstance(q.lm_head, Int8Linear) and isinstance(q.wte, Int8Embedding)
    assert q.wte.qweight is q.lm_head.qweight  # one int8 matrix, two roles
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    assert any(isinstance(m, nn.Linear) for m in gpt.modules())  # the original is untouched
    idx = torch.randint(0, 300, (3, 16))
    with torch.no_grad():
        logits, _ = gpt(idx)
        qlogits, _ = q(idx)
    assert float((qlogits - logits).abs().max()) < 0.05 * float(logits.abs().max())
    assert bool((qlogits.argmax(-1) == logits.argmax(-1)).float().mean() > 0.9)


def test_weight_bytes_counts_tied_storage_once_and_int8_is_about_a_quarter() -> None:
    gpt = _tiny_gpt()
    n = gpt.num_parameters()
    assert weight_bytes(gpt) == 4 * n  # tied weight once, float32
    q = quantize_linear_int8(gpt)
    ratio = weight_bytes(q) / weight_bytes(gpt)
    # matrices become 1 byte + a scale per row; LayerNorms, biases and wpe stay float32
    assert 0.25 < ratio < 0.40, ratio


def test_quantize_inplace_and_generation_still_works() -> None:
    from llmbook.generation.decoding import generate

    gpt = _tiny_gpt()
    out = quantize_linear_int8(gpt, inplace=True)
    assert out is gpt
    seqs = generate(gpt, torch.tensor([[2, 5, 7]]), 5, strategy="greedy")
    seqs_nocache = generate(gpt, torch.tensor([[2, 5, 7]]), 5, strategy="greedy", use_cache=False)
    assert seqs.shape == (1, 8) and torch.equal(seqs, seqs_nocache)


def test_error_messages() -> None:
    with pytest.raises(ValueError, match="2-D"):
        quantize_weight_int8(torch.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        quantize_weight_int8(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        quantize_weight_int8(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match="nn.Linear"):
        Int8Linear.from_linear(nn.Conv1d(2, 2, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="int8"):
        Int8Linear(torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="one scale per output"):
        Int8Linear(torch.zeros(2, 2, dtype=torch.int8), torch.ones(3))
    q = Int8Linear.from_linear(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="4 features"):
        q(torch.zeros(1, 5))
    with pytest.raises(TypeError, match="nn.Module"):
        quantize_linear_int8("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_linear_int8(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="Int8Linear"):
        Int8Embedding(nn.Linear(2, 2))  # type: ignore[arg-type]
