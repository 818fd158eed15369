"""Long context (8.9): extending RoPE, position interpolation, sliding windows, KV bytes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt

from llmbook.evaluation import long_context as lc
from llmbook.models.kv_cache import KVCache
from llmbook.models.modern import rope_tables


def _rope(**kw):
    return tiny_gpt(pos="rope", norm="rmsnorm", **kw)


def test_learned_positions_refuse_long_inputs_with_a_clear_error() -> None:
    model = tiny_gpt()  # learned positions, block_size 16
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="sliding window"):
        lc.extend_context(model, 32)


def test_extended_rope_model_matches_the_original_inside_the_trained_length() -> None:
    model = _rope(scale=3.0)
    ext = lc.extend_context(model, 64)
    assert ext.config.block_size == 64 and model.config.block_size == 16
    x = torch.randint(0, 24, (2, 16))
    torch.testing.assert_close(ext(x)[0], model(x)[0])
    assert ext(torch.randint(0, 24, (1, 64)))[0].shape == (1, 64, 24)
    with pytest.raises(ValueError, match="new_len"):
        lc.extend_context(model, 8)


def test_position_interpolation_scales_the_angles() -> None:
    cos, sin = rope_tables(8, 32)
    cos_h, sin_h = rope_tables(8, 64, scale=0.5)
    torch.testing.assert_close(cos_h[0::2], cos)  # position 2m is rotated like m
    torch.testing.assert_close(sin_h[0::2], sin)
    ext = lc.extend_context(_rope(), 64, interpolate=True)
    torch.testing.assert_close(ext.rope_cos, rope_tables(8, 64, scale=16 / 64)[0])
    with pytest.raises(ValueError, match="scale"):
        rope_tables(8, 16, scale=2.0)


def test_nll_by_position_averages_to_the_model_loss() -> None:
    model = tiny_gpt(scale=2.0)
    seqs = torch.randint(0, 24, (5, 17))
    by_pos = lc.nll_by_position(model, seqs, batch_size=2)
    assert by_pos.shape == (16,)
    with torch.no_grad():
        loss = model(seqs[:, :-1], seqs[:, 1:])[1]
    assert float(by_pos.mean()) == pytest.approx(float(loss), rel=1e-5)


def test_sliding_window_predicts_each_token_from_the_last_window_tokens() -> None:
    model = tiny_gpt(scale=2.0, block_size=8)
    seqs = torch.randint(0, 24, (3, 21))
    slide = lc.sliding_nll_by_position(model, seqs, window=8, stride=3)
    assert slide.shape == (20,)
    torch.testing.assert_close(slide[:8], lc.nll_by_position(model, seqs[:, :9]))
    for t in (8, 13, 19):  # find the window that scored position t and recompute it
        end = 8
        while end + 3 <= t:
            end += 3
        new = min(3, 20 - end)
        start = end + new - 8
        with torch.no_grad():
            logits = model(seqs[:, start : end + new])[0][:, t - start]
        want = F.cross_entropy(logits, seqs[:, t + 1])
        assert float(slide[t]) == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match="stride"):
        lc.sliding_nll_by_position(model, seqs, window=8, stride=8)


def test_long_sequences_are_windows_of_the_encoded_corpus() -> None:
    from llmbook.data.lmdata import encode_corpus
    from llmbook.text.tokenizers import CharTokenizer

    texts = ["床前明月光，疑是地上霜。", "白日依山尽，黄河入海流。"] * 10
    tok = CharTokenizer.fit([t + "\n" for t in texts])
    seqs = lc.long_sequences(texts, tok, 30, 4, seed=1)
    assert seqs.shape == (4, 31)
    stream = encode_corpus(texts, tok).tolist()
    for row in seqs.tolist():
        assert any(stream[i : i + 31] == row for i in range(len(stream) - 30))
    with pytest.raises(ValueError, match="fewer than one window"):
        lc.long_sequences(texts[:1], tok, 100, 1)


def test_kv_cache_bytes_per_token_matches_the_cache() -> None:
    model = tiny_gpt(n_head=4, n_kv_head=2, n_embd=32)
    cache = KVCache(model.config, batch_size=1, max_len=10)
    per_token = lc.kv_cache_bytes_per_token(1, 2, 8, bytes_per_value=4)
    assert cache.nbytes == 10 * per_token
    # Llama 3 8B: 32 layers, 8 key/value heads of size 128, bf16 -> 128 KiB per token
    assert lc.kv_cache_bytes_per_token(32, 8, 128) == 128 * 1024
    with pytest.raises(ValueError, match="n_kv_head"):
        lc.kv_cache_bytes_per_token(32, 0, 128)
