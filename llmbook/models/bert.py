"""A BERT-style encoder in one readable file: bidirectional attention and a masked-LM head.

The layout follows BERT (Devlin et al., 2019) and Hugging Face's ``BertForMaskedLM``
exactly, so that ``tests/test_bert.py`` can copy weights over and compare logits:

* the input is the sum of a token embedding, a learned position embedding and a
  *segment* embedding (sentence A or B; all zeros for one text), then LayerNorm;
* ``n_layer`` *post-norm* blocks: ``x = LN(x + Attn(x))`` then ``x = LN(x + MLP(x))``,
  with the exact (erf) GELU;
* self-attention is **bidirectional**: no causal mask, every position reads every real
  position; only padding is masked out;
* the masked-LM head transforms each hidden state (``Linear -> GELU -> LN``) and maps it to
  the vocabulary with the token embedding matrix (tied weights) plus a bias.

:func:`mask_tokens` draws BERT's training inputs: 15 % of the ordinary tokens are chosen;
of those 80 % become ``[MASK]``, 10 % a random token and 10 % stay unchanged; the labels
are the original ids at the chosen positions and ``-100`` (ignored) everywhere else.
:class:`BertClassifier` puts a linear head on the ``[CLS]`` (first) state or on the mean
of the real positions.

Shapes: ``B`` batch, ``T`` time (tokens), ``C = n_embd``, ``H = n_head``, ``D = C / H``,
``V = vocab_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.models.attention import attention
from llmbook.utils import count_parameters

__all__ = [
    "BertConfig",
    "Bert",
    "BertBlock",
    "BidirectionalSelfAttention",
    "BertClassifierConfig",
    "BertClassifier",
    "mask_tokens",
]


@dataclass
class BertConfig:
    """Hyper-parameters of :class:`Bert` (saved with every checkpoint).

    The special ids follow the book's tokenizers: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2
    (used as BERT's ``[CLS]``), ``<eos>`` 3.  Ids ``0 .. n_special - 1`` and ``mask_id``
    are never chosen for masking nor drawn as random replacements.  ``mask_id`` defaults
    to the last id, ``vocab_size - 1``: a tokenizer without a ``[MASK]`` token gets one
    extra row of the embedding.
    """

    vocab_size: int = 8192
    max_positions: int = 128  #: longest input (the learned position table's length)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    mlp_hidden: int | None = None  #: MLP hidden size; None: 4·C as in BERT
    n_segments: int = 2  #: segment (token type) embeddings; 0: none
    dropout: float = 0.0
    norm_eps: float = 1e-12  #: BERT's LayerNorm ε
    pad_id: int = 0
    cls_id: int = 2  #: the token every input starts with; its state feeds the classifier
    n_special: int = 4  #: ids below this are special (never masked)
    mask_id: int | None = None  #: the [MASK] id; None: vocab_size - 1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_positions", "n_layer", "n_head", "n_embd"):
            _check_int(name, getattr(self, name), 1)
        for name in ("n_segments", "pad_id", "cls_id", "n_special"):
            _check_int(name, getattr(self, name), 0)
        if self.mlp_hidden is not None:
            _check_int("mlp_hidden", self.mlp_hidden, 1)
        if self.mask_id is not None:
            _check_int("mask_id", self.mask_id, 0)
        if self.n_embd % self.n_head:
            raise ValueError(
                f"BertConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"BertConfig.dropout must be in [0, 1), got {self.dropout!r}")
        for name, value in (
            ("pad_id", self.pad_id),
            ("cls_id", self.cls_id),
            ("mask_id", self.mask_token),
        ):
            if value >= self.vocab_size:
                raise ValueError(
                    f"BertConfig.{name} = {value} is not below vocab_size {self.vocab_size}"
                )
        for name, value in (("pad_id", self.pad_id), ("cls_id", self.cls_id)):
            if value >= self.n_special:
                raise ValueError(
                    f"BertConfig.{name} = {value} must be a special id (below n_special ="
                    f" {self.n_special}), or masking could pick it"
                )
        if self.n_special + 1 >= self.vocab_size:
            raise ValueError("BertConfig needs ordinary tokens besides the special ones")

    @property
    def mask_token(self) -> int:
        """The id of ``[MASK]``."""
        return self.vocab_size - 1 if self.mask_id is None else self.mask_id

    @property
    def block_size(self) -> int:
        """``max_positions`` under the name the book's trainer reads."""
        return self.max_positions

    @property
    def ffn_hidden(self) -> int:
        return 4 * self.n_embd if self.mlp_hidden is None else self.mlp_hidden

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"BertConfig.{name} must be an int >= {low}, got {value!r}")


# ---------------------------------------------------------------------------- masking
def mask_tokens(
    ids: Tensor,
    config: BertConfig,
    *,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masking: ``(inputs, labels)`` for ids ``[B, T]`` (or ``[T]``).

    Every ordinary token (not special, not ``[MASK]``, not padding) is chosen with
    probability ``mask_prob``.  A chosen token becomes ``[MASK]`` with probability 0.8,
    a random ordinary token with 0.1, and stays itself with 0.1; its label is its original
    id.  Every other label is ``-100``, the index the cross-entropy ignores.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob!r}")
    if ids.dtype != torch.long:
        raise TypeError(f"ids must be a LongTensor of token ids, got {ids.dtype}")
    c = config
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size):
        raise ValueError(f"token ids must lie in [0, {c.vocab_size}), got {ids.min()}..{ids.max()}")
    ordinary = (ids >= c.n_special) & (ids != c.mask_token)
    u = torch.rand(ids.shape, generator=generator)
    chosen = ordinary & (u < mask_prob)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    # a second uniform number splits the chosen ones 80 / 10 / 10
    r = torch.rand(ids.shape, generator=generator)
    to_mask = chosen & (r < 0.8)
    to_random = chosen & (r >= 0.8) & (r < 0.9)
    candidates = torch.tensor([i for i in range(c.n_special, c.vocab_size) if i != c.mask_token])
    random_ids = candidates[torch.randint(len(candidates), ids.shape, generator=generator)]
    inputs = torch.where(to_mask, torch.full_like(ids, c.mask_token), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


# ---------------------------------------------------------------------------- layers
class BidirectionalSelfAttention(nn.Module):
    """Multi-head self-attention without a causal mask: every position sees every other.

    ``attention_mask`` ``[B, T]`` (True at real tokens) keeps queries from reading padding.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # Q, K, V in one matrix
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(
        self, x: Tensor, attention_mask: Tensor | None = None, weights: list[Tensor] | None = None
    ) -> Tensor:
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        mask = None if attention_mask is None else attention_mask[:, None, None, :]  # [B,1,1,T]
        if weights is not None:  # the same attention, spelled out, to keep its weights
            y, att = attention(q, k, v, mask=mask)  # att: [B, H, T, T]
            weights.append(att)
        else:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class BertBlock(nn.Module):
    """A post-norm block (as in BERT): ``x = LN(x + Attn(x))``, ``x = LN(x + MLP(x))``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attn = BidirectionalSelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.norm_eps)
        self.c_fc = nn.Linear(config.n_embd, config.ffn_hidden)
        self.c_proj = nn.Linear(config.ffn_hidden, config.n_embd)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.norm_eps)
        self.dropout = config.dropout

    def forward(
        self, x: Tensor, attention_mask: Tensor | None = None, weights: list[Tensor] | None = None
    ) -> Tensor:
        x = self.ln_1(x + self.attn(x, attention_mask, weights))
        h = F.dropout(self.c_proj(F.gelu(self.c_fc(x))), self.dropout, self.training)
        return self.ln_2(x + h)


# ---------------------------------------------------------------------------- model
class Bert(nn.Module):
    """BERT encoder with its masked-LM head.

    ``forward(idx, labels=None, attention_mask=None, segment_ids=None)`` returns
    ``(logits [B, T, V], loss or None)``; the loss is the mean cross-entropy over the
    positions whose label is not ``-100`` — for :func:`mask_tokens` labels, the chosen
    15 %.  :meth:`hidden_states` gives the encoder's output, what a classifier pools.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        c = self.config = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)  # token embedding
        self.wpe = nn.Embedding(c.max_positions, c.n_embd)  # position embedding
        self.wse = nn.Embedding(c.n_segments, c.n_embd) if c.n_segments else None
        self.ln_emb = nn.LayerNorm(c.n_embd, eps=c.norm_eps)
        self.blocks = nn.ModuleList(BertBlock(c) for _ in range(c.n_layer))
        # masked-LM head: transform, then the (tied) token embedding and a bias
        self.mlm_dense = nn.Linear(c.n_embd, c.n_embd)
        self.mlm_ln = nn.LayerNorm(c.n_embd, eps=c.norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _check(
        self, idx: Tensor, attention_mask: Tensor | None, segment_ids: Tensor | None
    ) -> None:
        c = self.config
        if idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(
                f"idx must be a LongTensor [batch, time], got {idx.dtype} {tuple(idx.shape)}"
            )
        if idx.size(1) > c.max_positions:
            raise ValueError(
                f"sequence of {idx.size(1)} tokens is longer than max_positions "
                f"{c.max_positions}; cut the input to {c.max_positions} tokens"
            )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= c.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {c.vocab_size}), got {int(idx.min())}..{int(idx.max())}; "
                "was the text encoded with another tokenizer?"
            )
        for name, t in (("attention_mask", attention_mask), ("segment_ids", segment_ids)):
            if t is not None and t.shape != idx.shape:
                raise ValueError(
                    f"{name} must have idx's shape {tuple(idx.shape)}, got {tuple(t.shape)}"
                )
        if segment_ids is not None and (
            self.wse is None or int(segment_ids.min()) < 0 or int(segment_ids.max()) >= c.n_segments
        ):
            raise ValueError(f"segment ids must lie in [0, {c.n_segments}) (n_segments)")

    def hidden_states(
        self,
        idx: Tensor,
        attention_mask: Tensor | None = None,
        segment_ids: Tensor | None = None,
        *,
        attention: list[Tensor] | None = None,
    ) -> Tensor:
        """Encoder output ``[B, T, C]``; ``attention_mask`` ``[B, T]`` is True at real tokens."""
        self._check(idx, attention_mask, segment_ids)
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        if self.wse is not None:  # one text: every token is in segment 0
            seg = torch.zeros_like(idx) if segment_ids is None else segment_ids
            x = x + self.wse(seg)
        x = F.dropout(self.ln_emb(x), self.config.dropout, self.training)
        mask = None if attention_mask is None else attention_mask.bool()
        for block in self.blocks:
            x = block(x, mask, attention)
        return x

    def mlm_logits(self, h: Tensor) -> Tensor:
        """Vocabulary logits ``[B, T, V]`` of hidden states ``h`` (tied to ``wte``)."""
        h = self.mlm_ln(F.gelu(self.mlm_dense(h)))
        return F.linear(h, self.wte.weight, self.mlm_bias)

    def forward(
        self,
        idx: Tensor,
        labels: Tensor | None = None,
        *,
        attention_mask: Tensor | None = None,
        segment_ids: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        logits = self.mlm_logits(self.hidden_states(idx, attention_mask, segment_ids))
        if labels is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Attention weights ``[n_layer, B, n_head, T, T]`` (eval mode, no dropout)."""
        maps: list[Tensor] = []
        was_training = self.training
        self.eval()
        try:
            self.hidden_states(idx, attention_mask, attention=maps)
        finally:
            self.train(was_training)
        return torch.stack(maps)

    def num_parameters(self) -> int:
        """Number of parameters (the tied output matrix is ``wte`` itself, counted once)."""
        return count_parameters(self)

    def extra_repr(self) -> str:
        return f"parameters={self.num_parameters():,}"


# ---------------------------------------------------------------------------- classifier
POOLINGS = ("cls", "mean")


@dataclass
class BertClassifierConfig:
    """Hyper-parameters of :class:`BertClassifier` (saved with every checkpoint)."""

    bert: BertConfig  #: the body (a dict, as read from config.json, is converted)
    labels: tuple[str, ...]  #: class names in order
    pooling: str = "cls"  #: "cls": the first ([CLS]) state; "mean": the mean over real tokens
    dropout: float = 0.1  #: dropout on the pooled vector (training only)
    max_len: int | None = None  #: texts are cut to this many tokens; None: max_positions

    def __post_init__(self) -> None:
        if isinstance(self.bert, dict):
            self.bert = BertConfig(**self.bert)
        if not isinstance(self.bert, BertConfig):
            raise TypeError(
                f"BertClassifierConfig.bert must be a BertConfig, got {type(self.bert)}"
            )
        if isinstance(self.labels, str) or len(self.labels) < 2:
            raise ValueError(f"labels must name at least 2 classes, got {self.labels!r}")
        self.labels = tuple(str(x) for x in self.labels)
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.max_len is None:
            self.max_len = self.bert.max_positions
        if not isinstance(self.max_len, int) or not 1 <= self.max_len <= self.bert.max_positions:
            raise ValueError(
                f"max_len must be an int in [1, {self.bert.max_positions}], got {self.max_len!r}"
            )


class BertClassifier(nn.Module):
    """A :class:`Bert` body with a linear head: ``forward(idx, lengths, labels=None)``.

    The call matches :class:`llmbook.models.classifier.GPTClassifier`, so the book's
    fine-tuning loop (:func:`llmbook.training.finetune.finetune_classifier`) trains both.
    Inputs start with ``[CLS]`` (the book's ``<bos>``); positions at or after ``lengths``
    are padding and masked out of attention.  Unlike the original BERT there is no
    "pooler" layer (``tanh`` on ``[CLS]``), which BERT trained for next-sentence prediction.
    """

    def __init__(self, config: BertClassifierConfig, bert: Bert | None = None) -> None:
        super().__init__()
        if bert is not None and bert.config != config.bert:
            raise ValueError("the Bert's config differs from BertClassifierConfig.bert")
        self.config = config
        self.bert = bert if bert is not None else Bert(config.bert)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.bert.n_embd, len(config.labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_bert(cls, bert: Bert, labels: Sequence[str], **options: Any) -> BertClassifier:
        """A new head on the pretrained ``bert`` (used as is, not copied)."""
        return cls(BertClassifierConfig(bert.config, tuple(labels), **options), bert)

    def pool(self, idx: Tensor, lengths: Tensor) -> Tensor:
        real = torch.arange(idx.size(1), device=idx.device)[None, :] < lengths[:, None]
        h = self.bert.hidden_states(idx, attention_mask=real)  # [B, T, C]
        if self.config.pooling == "cls":
            return h[:, 0]
        m = real.to(h.dtype)[..., None]
        return (h * m).sum(1) / m.sum(1)

    def forward(
        self, idx: Tensor, lengths: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        logits = self.head(self.dropout(self.pool(idx, lengths)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return logits, loss
