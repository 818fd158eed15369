"""A GPT-2-style decoder-only language model in one readable file, with modern switches.

The model follows GPT-2 (Radford et al., 2019) with the simplifications of nanoGPT:

* token embedding + learned absolute position embedding;
* ``n_layer`` *pre-norm* blocks: ``x = x + Attn(LN(x))`` then ``x = x + MLP(LN(x))``;
* a final LayerNorm and a language-model head whose weight is **tied** to the token
  embedding (the same matrix maps ids to vectors and vectors back to logits);
* causal self-attention computed by PyTorch's fused
  :func:`torch.nn.functional.scaled_dot_product_attention` (SDPA: flash/memory-efficient
  kernels on GPUs, a fused kernel on CPUs);
* a **KV cache** for generation: the keys and values of tokens already seen are kept, so
  each new token costs one position's worth of compute instead of the whole sequence.

:class:`GPTConfig` switches on, one at a time, what later open models (Llama, Qwen,
Mistral, DeepSeek) changed (layers in :mod:`llmbook.models.modern`): ``pos="rope"``
rotary positions instead of ``wpe``; ``norm="rmsnorm"``; ``mlp="swiglu"``; ``n_kv_head``
for grouped-query attention (GQA, 1: multi-query), where ``n_head // n_kv_head`` query
heads share a key/value head and the KV cache shrinks by that factor; ``qk_norm`` (RMSNorm
on each query and key head, Qwen3); ``n_experts > 0`` for a mixture of experts with a
load-balancing loss.  :meth:`GPTConfig.llama` turns the modern set on.  The defaults are
GPT-2: checkpoints saved before the switches existed load and give the same logits.

Shapes: ``B`` batch, ``T`` time (tokens), ``C = n_embd`` channels, ``H = n_head`` heads,
``H_kv = n_kv_head`` key/value heads, ``D = C / H`` head size, ``V = vocab_size``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.models.kv_cache import KVCache
from llmbook.models.modern import MoE, RMSNorm, SwiGLU, apply_rope, rope_tables, swiglu_hidden

__all__ = ["GPTConfig", "GPT", "KVCache", "Block", "CausalSelfAttention", "MLP"]

POSITIONS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


@dataclass
class GPTConfig:
    """Hyper-parameters of :class:`GPT` (also saved with every checkpoint)."""

    vocab_size: int = 8192
    block_size: int = 128  #: longest context the model can attend to
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = True  #: biases in Linear layers and LayerNorms, as in GPT-2
    tie_weights: bool = True  #: share the token embedding with the output layer
    # --- the modern switches (defaults: GPT-2) ---------------------------------------
    pos: str = "learned"  #: "learned" (GPT-2's wpe) or "rope" (rotary, no wpe)
    rope_theta: float = 10000.0  #: RoPE base b: pair i turns by b^(-2i/D) per position
    norm: str = "layernorm"  #: "layernorm" or "rmsnorm"
    norm_eps: float = 1e-5  #: ε of every LayerNorm/RMSNorm (also of qk_norm)
    mlp: str = "gelu"  #: "gelu" (GPT-2) or "swiglu" (gated, Llama)
    #: MLP hidden size; None: 4·C for GELU, 8C/3 rounded up to a multiple of 8 for SwiGLU
    mlp_hidden: int | None = None
    n_kv_head: int | None = None  #: key/value heads; None or n_head: MHA, 1: MQA, else GQA
    qk_norm: bool = False  #: RMSNorm on each query and key head (Qwen3)
    n_experts: int = 0  #: experts per MoE layer; 0: a dense MLP in every block
    moe_top_k: int = 2  #: experts each token is routed to
    moe_aux_coef: float = 0.01  #: weight of the load-balancing loss in the training loss
    moe_shared_expert: bool = False  #: one more expert that every token uses (DeepSeekMoE)
    moe_hidden: int | None = None  #: hidden size of each expert; None: as the dense MLP
    moe_norm_topk: bool = True  #: renormalise the top-k router weights to sum to 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check_int(name, getattr(self, name), 1)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                "every head gets n_embd // n_head channels"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        for name, choices in (("pos", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"GPTConfig.{name} must be one of {choices}, got {getattr(self, name)!r}"
                )
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(
                f"pos='rope' needs an even head size n_embd // n_head, not {self.head_dim}"
            )
        if not self.rope_theta > 0 or not self.norm_eps > 0:
            raise ValueError("GPTConfig.rope_theta and norm_eps must be > 0")
        for name in ("mlp_hidden", "moe_hidden", "n_kv_head"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"GPTConfig.n_head ({self.n_head}) must be divisible by n_kv_head "
                f"({self.n_kv_head}): each key/value head serves n_head // n_kv_head query heads"
            )
        _check_int("n_experts", self.n_experts, 0)
        _check_int("moe_top_k", self.moe_top_k, 1)
        if self.n_experts and self.moe_top_k > self.n_experts:
            raise ValueError(
                f"GPTConfig.moe_top_k ({self.moe_top_k}) must not exceed n_experts "
                f"({self.n_experts}): a token cannot use more experts than there are"
            )
        if self.moe_shared_expert and not self.n_experts:
            raise ValueError("moe_shared_expert=True needs n_experts > 0 (a mixture of experts)")
        if not self.moe_aux_coef >= 0:
            raise ValueError(f"GPTConfig.moe_aux_coef must be >= 0, got {self.moe_aux_coef!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads (``n_head`` when ``n_kv_head`` is None)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ffn_hidden(self) -> int:
        """Hidden size of the dense MLP (see :attr:`mlp_hidden`)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 4 * self.n_embd if self.mlp == "gelu" else swiglu_hidden(self.n_embd)

    @classmethod
    def llama(cls, **overrides: Any) -> GPTConfig:
        """The modern set: RoPE, RMSNorm, SwiGLU, GQA and no biases (Touvron et al., 2023).

        ``n_kv_head`` defaults to ``n_head // 2`` (two query heads per key/value head;
        Llama 3 uses four at 32 heads), or ``n_head`` if that is odd.  The embeddings stay
        **tied**: at the book's sizes the ``V × C`` matrix is a large share of all
        parameters, and the small Llama 3.2 (1B, 3B) and Qwen2.5 models tie them too.
        Keyword arguments override any field (e.g. ``qk_norm=True, n_experts=4``).
        """
        n_head = overrides.get("n_head", cls.n_head)
        kv = n_head // 2 if n_head % 2 == 0 else n_head
        base = dict(pos="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=kv)
        return cls(**(base | overrides))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build a config from a dict, naming unknown keys (missing ones get defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**d)


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        kind = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"GPTConfig.{name} must be {kind}, got {value!r}")


class CausalSelfAttention(nn.Module):
    """Causal self-attention: one fused QKV projection, SDPA, output projection.

    ``c_attn`` maps ``C`` to ``H·D`` query and ``2·H_kv·D`` key/value channels; with
    ``H_kv < H`` (GQA) query head ``h`` reads key/value head ``h // (H / H_kv)``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        kv = self.n_kv_head * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.q_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config.norm_eps) if config.qk_norm else None

    def forward(
        self,
        x: Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        weights: list[Tensor] | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Attend ``x`` ``[B, T, C]`` (after the tokens in ``cache``); returns ``[B, T, C]``.

        ``rope`` holds the ``cos, sin`` rows ``[T, D]`` of this chunk's positions.  With a
        list ``weights`` the attention weights ``[B, H, T, past + T]`` are computed
        explicitly, ``softmax(Q K^T / sqrt(D) + M)`` with the causal mask ``M``, and appended to
        it; the fused kernel computes the same function but does not return them.
        """
        B, T, C = x.shape
        H, H_kv, D = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.c_attn(x).split([H * D, H_kv * D, H_kv * D], dim=2)
        # [B, T, H·D] -> [B, H, T, D]: each head attends independently
        q, k, v = q.view(B, T, H, D), k.view(B, T, H_kv, D), v.view(B, T, H_kv, D)
        if self.q_norm is not None and self.k_norm is not None:  # QK-norm, per head
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if rope is not None:  # rotate queries and keys by their positions
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)  # now [B, H_kv, past + T, D]
        dropout_p = self.dropout if self.training else 0.0
        # GQA: SDPA lets every key/value head serve H / H_kv query heads
        sdpa = partial(F.scaled_dot_product_attention, dropout_p=dropout_p, enable_gqa=H_kv != H)
        if weights is not None:  # the same attention, spelled out, to keep its weights
            k, v = k.repeat_interleave(H // H_kv, 1), v.repeat_interleave(H // H_kv, 1)
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # [B, H, T, past + T]
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            weights.append(att)
            y = F.dropout(att, dropout_p) @ v
        elif past == 0:
            y = sdpa(q, k, v, is_causal=True)
        elif T == 1:  # one new token attends to everything before it: no mask needed
            y = sdpa(q, k, v)
        else:  # a chunk after a prefix: query i may see keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = sdpa(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: ``C -> 4C -> GELU -> C`` (``hidden`` = 4C)."""

    def __init__(self, config: GPTConfig, hidden: int | None = None) -> None:
        super().__init__()
        hidden = config.ffn_hidden if hidden is None else hidden
        self.c_fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


def _norm(c: GPTConfig) -> nn.Module:
    if c.norm == "rmsnorm":
        return RMSNorm(c.n_embd, c.norm_eps)
    return nn.LayerNorm(c.n_embd, eps=c.norm_eps, bias=c.bias)


def _feed_forward(c: GPTConfig, hidden: int | None = None) -> nn.Module:
    if c.mlp == "swiglu":
        return SwiGLU(c.n_embd, hidden or c.ffn_hidden, c.bias, c.dropout)
    return MLP(c, hidden)


def _mlp(c: GPTConfig) -> nn.Module:
    """The block's feed-forward part: a dense MLP, or a mixture of such experts."""
    if not c.n_experts:
        return _feed_forward(c)
    shared = _feed_forward(c, c.moe_hidden) if c.moe_shared_expert else None
    expert = lambda: _feed_forward(c, c.moe_hidden)  # noqa: E731
    return MoE(c.n_embd, c.n_experts, c.moe_top_k, expert, shared, c.moe_norm_topk)


class Block(nn.Module):
    """A pre-norm Transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = _norm(config)
        self.mlp = _mlp(config)

    def forward(
        self,
        x: Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        weights: list[Tensor] | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, weights, rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only Transformer language model (GPT-2 architecture, modern switches).

    ``forward(idx, targets=None)`` returns ``(logits [B, T, V], loss or None)``; the loss
    is the mean cross-entropy over positions whose target is not ``-100`` (in training
    mode plus ``moe_aux_coef`` times the load-balancing loss of a mixture of experts).
    :meth:`hidden_states` returns what the LM head reads, :meth:`attention_maps` the
    attention weights of every layer and head.
    """

    rope_cos: Tensor  # buffers [block_size, D] of the RoPE angles (pos="rope" only)
    rope_sin: Tensor

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe: nn.Embedding | None = None
        if config.pos == "learned":  # position embedding
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        else:  # RoPE: a fixed table of angles, not a parameter (and not in checkpoints)
            cos, sin = rope_tables(config.head_dim, config.block_size, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = _norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight  # weight tying: one matrix, two roles
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2·n_layer), so that the
        # variance of the residual stream does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ forward
    def forward(
        self, idx: Tensor, targets: Tensor | None = None, *, cache: KVCache | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Logits for every position of ``idx`` (and the loss if ``targets`` is given).

        With a ``cache`` the tokens of ``idx`` are taken to follow the ``cache.length``
        tokens already in it; their keys and values are appended to the cache.  In
        training mode a mixture of experts adds ``moe_aux_coef`` × :meth:`aux_loss` to
        the loss; in eval mode the loss is the cross-entropy alone, so that validation
        losses of every switch compare.
        """
        logits = self.lm_head(self.hidden_states(idx, cache=cache))  # [B, T, V]
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
        )
        if self.training and self.config.n_experts and self.config.moe_aux_coef:
            loss = loss + self.config.moe_aux_coef * self.aux_loss()
        return logits, loss

    def aux_loss(self) -> Tensor:
        """The load-balancing loss of the last forward, averaged over the MoE layers."""
        losses = [b.mlp.aux_loss for b in self.blocks if isinstance(b.mlp, MoE)]
        if not losses or any(x is None for x in losses):
            raise RuntimeError("aux_loss() needs a forward pass of a model with n_experts > 0")
        return torch.stack(losses).mean()  # type: ignore[arg-type]

    def hidden_states(
        self,
        idx: Tensor,
        *,
        cache: KVCache | None = None,
        attention: list[Tensor] | None = None,
    ) -> Tensor:
        """Final hidden states ``[B, T, C]`` (after ``ln_f``): what the LM head reads.

        A classifier pools these instead of computing the vocabulary logits.  With a list
        ``attention``, every layer appends its attention weights ``[B, H, T, past + T]``.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape [batch, time], got {tuple(idx.shape)}")
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence of {past + T} tokens is longer than block_size "
                f"{self.config.block_size}; crop the input to the last "
                f"{self.config.block_size} tokens"
            )
        x, rope = self.wte(idx), None  # [B, T, C]
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(past, past + T, device=idx.device))
        else:  # the cos and sin rows of positions past .. past + T - 1
            rope = (self.rope_cos[past : past + T], self.rope_sin[past : past + T])
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, attention, rope)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Attention weights ``[n_layer, B, n_head, T, T]`` of the model on ``idx`` ``[B, T]``.

        Row ``i`` of a map is the distribution over positions ``0..i`` that position ``i``
        reads from: rows sum to 1 and the upper triangle is 0.  Computed in eval mode (no
        dropout) by the same attention code as :meth:`forward`.
        """
        maps: list[Tensor] = []
        was_training = self.training
        self.eval()
        try:
            self.hidden_states(idx, attention=maps)
        finally:
            self.train(was_training)
        return torch.stack(maps)

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow the vocabulary to ``vocab_size`` tokens (new ids after the old ones).

        New rows of the embedding (and of an untied output layer) start as the mean of
        the old rows: a new token first looks like an average token.
        """
        old = self.config.vocab_size
        if not isinstance(vocab_size, int) or vocab_size < old:
            raise ValueError(
                f"vocab_size must be an int >= {old} (shrinking would renumber tokens), got {vocab_size!r}"
            )

        def grow(w: Tensor) -> nn.Parameter:
            return nn.Parameter(
                torch.cat([w.detach(), w.detach().mean(0).expand(vocab_size - old, -1)])
            )

        self.wte.weight = grow(self.wte.weight)
        self.lm_head.weight = (
            self.wte.weight if self.config.tie_weights else grow(self.lm_head.weight)
        )
        self.wte.num_embeddings = self.lm_head.out_features = vocab_size
        self.config = replace(self.config, vocab_size=vocab_size)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty :class:`KVCache` on this model's device and dtype."""
        p = self.wte.weight
        return KVCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)

    # ------------------------------------------------------------------ accounting
    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (tied weights counted once).

        With ``non_embedding=True`` the token and position embeddings are left out — the
        count that scaling laws use (Kaplan et al., 2020).
        """
        n = sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
        if non_embedding:
            n -= self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe else 0)
        return n

    def flops_per_token(self, seq_len: int | None = None, training: bool = True) -> float:
        r"""Matrix-multiply FLOPs per token, the estimate used for MFU.

        A weight matrix with :math:`N` entries costs :math:`2N` FLOPs per token forward
        (one multiply and one add per entry) and :math:`4N` backward, i.e. :math:`6N` for a
        training step.  The matrices are all Linear layers *including* the output layer
        (:math:`V\times C`, also when it is tied), but not the embedding look-ups, which
        are not multiplications.  Attention adds :math:`QK^\top` and :math:`AV`:
        :math:`2\cdot 2\,T C` per layer and token forward, counted for the full
        :math:`T\times T` square as in PaLM (Chowdhery et al., 2022):

        .. math:: F = 6 N_{\text{matmul}} + 12\, L\, C\, T \quad(\text{training})

        and a third of that for a forward pass only.  In a mixture of experts a token
        passes through ``moe_top_k`` of the ``n_experts`` experts, so only that share of
        the expert matrices counts (the *active* parameters).
        """
        cfg = self.config
        T = cfg.block_size if seq_len is None else seq_len
        share = cfg.moe_top_k / cfg.n_experts if cfg.n_experts else 1.0
        n_matmul = sum(
            m.weight.numel() * (share if ".experts." in name else 1.0)
            for name, m in self.named_modules()
            if isinstance(m, nn.Linear)
        )
        forward = 2 * n_matmul + 4 * cfg.n_layer * cfg.n_embd * T
        return float(3 * forward if training else forward)

    def extra_repr(self) -> str:
        return f"parameters={self.num_parameters():,}"
