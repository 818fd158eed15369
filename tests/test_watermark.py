"""The green-list watermark (8.9): lists, z-scores, generation and detection."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_gpt

from llmbook.generation import watermark as W


def test_green_mask_is_a_keyed_deterministic_share_of_the_vocabulary() -> None:
    m = W.green_mask(5, 100, gamma=0.25, key=1)
    assert m.dtype == torch.bool and int(m.sum()) == 25
    assert torch.equal(m, W.green_mask(5, 100, gamma=0.25, key=1))
    assert not torch.equal(m, W.green_mask(6, 100, gamma=0.25, key=1))
    assert not torch.equal(m, W.green_mask(5, 100, gamma=0.25, key=2))
    with pytest.raises(ValueError, match="gamma"):
        W.green_mask(5, 100, gamma=1.0)


def test_z_score_formula_and_errors() -> None:
    assert W.z_score(25, 100, 0.25) == 0.0
    assert W.z_score(50, 100, 0.25) == pytest.approx(25 / math.sqrt(100 * 0.25 * 0.75))
    with pytest.raises(ValueError, match="green"):
        W.z_score(101, 100)
    with pytest.raises(ValueError, match="two tokens"):
        W.count_green([3], 100)


def test_count_green_counts_each_token_against_its_predecessor() -> None:
    ids = [3, 7, 7, 1, 20]
    want = sum(bool(W.green_mask(a, 30, 0.5, 9)[b]) for a, b in zip(ids, ids[1:]))
    assert W.count_green(ids, 30, 0.5, 9) == (want, 4)


def test_watermarked_text_is_detected_and_plain_text_is_not() -> None:
    model = tiny_gpt(scale=0.5, block_size=64, vocab_size=40)
    strong = W.generate_watermarked(model, [0], 60, num_samples=2, delta=50.0, key=3, seed=0)
    for row in strong:  # with a huge delta every token is green
        g, n = W.count_green([0, *row], 40, 0.25, 3)
        assert g == n == 60
        assert W.detect([0, *row], 40, 0.25, 3) == pytest.approx(math.sqrt(60 * 0.75 / 0.25))
    plain = W.generate_watermarked(model, [0], 60, num_samples=4, delta=0.0, key=3, seed=0)
    assert all(abs(W.detect([0, *row], 40, 0.25, 3)) < 4 for row in plain)
    assert W.detect([0, *plain[0]], 40, 0.25, key=3) != W.detect([0, *strong[0]], 40, 0.25, 3)
    stopped = W.generate_watermarked(model, [0], 60, delta=50.0, key=3, stop_id=strong[0][0])
    assert stopped == [[strong[0][0]]]
    with pytest.raises(ValueError, match="prompt"):
        W.generate_watermarked(model, [], 5)
