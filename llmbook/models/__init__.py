"""Neural models of the book, small and readable, each checked against a reference.

* :mod:`llmbook.models.rnn` — RNN and LSTM cells from their formulas, :class:`RNNLM`;
* :mod:`llmbook.models.attention` — scaled dot-product and multi-head attention;
* :mod:`llmbook.models.positional` — sinusoidal, learned and rotary positions;
* :mod:`llmbook.models.transformer` — encoder/decoder blocks, :class:`Seq2SeqTransformer`,
  the decoder-only :class:`TransformerLM`.

Every language model follows one interface: ``forward(idx, targets=None) ->
(logits [B, T, V], loss or None)`` and a ``config`` dataclass with ``vocab_size`` and
``block_size``.
"""

from __future__ import annotations

# --- chapters 3-4: recurrent networks, attention, Transformer ------------------------
from llmbook.models.attention import MultiHeadAttention, attention, causal_mask, padding_mask
from llmbook.models.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_encoding,
)
from llmbook.models.rnn import RNNLM, LSTMCell, Recurrent, RNNCell, RNNLMConfig
from llmbook.models.transformer import (
    DecoderBlock,
    EncoderBlock,
    FeedForward,
    Seq2SeqTransformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
)

__all__ = [
    "RNNCell",
    "LSTMCell",
    "Recurrent",
    "RNNLM",
    "RNNLMConfig",
    "attention",
    "causal_mask",
    "padding_mask",
    "MultiHeadAttention",
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "FeedForward",
    "EncoderBlock",
    "DecoderBlock",
    "TransformerConfig",
    "Seq2SeqTransformer",
    "TransformerLMConfig",
    "TransformerLM",
]

# --- chapter 5: GPT (helper C) -------------------------------------------------------
from llmbook.models.gpt import GPT, GPTConfig  # noqa: E402

__all__ += ["GPT", "GPTConfig"]

# --- section 3.5: a BERT-style encoder (masked LM) ---------------------------------------
from llmbook.models.bert import Bert, BertClassifier, BertConfig  # noqa: E402

__all__ += ["Bert", "BertConfig", "BertClassifier"]
