"""Position information for attention: sinusoidal, learned, and rotary (RoPE).

Self-attention by itself is blind to order: permuting the input tokens permutes the
outputs in the same way.  Three ways of telling it where each token stands:

* **sinusoidal** (the original Transformer): add a fixed vector
  :math:`PE_{(pos, 2i)} = \\sin(pos / 10000^{2i/d})`,
  :math:`PE_{(pos, 2i+1)} = \\cos(pos / 10000^{2i/d})` to each token embedding;
* **learned**: add a trainable vector per position (GPT-2), limited to the trained length;
* **RoPE** (rotary position embedding, used by LLaMA, Qwen, GLM …): rotate each pair of
  query/key coordinates :math:`(x_{2i}, x_{2i+1})` by the angle :math:`pos\\cdot\\theta_i`
  with :math:`\\theta_i = 10000^{-2i/d}`, so that the dot product of a query at
  position :math:`m` and a key at :math:`n` depends on the positions only through
  :math:`m - n`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
]


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The ``[max_len, d_model]`` table of sinusoidal position vectors (``d_model`` even)."""
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even for sin/cos pairs, got {d_model}")
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # [L, 1]
    i2 = torch.arange(0, d_model, 2, dtype=torch.float32)  # 2i = 0, 2, 4, ...
    angle = pos / base ** (i2 / d_model)  # [L, d/2]
    pe = torch.empty(max_len, d_model)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


def _check_length(t: int, max_len: int) -> None:
    if t > max_len:
        raise ValueError(
            f"sequence length {t} exceeds max_len={max_len} of the positional encoding; "
            "use shorter inputs or build the model with a larger max_len/block_size"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to ``x`` of shape ``[B, T, d_model]`` (no parameters)."""

    def __init__(self, d_model: int, max_len: int = 4096) -> None:
        super().__init__()
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_length(x.shape[1], self.max_len)
        pe: Tensor = self.pe  # type: ignore[assignment]
        return x + pe[: x.shape[1]].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trainable vector per position to ``x`` of shape ``[B, T, d_model]``."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        _check_length(x.shape[1], self.max_len)
        return x + self.weight[: x.shape[1]]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding for ``x`` of shape ``[..., T, head_dim]`` (``head_dim`` even).

    Coordinates ``(2i, 2i+1)`` at position ``pos`` are rotated by the angle
    ``(pos + offset) * base**(-2i/head_dim)``; the norm of every vector is unchanged.
    """

    def __init__(self, head_dim: int, max_len: int = 4096, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.max_len = max_len
        theta = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angle = torch.arange(max_len, dtype=torch.float32)[:, None] * theta  # [L, d/2]
        self.register_buffer("cos", torch.cos(angle), persistent=False)
        self.register_buffer("sin", torch.sin(angle), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.shape[-2]
        _check_length(T + offset, self.max_len)
        cos_t: Tensor = self.cos  # type: ignore[assignment]
        sin_t: Tensor = self.sin  # type: ignore[assignment]
        cos = cos_t[offset : offset + T].to(x.dtype)
        sin = sin_t[offset : offset + T].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # the two coordinates of each pair
        out = torch.empty_like(x)
        out[..., 0::2] = x1 * cos - x2 * sin  # 2-D rotation of (x1, x2) by the angle
        out[..., 1::2] = x1 * sin + x2 * cos
        return out
