"""Scaled dot-product attention from its formula, masks, and multi-head attention.

.. math::

    \\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\!\\left(\\frac{QK^\\top}{\\sqrt{d_k}} + M\\right) V

where the mask :math:`M` is 0 where a query may look and :math:`-\\infty` where it may not
(padding positions, or the future in a causal language model).  Multi-head attention
projects the input into :math:`h` smaller query/key/value spaces, attends in each, and
mixes the heads with an output matrix :math:`W^O`:

.. math::

    \\mathrm{MultiHead}(X_q, X_{kv}) = \\mathrm{Concat}(\\mathrm{head}_1, \\dots, \\mathrm{head}_h) W^O,
    \\quad \\mathrm{head}_i = \\mathrm{Attention}(X_q W_i^Q, X_{kv} W_i^K, X_{kv} W_i^V)

Masks in this module are **boolean, True = may attend**, the convention of
``torch.nn.functional.scaled_dot_product_attention``; :func:`padding_mask` builds one
from token ids.  :func:`attention` is the readable reference; :class:`MultiHeadAttention`
uses the fused SDPA kernel unless attention weights are requested.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.models.positional import RotaryEmbedding

__all__ = ["attention", "causal_mask", "padding_mask", "MultiHeadAttention"]


def causal_mask(
    t_q: int, t_k: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Boolean ``[t_q, t_k]`` mask, True where query ``i`` may see key ``j`` (``j <= i``).

    With ``t_k > t_q`` the queries are the *last* ``t_q`` positions (as when decoding
    with a cache), so query ``i`` sees keys ``j <= i + t_k - t_q``.
    """
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def padding_mask(ids: Tensor, pad_id: int = 0) -> Tensor:
    """Boolean ``[B, 1, 1, T]`` mask from token ids ``[B, T]``: True at real tokens.

    It broadcasts over heads and query positions, so that no query attends to padding.
    """
    if ids.dim() != 2:
        raise ValueError(f"ids must have shape [batch, time], got {tuple(ids.shape)}")
    return (ids != pad_id)[:, None, None, :]


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """:math:`\\mathrm{softmax}(QK^\\top/\\sqrt{d_k} + M)V`, written out; returns ``(output, weights)``.

    ``q``: ``[..., T_q, d_k]``, ``k``: ``[..., T_k, d_k]``, ``v``: ``[..., T_k, d_v]``;
    ``mask``: boolean, broadcastable to ``[..., T_q, T_k]``, True = may attend;
    ``is_causal`` adds :func:`causal_mask`.  ``weights`` is ``[..., T_q, T_k]``, each row a
    probability distribution over the keys.  A query row whose keys are all masked gets
    ``nan`` weights, as in PyTorch: give every query at least one visible key.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys must have the same last dimension d_k, got {q.shape[-1]} "
            f"and {k.shape[-1]}"
        )
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # [..., T_q, T_k]
    if is_causal:
        scores = scores.masked_fill(
            ~causal_mask(q.shape[-2], k.shape[-2], device=q.device), float("-inf")
        )
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got {mask.dtype}; "
                "build one with padding_mask() or causal_mask()"
            )
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention :math:`\\mathrm{Concat}(\\mathrm{head}_1..\\mathrm{head}_h)W^O`.

    ``forward(x_q, x_kv=None, mask=None, is_causal=False, need_weights=False)``: self-
    attention when ``x_kv`` is omitted, cross-attention (queries from the decoder, keys
    and values from the encoder) otherwise.  Inputs are ``[B, T, d_model]``.  With
    ``need_weights=True`` (or ``fast=False``) the module runs :func:`attention` and returns
    the weights ``[B, h, T_q, T_k]``; otherwise it calls the fused
    ``F.scaled_dot_product_attention`` and returns ``None`` for the weights.  With
    ``rope=True`` queries and keys are rotated by :class:`RotaryEmbedding` (self-attention).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        fast: bool = True,
        rope: bool = False,
        max_len: int = 4096,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; choose n_heads "
                "that divides d_model (each head gets d_model // n_heads dimensions)"
            )
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout, self.fast = dropout, fast
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W^Q for all heads side by side
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W^K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W^V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.rotary = RotaryEmbedding(self.d_head, max_len) if rope else None

    def _split(self, x: Tensor) -> Tensor:  # [B, T, d_model] -> [B, h, T, d_head]
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(
        self,
        x_q: Tensor,
        x_kv: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns ``(output [B, T_q, d_model], weights [B, h, T_q, T_k] or None)``."""
        if x_q.dim() != 3 or x_q.shape[-1] != self.d_model:
            raise ValueError(
                f"x_q must have shape [batch, time, {self.d_model}], got {tuple(x_q.shape)}"
            )
        x_kv = x_q if x_kv is None else x_kv
        q, k, v = (
            self._split(self.q_proj(x_q)),
            self._split(self.k_proj(x_kv)),
            self._split(self.v_proj(x_kv)),
        )
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        p = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if need_weights or not self.fast:
            out, weights = attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=p)
        elif mask is not None and is_causal:
            full = mask & causal_mask(q.shape[-2], k.shape[-2], device=q.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=full, dropout_p=p)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal
            )
        B, _, T, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T, self.d_model)  # Concat(head_1..head_h)
        return self.out_proj(out), weights

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (same sizes) into this module."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError(
                f"size mismatch: torch module has embed_dim={mha.embed_dim}, "
                f"num_heads={mha.num_heads}; this one d_model={self.d_model}, n_heads={self.n_heads}"
            )
        if mha.in_proj_weight is None:
            raise ValueError("copying needs nn.MultiheadAttention with kdim == vdim == embed_dim")
        wq, wk, wv = mha.in_proj_weight.chunk(3)
        for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
            lin.weight.copy_(w)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None and self.q_proj.bias is not None:
            bq, bk, bv = mha.in_proj_bias.chunk(3)
            for lin, b in ((self.q_proj, bq), (self.k_proj, bk), (self.v_proj, bv)):
                assert lin.bias is not None
                lin.bias.copy_(b)
            assert self.out_proj.bias is not None
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self
