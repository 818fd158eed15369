r"""The pieces that turn the GPT-2 block into a modern (Llama/Qwen-style) block.

:mod:`llmbook.models.gpt` switches each of them on through :class:`~llmbook.models.gpt.
GPTConfig`; here they are small layers with explicit arguments, one idea each:

* :class:`RMSNorm` (Zhang & Sennrich, 2019): LayerNorm without the mean and the bias,
  :math:`y = g \odot x / \sqrt{\tfrac1C\sum_j x_j^2 + \varepsilon}`;
* :class:`SwiGLU` (Shazeer, 2020): a gated feed-forward network,
  :math:`W_2\,(\mathrm{SiLU}(W_g x) \odot W_1 x)`, whose hidden size
  :func:`swiglu_hidden` is :math:`\tfrac{8}{3}C` so that its three matrices hold as many
  parameters as GPT-2's two matrices of width :math:`4C`;
* rotary position embedding (RoPE, Su et al., 2021): :func:`rope_tables` and
  :func:`apply_rope`;
* :class:`MoE`: a mixture of experts with top-:math:`k` routing and the load-balancing
  loss of the Switch Transformer (Fedus et al., 2022).

**The RoPE convention.**  RoPE rotates pairs of coordinates of every query and key: pair
:math:`i` (:math:`0\le i<D/2`) at position :math:`m` is rotated by the angle
:math:`m\,\theta_i`, :math:`\theta_i = b^{-2i/D}` (base :math:`b` = ``rope_theta``).  Which
coordinates form a pair is a convention.  Here pair :math:`i` is
:math:`(x_i, x_{i+D/2})` — the first half of the head against the second half, computed
with :func:`rotate_half` — as in GPT-NeoX and Hugging Face's Llama, Qwen and Mixtral, so
that weights convert to those models one to one.  The original paper (and
:class:`llmbook.models.positional.RotaryEmbedding` of chapter 3) pairs neighbours
:math:`(x_{2i}, x_{2i+1})`.  The two are the same rotation on permuted coordinates: a
model that uses one convention equals a model that uses the other after the rows of
:math:`W_Q` and :math:`W_K` inside every head are permuted by
``[0, 2, 4, …, 1, 3, 5, …]`` (a test checks it), because :math:`q\cdot k` does not change
when both vectors are permuted alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "RMSNorm",
    "SwiGLU",
    "swiglu_hidden",
    "rope_tables",
    "rotate_half",
    "apply_rope",
    "MoE",
    "load_balancing_loss",
]


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, with a gain ``weight``.

    Computed in float32 and cast back before the gain, as in Llama (so that bfloat16
    activations do not lose the small differences the normalisation divides).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps:g}"


def swiglu_hidden(n_embd: int, multiple_of: int = 8) -> int:
    """The SwiGLU hidden size: :math:`8C/3`, rounded up to a multiple of ``multiple_of``.

    Three matrices of :math:`C\\times\\frac{8}{3}C` hold the :math:`8C^2` parameters of
    GPT-2's two :math:`C\\times 4C` matrices.  (Llama rounds to a multiple of 256, which
    only pays on large GPUs.)
    """
    return multiple_of * -(-8 * n_embd // (3 * multiple_of))


class SwiGLU(nn.Module):
    """Gated feed-forward network: ``c_proj(silu(c_gate(x)) * c_fc(x))``."""

    def __init__(self, n_embd: int, hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.c_gate = nn.Linear(n_embd, hidden, bias=bias)  # the gate W_g
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)  # the value W_1 ("up")
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # back to C, W_2 ("down")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x)))


# ---------------------------------------------------------------------------- RoPE
def rope_tables(
    head_dim: int, max_len: int, theta: float = 10000.0, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of the RoPE angles, each ``[max_len, head_dim]``.

    Column ``j`` belongs to pair ``j mod D/2``: both halves of a row hold the same
    ``D/2`` angles :math:`m\\,\\theta_i`.  ``scale < 1`` rotates position ``m`` as if it
    were ``m · scale`` (position interpolation: ``scale = L_train / max_len``).
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head size, got {head_dim}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    position = torch.arange(max_len, dtype=torch.float32) * scale
    angle = position[:, None] * inv_freq[None, :]  # [L, D/2]
    angle = torch.cat([angle, angle], dim=-1)  # [L, D]
    return angle.cos(), angle.sin()


def rotate_half(x: Tensor) -> Tensor:
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate every pair ``(x_i, x_{i+D/2})`` of ``x`` ``[B, H, T, D]`` by its angle.

    ``cos``/``sin`` are the rows ``[T, D]`` of :func:`rope_tables` for the positions of
    ``x``.  Per pair this is the 2-D rotation
    ``(a, b) -> (a cos - b sin, a sin + b cos)``.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


# ---------------------------------------------------------------------------- MoE
def load_balancing_loss(probs: Tensor, chosen: Tensor, n_experts: int) -> Tensor:
    r"""Switch-Transformer load-balancing loss of one layer's router.

    .. math:: L_\text{aux} = E \sum_{i=1}^{E} f_i\, P_i

    with :math:`f_i` the fraction of tokens that chose expert :math:`i` among their top
    :math:`k` (so :math:`\sum_i f_i = k`), and :math:`P_i` the router probability of
    expert :math:`i` averaged over the tokens.  :math:`f` counts and has no gradient; the
    gradient flows through :math:`P`, lowering the probability of overloaded experts.
    Perfectly balanced routing gives :math:`k`; everything sent to one expert gives up to
    :math:`kE`.  This is the value of ``transformers``' ``load_balancing_loss_func`` for
    one layer (Mixtral, Qwen-MoE).  ``probs`` ``[N, E]``, ``chosen`` ``[N, k]``.
    """
    counts = F.one_hot(chosen, n_experts).sum(dim=(0, 1)).float()  # [E]
    frac = counts / chosen.size(0)
    return n_experts * (frac * probs.float().mean(dim=0)).sum()


class MoE(nn.Module):
    """Mixture of experts: a router picks ``top_k`` experts per token and mixes them.

    For each token :math:`x` the router gives probabilities
    :math:`p = \\mathrm{softmax}(W_r x)` over ``n_experts`` experts; the ``top_k`` largest
    are kept (renormalised to sum to 1 when ``norm_topk``) and the output is
    :math:`\\sum_{e\\in\\text{top-}k} p_e\\,\\mathrm{expert}_e(x)`, plus
    ``shared(x)`` when there is a shared expert that every token uses (DeepSeekMoE).
    Each expert is built by ``make_expert()`` (a GELU MLP or a SwiGLU).  After every
    forward :attr:`aux_loss` holds this layer's :func:`load_balancing_loss`.
    """

    def __init__(
        self,
        n_embd: int,
        n_experts: int,
        top_k: int,
        make_expert: Callable[[], nn.Module],
        shared: nn.Module | None = None,
        norm_topk: bool = True,
    ) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.top_k = top_k
        self.norm_topk = norm_topk
        self.router = nn.Linear(n_embd, n_experts, bias=False)
        self.experts = nn.ModuleList(make_expert() for _ in range(n_experts))
        self.shared = shared
        self.aux_loss: Tensor | None = None

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(probs [N, E], weights [N, k], chosen [N, k])`` for the tokens ``x`` ``[N, C]``."""
        probs = self.router(x).float().softmax(dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)
        if self.norm_topk:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return probs, weights.to(x.dtype), chosen

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        flat = x.reshape(B * T, C)
        probs, weights, chosen = self.route(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            # the tokens that chose expert e, and in which of their k slots
            token, slot = torch.where(chosen == e)
            # an expert no token chose still runs (on zero rows), so that every parameter
            # takes part in the backward pass, as DistributedDataParallel requires
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        self.aux_loss = load_balancing_loss(probs, chosen, self.n_experts)
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.view(B, T, C)

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, top_k={self.top_k}, norm_topk={self.norm_topk}"
