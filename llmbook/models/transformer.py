"""Transformer blocks, an encoder–decoder Transformer and a small decoder-only LM.

* :class:`EncoderBlock`: self-attention + feed-forward, each wrapped in a residual
  connection and a layer norm; ``norm_first=True`` (pre-norm, the default, what modern
  LLMs use) computes ``x + Sublayer(LayerNorm(x))``, ``norm_first=False`` (post-norm,
  the 2017 paper) computes ``LayerNorm(x + Sublayer(x))``.  The same block with a causal
  mask is the block of a decoder-only language model.
* :class:`DecoderBlock`: causal self-attention, cross-attention to the encoder output
  ("memory"), feed-forward.
* :class:`Seq2SeqTransformer` (config :class:`TransformerConfig`): the encoder–decoder
  model of :cite:`vaswani2017attention`, used for 汉字→拼音 in chapter 6.
* :class:`TransformerLM` (config :class:`TransformerLMConfig`): a stack of causal
  blocks with the book's LM interface ``forward(idx, targets) -> (logits, loss)``.

Both blocks have ``load_from_torch`` so the tests can check them against
``torch.nn.TransformerEncoderLayer``/``DecoderLayer`` with identical weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.models.attention import MultiHeadAttention
from llmbook.models.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

__all__ = [
    "FeedForward",
    "EncoderBlock",
    "DecoderBlock",
    "TransformerConfig",
    "Seq2SeqTransformer",
    "TransformerLMConfig",
    "TransformerLM",
]

Activation = Literal["gelu", "relu"]


class FeedForward(nn.Module):
    """Position-wise feed-forward network :math:`W_2\\,\\phi(W_1 x + b_1) + b_2`."""

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, activation: Activation = "gelu"
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.act = F.gelu if activation == "gelu" else F.relu

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.act(self.linear1(x))))


@torch.no_grad()
def _copy_mha(mine: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    mine.load_from_torch(theirs)


@torch.no_grad()
def _copy_common(block: EncoderBlock | DecoderBlock, layer: nn.Module) -> None:
    for name in ("linear1", "linear2"):
        src = getattr(layer, name)
        getattr(block.ff, name).weight.copy_(src.weight)
        getattr(block.ff, name).bias.copy_(src.bias)
    for name in ("norm1", "norm2", "norm3"):
        if hasattr(block, name):
            getattr(block, name).load_state_dict(getattr(layer, name).state_dict())


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward with residual connections and layer norm.

    ``forward(x, mask=None, is_causal=False, need_weights=False)``: ``x`` is
    ``[B, T, d_model]``; ``mask`` boolean, True = may attend (see
    :mod:`llmbook.models.attention`).  With ``need_weights`` the attention weights are
    kept in ``self.last_attention`` (``[B, h, T, T]``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: Activation = "gelu",
        rope: bool = False,
        max_len: int = 4096,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, rope=rope, max_len=max_len)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)
        self.last_attention: Tensor | None = None

    def _sa(self, x: Tensor, mask: Tensor | None, is_causal: bool, need_weights: bool) -> Tensor:
        out, w = self.self_attn(x, mask=mask, is_causal=is_causal, need_weights=need_weights)
        self.last_attention = w.detach() if w is not None else None
        return self.drop1(out)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), mask, is_causal, need_weights)
            return x + self.drop2(self.ff(self.norm2(x)))
        x = self.norm1(x + self._sa(x, mask, is_causal, need_weights))
        return self.norm2(x + self.drop2(self.ff(x)))

    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> EncoderBlock:
        """Copy the weights of a ``torch.nn.TransformerEncoderLayer`` with the same sizes."""
        _copy_mha(self.self_attn, layer.self_attn)
        _copy_common(self, layer)
        return self


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to ``memory``, feed-forward (each residual).

    ``forward(x, memory, self_mask=None, memory_mask=None)``: ``x`` ``[B, T, d]`` (target
    side), ``memory`` ``[B, S, d]`` (encoder output); the causal mask is always applied
    to the self-attention, ``self_mask``/``memory_mask`` (boolean, True = may attend) are
    added to it, e.g. to hide padding.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)
        self.drop3 = nn.Dropout(dropout)
        self.last_cross_attention: Tensor | None = None

    def _sa(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.drop1(self.self_attn(x, mask=mask, is_causal=True)[0])

    def _ca(self, x: Tensor, memory: Tensor, mask: Tensor | None, need_weights: bool) -> Tensor:
        out, w = self.cross_attn(x, memory, mask=mask, need_weights=need_weights)
        self.last_cross_attention = w.detach() if w is not None else None
        return self.drop2(out)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        if self.norm_first:
            x = x + self._sa(self.norm1(x), self_mask)
            x = x + self._ca(self.norm2(x), memory, memory_mask, need_weights)
            return x + self.drop3(self.ff(self.norm3(x)))
        x = self.norm1(x + self._sa(x, self_mask))
        x = self.norm2(x + self._ca(x, memory, memory_mask, need_weights))
        return self.norm3(x + self.drop3(self.ff(x)))

    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> DecoderBlock:
        """Copy the weights of a ``torch.nn.TransformerDecoderLayer`` with the same sizes."""
        _copy_mha(self.self_attn, layer.self_attn)
        _copy_mha(self.cross_attn, layer.multihead_attn)
        _copy_common(self, layer)
        return self


def _positions(kind: str, d_model: int, max_len: int) -> nn.Module:
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if kind == "learned":
        return LearnedPositionalEmbedding(d_model, max_len)
    if kind == "rope":
        return nn.Identity()  # rotary positions live inside the attention layers
    raise ValueError(f"positional must be 'sinusoidal', 'learned' or 'rope', got {kind!r}")


def _check_positive(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


@dataclass
class TransformerConfig:
    """Configuration of :class:`Seq2SeqTransformer` (encoder–decoder).

    ``max_len`` bounds both the source and the target length; ``pad_id`` is the padding
    id of both vocabularies (0 for every tokenizer of the book); ``d_ff`` defaults to
    ``4 * d_model``.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.1
    max_len: int = 128
    pad_id: int = 0
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    norm_first: bool = True
    activation: Activation = "gelu"

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        _check_positive(
            self,
            (
                "src_vocab_size",
                "tgt_vocab_size",
                "d_model",
                "n_heads",
                "n_encoder_layers",
                "n_decoder_layers",
                "d_ff",
                "max_len",
            ),
        )
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError(
                f"positional must be 'sinusoidal' or 'learned', got {self.positional!r}"
            )


def _keys_visible(pad: Tensor) -> Tensor:
    """``[B, T]`` True-at-padding → ``[B, 1, T, T]`` True = may attend.

    Every position may also attend to itself, so that a padding query never has an empty
    row (which would give ``nan``); real queries are unaffected.
    """
    T = pad.shape[1]
    eye = torch.eye(T, dtype=torch.bool, device=pad.device)
    return (~pad)[:, None, None, :] | eye


class Seq2SeqTransformer(nn.Module):
    """Encoder–decoder Transformer for sequence-to-sequence tasks (e.g. 汉字 → 拼音).

    ``forward(src, tgt_in, src_pad_mask=None, tgt_pad_mask=None) -> logits`` with
    ``src`` ``[B, S]``, ``tgt_in`` ``[B, T]`` (the target shifted right, starting with
    ``<bos>``) and ``logits`` ``[B, T, tgt_vocab_size]``.  The padding masks are boolean
    ``[B, S]``/``[B, T]`` and **True at padding** (the ``key_padding_mask`` convention of
    torch); when omitted they are computed as ``ids == config.pad_id``.  Embeddings are
    scaled by :math:`\\sqrt{d_{model}}` and the target embedding is tied to the output layer.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        assert c.d_ff is not None
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.src_pos = _positions(c.positional, c.d_model, c.max_len)
        self.tgt_pos = _positions(c.positional, c.d_model, c.max_len)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first, c.activation)
            for _ in range(c.n_encoder_layers)
        )
        self.decoder = nn.ModuleList(
            DecoderBlock(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first, c.activation)
            for _ in range(c.n_decoder_layers)
        )
        self.enc_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.head = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        nn.init.normal_(self.src_embed.weight, std=c.d_model**-0.5)
        nn.init.normal_(self.tgt_embed.weight, std=c.d_model**-0.5)
        self.head.weight = self.tgt_embed.weight  # weight tying

    def _check(self, ids: Tensor, what: str, vocab: int) -> None:
        if ids.dim() != 2:
            raise ValueError(f"{what} must have shape [batch, time], got {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"{what} has length {ids.shape[1]} > max_len={self.config.max_len}; "
                "truncate it or build the model with a larger TransformerConfig.max_len"
            )
        if ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
            raise ValueError(f"{what} has ids outside [0, {vocab}); check the tokenizer")

    def encode(self, src: Tensor, src_pad_mask: Tensor | None = None) -> Tensor:
        """Encoder output ("memory") ``[B, S, d_model]`` for source ids ``[B, S]``."""
        c = self.config
        self._check(src, "src", c.src_vocab_size)
        pad = src == c.pad_id if src_pad_mask is None else src_pad_mask
        x = self.drop(self.src_pos(self.src_embed(src) * math.sqrt(c.d_model)))
        mask = _keys_visible(pad)
        for block in self.encoder:
            x = block(x, mask=mask)
        return self.enc_norm(x)

    def decode(
        self,
        tgt_in: Tensor,
        memory: Tensor,
        src_pad_mask: Tensor | None = None,
        tgt_pad_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor:
        """Logits ``[B, T, tgt_vocab]`` for target prefix ``tgt_in`` given ``memory``.

        ``src_pad_mask`` (True at source padding) hides padded source positions from the
        cross-attention; pass the mask used for :meth:`encode` (if ``None``, every memory
        position is visible).
        """
        c = self.config
        self._check(tgt_in, "tgt_in", c.tgt_vocab_size)
        pad = tgt_in == c.pad_id if tgt_pad_mask is None else tgt_pad_mask
        self_mask = _keys_visible(pad)
        mem_mask = None if src_pad_mask is None else (~src_pad_mask)[:, None, None, :]
        x = self.drop(self.tgt_pos(self.tgt_embed(tgt_in) * math.sqrt(c.d_model)))
        for block in self.decoder:
            x = block(
                x, memory, self_mask=self_mask, memory_mask=mem_mask, need_weights=need_weights
            )
        return self.head(self.dec_norm(x))

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_pad_mask: Tensor | None = None,
        tgt_pad_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``[B, T, tgt_vocab]``."""
        if src_pad_mask is None:
            src_pad_mask = src == self.config.pad_id
        memory = self.encode(src, src_pad_mask)
        return self.decode(tgt_in, memory, src_pad_mask, tgt_pad_mask)

    @torch.no_grad()
    def greedy_decode(
        self,
        src: Tensor,
        bos_id: int,
        eos_id: int,
        max_new_tokens: int | None = None,
        src_pad_mask: Tensor | None = None,
    ) -> Tensor:
        """Greedy decoding: ids ``[B, ≤ max_new_tokens]`` without ``<bos>``.

        Each step appends the most probable next token; sequences that produced
        ``<eos>`` are padded with ``pad_id`` afterwards, and decoding stops when all have.
        """
        was_training = self.training
        self.eval()
        c = self.config
        limit = c.max_len - 1 if max_new_tokens is None else min(max_new_tokens, c.max_len - 1)
        if src_pad_mask is None:
            src_pad_mask = src == c.pad_id
        memory = self.encode(src, src_pad_mask)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(limit):
            logits = self.decode(
                out, memory, src_pad_mask, tgt_pad_mask=torch.zeros_like(out, dtype=torch.bool)
            )
            nxt = logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, c.pad_id), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
        self.train(was_training)
        return out[:, 1:]

    @torch.no_grad()
    def cross_attention_maps(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Cross-attention weights ``[n_decoder_layers, B, n_heads, T, S]`` (eval mode):
        row ``t`` says how target position ``t`` of ``tgt_in`` spreads over the source."""
        was_training = self.training
        self.eval()
        pad = src == self.config.pad_id
        self.decode(tgt_in, self.encode(src, pad), pad, need_weights=True)
        self.train(was_training)
        return torch.stack([b.last_cross_attention for b in self.decoder])  # type: ignore[misc]


@dataclass
class TransformerLMConfig:
    """Configuration of :class:`TransformerLM` (decoder-only).

    ``positional`` chooses learned absolute positions, the fixed sinusoidal table, or
    RoPE inside every attention layer; ``d_ff`` defaults to ``4 * d_model``.
    """

    vocab_size: int
    block_size: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.0
    positional: Literal["learned", "sinusoidal", "rope"] = "learned"
    norm_first: bool = True
    tie_weights: bool = True

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        _check_positive(
            self, ("vocab_size", "block_size", "d_model", "n_heads", "n_layers", "d_ff")
        )
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.positional not in ("learned", "sinusoidal", "rope"):
            raise ValueError(
                f"positional must be 'learned', 'sinusoidal' or 'rope', got {self.positional!r}"
            )


class TransformerLM(nn.Module):
    """Decoder-only Transformer language model (causal self-attention blocks).

    Same interface as every LM of the book: ``forward(idx, targets=None) ->
    (logits [B, T, V], loss)``; ``idx`` may be at most ``config.block_size`` long.
    :meth:`attention_maps` returns the attention weights of every layer and head.
    """

    def __init__(self, config: TransformerLMConfig) -> None:
        super().__init__()
        self.config = c = config
        assert c.d_ff is not None
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = _positions(c.positional, c.d_model, c.block_size)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                c.d_model,
                c.n_heads,
                c.d_ff,
                c.dropout,
                c.norm_first,
                rope=c.positional == "rope",
                max_len=c.block_size,
            )
            for _ in range(c.n_layers)
        )
        self.norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        if c.tie_weights:
            self.head.weight = self.embed.weight

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape [batch, time], got {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"sequence length {idx.shape[1]} exceeds block_size={self.config.block_size}; "
                "crop the context to the last block_size tokens"
            )
        x = self.drop(self.pos(self.embed(idx)))
        for block in self.blocks:
            x = block(x, is_causal=True, need_weights=need_weights)
        logits = self.head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Attention weights ``[n_layers, B, n_heads, T, T]`` for input ``idx`` ``[B, T]``."""
        was_training = self.training
        self.eval()
        self(idx, need_weights=True)
        self.train(was_training)
        maps = []
        for block in self.blocks:
            assert isinstance(block, EncoderBlock) and block.last_attention is not None
            maps.append(block.last_attention)
        return torch.stack(maps)
