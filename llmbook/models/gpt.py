"""A GPT-2-style decoder-only language model in one readable file.

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

Shapes: ``B`` batch, ``T`` time (tokens), ``C = n_embd`` channels, ``H = n_head`` heads,
``D = C / H`` head size, ``V = vocab_size``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GPTConfig", "GPT", "KVCache", "Block", "CausalSelfAttention", "MLP"]


@dataclass
class GPTConfig:
    """Hyper-parameters of :class:`GPT` (also saved with every checkpoint)."""

    vocab_size: int = 8192
    block_size: int = 128  #: longest context the model can attend to (position embeddings)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = True  #: biases in Linear layers and LayerNorms, as in GPT-2
    tie_weights: bool = True  #: share the token embedding with the output layer

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                "every head gets n_embd // n_head channels"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build a config from a dict, naming any key that is not a field."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**d)


class KVCache:
    """Pre-allocated keys and values of every layer, for incremental decoding.

    ``k[layer]`` and ``v[layer]`` have shape ``[B, H, max_len, D]``; the first
    ``length`` positions are filled.  :meth:`reorder` permutes the batch (beam search).
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        max_len = config.block_size if max_len is None else max_len
        if max_len > config.block_size:
            raise ValueError(
                f"KVCache max_len {max_len} exceeds the model's block_size {config.block_size}"
            )
        shape = (batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.max_len = max_len
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` (``[B, H, T, D]``) for ``layer``; return all keys/values so far."""
        start = self.length
        end = start + k.size(2)
        if end > self.max_len:
            raise RuntimeError(f"KV cache is full: {end} positions > max_len {self.max_len}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (in that order); used when beams are re-ranked."""
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: one fused QKV projection, SDPA, output projection."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        weights: list[Tensor] | None = None,
    ) -> Tensor:
        """Attend ``x`` ``[B, T, C]`` (after the tokens in ``cache``); returns ``[B, T, C]``.

        With a list ``weights`` the attention weights ``[B, H, T, past + T]`` are computed
        explicitly, ``softmax(Q K^T / sqrt(D) + M)`` with the causal mask ``M``, and appended to
        it; the fused kernel computes the same function but does not return them.
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 × [B, T, C]
        # [B, T, C] -> [B, H, T, D]: each head attends independently
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)  # now [B, H, past + T, D]
        dropout_p = self.dropout if self.training else 0.0
        if weights is not None:  # the same attention, spelled out, to keep its weights
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # [B, H, T, past + T]
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            weights.append(att)
            y = F.dropout(att, dropout_p) @ v
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:  # one new token attends to everything before it: no mask needed
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:  # a chunk after a prefix: query i may see keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: ``C -> 4C -> GELU -> C``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """A pre-norm Transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        weights: list[Tensor] | None = None,
    ) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, weights)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only Transformer language model (GPT-2 architecture).

    ``forward(idx, targets=None)`` returns ``(logits [B, T, V], loss or None)``; the loss
    is the mean cross-entropy over positions whose target is not ``-100``.
    :meth:`hidden_states` returns what the LM head reads, :meth:`attention_maps` the
    attention weights of every layer and head.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # position embedding
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
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
        tokens already in it; their keys and values are appended to the cache.
        """
        logits = self.lm_head(self.hidden_states(idx, cache=cache))  # [B, T, V]
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100
        )
        return logits, loss

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
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # [B, T, C]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, attention)
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
            n -= self.wpe.weight.numel() + self.wte.weight.numel()
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

        and a third of that for a forward pass only.
        """
        cfg = self.config
        T = cfg.block_size if seq_len is None else seq_len
        n_matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        forward = 2 * n_matmul + 4 * cfg.n_layer * cfg.n_embd * T
        return float(3 * forward if training else forward)

    def extra_repr(self) -> str:
        return f"parameters={self.num_parameters():,}"
