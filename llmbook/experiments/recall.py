"""A synthetic long-range *recall* task: remember one symbol across ``distance`` steps.

Each episode is ``key, noise_1, …, noise_d, QUERY`` and the correct continuation after
``QUERY`` is ``key``.  Keys and noise come from disjoint alphabets, so the only
difficulty is *distance*: a recurrent network must carry the key through ``d`` updates of
its fixed-size state (and learn to do so through ``d`` steps of backpropagation), while
self-attention can look from the query straight back at the key.

Any language model of the book can be trained on it with :func:`train_recall` and
measured on fresh episodes with :func:`recall_accuracy`.

Token ids: 0–3 are reserved (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``, as in every
tokenizer of the book), then ``n_keys`` key symbols, ``n_noise`` noise symbols and the
``QUERY`` symbol; :func:`recall_vocab_size` gives the total.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "recall_vocab_size",
    "query_id",
    "recall_episodes",
    "train_recall",
    "recall_accuracy",
]

_FIRST = 4  # ids 0..3 are the special tokens of the book's tokenizers


def recall_vocab_size(n_keys: int = 8, n_noise: int = 8) -> int:
    """Vocabulary size of the task: 4 special ids + keys + noise + ``QUERY``."""
    return _FIRST + n_keys + n_noise + 1


def query_id(n_keys: int = 8, n_noise: int = 8) -> int:
    """Id of the ``QUERY`` symbol."""
    return _FIRST + n_keys + n_noise


def recall_episodes(
    n: int, distance: int, n_keys: int = 8, n_noise: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` episodes as an ``[n, distance + 2]`` id array, and their ``[n]`` answers.

    Row ``i`` is ``key, noise × distance, QUERY``; ``answers[i]`` is the key.
    """
    if distance < 0 or n < 1 or n_keys < 2 or n_noise < 1:
        raise ValueError(
            f"need n >= 1, distance >= 0, n_keys >= 2, n_noise >= 1; got n={n}, "
            f"distance={distance}, n_keys={n_keys}, n_noise={n_noise}"
        )
    rng = np.random.default_rng(seed)
    keys = rng.integers(_FIRST, _FIRST + n_keys, size=n)
    noise = rng.integers(_FIRST + n_keys, _FIRST + n_keys + n_noise, size=(n, distance))
    query = np.full((n, 1), query_id(n_keys, n_noise))
    episodes = np.concatenate([keys[:, None], noise, query], axis=1)
    return episodes.astype(np.int64), keys.astype(np.int64)


def train_recall(
    model: nn.Module,
    distance: int,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-2,
    grad_clip: float = 1.0,
    n_keys: int = 8,
    n_noise: int = 8,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` to answer recall episodes; returns the loss of every step.

    This is a classification of whole, aligned episodes (one scored position each), not
    language modelling on a token stream, so it does not go through
    :func:`llmbook.training.trainer.train` (whose random windows would cut episodes apart); it
    reuses the trainer's optimizer set-up (:func:`llmbook.training.trainer.make_optimizer`, Adam
    without weight decay) and the shared update with gradient clipping
    (:func:`llmbook.optim.optimizer_step`), at a constant learning rate.  Every step draws ``batch_size``
    fresh episodes; the loss is the cross-entropy of the prediction after ``QUERY``.
    """
    from llmbook.optim import optimizer_step
    from llmbook.training.trainer import TrainConfig, make_optimizer

    device = next(model.parameters()).device
    cfg = TrainConfig(lr=lr, weight_decay=0.0, optimizer="adam", grad_clip=grad_clip)
    opt = make_optimizer(model, cfg, device)
    episodes, keys = recall_episodes(steps * batch_size, distance, n_keys, n_noise, seed)
    x_all = torch.as_tensor(episodes, device=device)
    y_all = torch.as_tensor(keys, device=device)
    model.train()
    losses = []
    for s in range(steps):
        x = x_all[s * batch_size : (s + 1) * batch_size]
        y = y_all[s * batch_size : (s + 1) * batch_size]
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = F.cross_entropy(logits[:, -1], y)
        optimizer_step(model, opt, loss, clip=grad_clip)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def recall_accuracy(
    model: nn.Module,
    distance: int,
    n: int = 512,
    n_keys: int = 8,
    n_noise: int = 8,
    seed: int = 12345,
) -> float:
    """Fraction of ``n`` fresh episodes whose key the model predicts after ``QUERY``.

    Each episode is fed alone (``key noise… QUERY``) and the arg-max prediction at the
    last position is compared with the key; chance level is ``1 / n_keys``.
    """
    episodes, keys = recall_episodes(n, distance, n_keys, n_noise, seed)
    was_training = model.training
    model.eval()
    try:
        out = model(torch.as_tensor(episodes, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
    logits = out[0] if isinstance(out, tuple) else out
    pred = logits[:, -1].argmax(-1).cpu().numpy()
    return float((pred == keys).mean())
