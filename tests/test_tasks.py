"""The synthetic recall task: episode format, training, accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmbook.experiments.recall import (
    query_id,
    recall_accuracy,
    recall_episodes,
    recall_vocab_size,
    train_recall,
)
from llmbook.models import TransformerLM, TransformerLMConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_episode_format() -> None:
    ep, keys = recall_episodes(50, 6, n_keys=4, n_noise=3, seed=1)
    assert ep.shape == (50, 8) and keys.shape == (50,)
    assert np.all(ep[:, 0] == keys)
    assert np.all((4 <= keys) & (keys < 8))
    assert np.all((8 <= ep[:, 1:-1]) & (ep[:, 1:-1] < 11))  # noise never looks like a key
    assert np.all(ep[:, -1] == query_id(4, 3)) and recall_vocab_size(4, 3) == 12
    again, _ = recall_episodes(50, 6, n_keys=4, n_noise=3, seed=1)
    assert np.array_equal(ep, again)


def test_attention_learns_recall_and_untrained_is_near_chance() -> None:
    torch.manual_seed(0)
    d = 12
    model = TransformerLM(
        TransformerLMConfig(
            vocab_size=recall_vocab_size(), block_size=d + 2, d_model=32, n_heads=2, n_layers=1
        )
    )
    assert recall_accuracy(model, d, n=256) < 0.4
    losses = train_recall(model, d, steps=120, lr=3e-3)
    assert len(losses) == 120 and losses[-1] < 0.2 * losses[0]
    assert recall_accuracy(model, d, n=256) > 0.95


def test_errors() -> None:
    with pytest.raises(ValueError, match="distance >= 0"):
        recall_episodes(10, -1)
