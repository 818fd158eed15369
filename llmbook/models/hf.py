"""The book's GPT ↔ Hugging Face ``transformers`` models, with identical logits.

**GPT-2.**  With its default switches :class:`llmbook.models.gpt.GPT` has the GPT-2
architecture, so its weights map one to one onto ``GPT2LMHeadModel``.  Three conventions
differ and are handled here:

* **Linear vs Conv1D.** GPT-2's projections are ``Conv1D`` modules whose weight is stored
  as ``[in, out]``; ``torch.nn.Linear`` stores ``[out, in]``.  Every projection weight is
  transposed on the way (``c_attn``, ``attn.c_proj``, ``mlp.c_fc``, ``mlp.c_proj``).
* **Biases.** GPT-2 always has biases in its projections and LayerNorms.  A book model
  built with ``bias=False`` is converted with zero biases, which computes the same
  function; going back, all-zero biases give ``bias=False`` again.
* **Weight tying.** ``tie_weights=True`` ↔ ``tie_word_embeddings=True``: one matrix is
  both the token embedding and the output layer.  Untied models carry ``lm_head.weight``.

The activation is GELU with the tanh approximation in both (``gelu_new`` in
``transformers``), the LayerNorm ε is copied, and so are the dropout probabilities.

**The modern block** (RoPE, RMSNorm, SwiGLU, GQA, QK-norm, MoE) converts to the Llama
family of ``transformers`` (Llama, Qwen3, Mixtral, Qwen-MoE) in
:mod:`llmbook.models.hf_modern`; :func:`to_hf` and :func:`from_hf` pick the direction
and the class.

:func:`to_hf_tokenizer` wraps a :class:`llmbook.text.tokenizers.CharTokenizer` as a
``PreTrainedTokenizerFast`` so that ``pipeline("text-generation")`` works.
"""

from __future__ import annotations

from typing import Any

import torch

from llmbook.data.lmdata import right_pad
from llmbook.interfaces import Tokenizer
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.hf_modern import (
    HF_CLASSES,
    _require_transformers,
    from_hf_modern,
    hf_family,
    hf_sizes,
    modern_hf_config,
    to_hf_modern,
)
from llmbook.text.tokenizers import CharTokenizer

__all__ = [
    "to_hf",
    "from_hf",
    "hf_config",
    "hf_family",
    "HF_CLASSES",
    "to_hf_tokenizer",
    "mean_hidden_states",
    "CONV1D_WEIGHTS",
]

#: Parameters stored transposed in GPT-2 (Conv1D: ``[in, out]``).
CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)


def hf_config(config: GPTConfig, **extra: Any) -> Any:
    """The ``transformers`` config equivalent to a book :class:`GPTConfig`."""
    transformers = _require_transformers()
    c = config
    if hf_family(c) != "gpt2":
        return modern_hf_config(c, **extra)
    return transformers.GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.block_size,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=None,  # 4 * n_embd, as in the book's MLP
        activation_function="gelu_new",
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        layer_norm_epsilon=c.norm_eps,
        tie_word_embeddings=c.tie_weights,
        scale_attn_weights=True,
        bos_token_id=extra.pop("bos_token_id", None),
        eos_token_id=extra.pop("eos_token_id", None),
        pad_token_id=extra.pop("pad_token_id", None),
        **extra,
    )


def _check_gpt(model: Any) -> GPTConfig:
    if not isinstance(model, GPT):
        raise TypeError(
            f"to_hf converts llmbook.models.gpt.GPT models, got {type(model).__name__}; "
            "other architectures have no GPT-2 equivalent"
        )
    for name, module in model.named_modules():
        projection = name.endswith(("c_attn", "c_proj", "c_fc", "c_gate", "router"))
        if projection and type(module) is not torch.nn.Linear:
            raise TypeError("to_hf needs plain nn.Linear projections; merge LoRA adapters first")
    return model.config


@torch.no_grad()
def to_hf(model: GPT, **config_extra: Any) -> Any:
    """Convert a book :class:`GPT` to a ``transformers.GPT2LMHeadModel`` (same logits).

    A model with the modern switches becomes the class :func:`hf_family` names (e.g.
    ``LlamaForCausalLM``).  ``config_extra`` is passed to the config (e.g.
    ``eos_token_id=3``).  The result is in eval mode, on the CPU, in float32.
    """
    transformers = _require_transformers()
    cfg = _check_gpt(model)
    if hf_family(cfg) != "gpt2":  # RoPE, RMSNorm, SwiGLU: the Llama family
        return to_hf_modern(model, **config_extra)
    hf = transformers.GPT2LMHeadModel(hf_config(cfg, **config_extra))
    src = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    target = hf.state_dict()
    new: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        if not name.startswith(("transformer.", "lm_head.")):
            continue
        key = name.removeprefix("transformer.")
        key = key.replace("h.", "blocks.", 1) if key.startswith("h.") else key
        if name == "lm_head.weight":
            key = "lm_head.weight" if not cfg.tie_weights else "wte.weight"
        if key in src:
            value = src[key]
            if key.endswith(CONV1D_WEIGHTS):
                value = value.t().contiguous()
        elif key.endswith(".bias") and not cfg.bias:
            value = torch.zeros_like(tensor)  # bias=False ≡ zero bias
        else:
            continue  # buffers such as the causal mask
        if value.shape != tensor.shape:
            raise ValueError(
                f"shape mismatch for {name}: book {tuple(value.shape)} vs HF {tuple(tensor.shape)}"
            )
        new[name] = value
    missing = [k for k in target if k not in new and k.endswith((".weight", ".bias"))]
    missing = [k for k in missing if not k.endswith("attn.bias") or k.endswith("c_attn.bias")]
    if missing:
        raise RuntimeError(f"no source for HF parameters {missing[:5]}; the architectures differ")
    hf.load_state_dict(new, strict=False)
    if cfg.tie_weights:
        hf.tie_weights()
    return hf.eval()


@torch.no_grad()
def from_hf(hf_model: Any, *, bias: bool | None = None) -> GPT:
    """Convert a ``transformers.GPT2LMHeadModel`` to a book :class:`GPT` (same logits).

    ``bias=None`` detects it: if every projection and LayerNorm bias is zero the book
    model is built with ``bias=False``.  Raises ``ValueError`` for configurations the
    book's GPT does not implement (another activation or MLP width).  The model types of
    :data:`HF_CLASSES` (Llama, Qwen3, Mixtral, Qwen3-MoE, Qwen2-MoE) convert too.
    """
    c = hf_model.config
    if c.model_type != "gpt2":
        return from_hf_modern(hf_model)
    problems = []
    if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        problems.append(f"activation_function={c.activation_function!r} (book: tanh GELU)")
    if c.n_inner not in (None, 4 * c.n_embd):
        problems.append(f"n_inner={c.n_inner} (book: 4 * n_embd)")
    if getattr(c, "scale_attn_by_inverse_layer_idx", False) or getattr(
        c, "reorder_and_upcast_attn", False
    ):
        problems.append(
            "scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported"
        )
    if problems:
        raise ValueError(
            "cannot convert this GPT-2 model to the book's GPT: " + "; ".join(problems)
        )
    sd = {k: v.detach().float().cpu() for k, v in hf_model.state_dict().items()}
    if bias is None:
        bias = any(
            torch.any(v != 0).item()
            for k, v in sd.items()
            if k.endswith(".bias") and not k.endswith(".attn.bias") or k.endswith("c_attn.bias")
        )
    tied = bool(getattr(c, "tie_word_embeddings", True))
    cfg = GPTConfig(
        **hf_sizes(c),
        dropout=float(c.resid_pdrop),
        bias=bias,
        tie_weights=tied,
        norm_eps=float(c.layer_norm_epsilon),
    )
    model = GPT(cfg)
    new = {}
    for key in model.state_dict():
        if key == "lm_head.weight":
            name = "lm_head.weight" if not tied else "transformer.wte.weight"
        else:
            name = "transformer." + (
                key.replace("blocks.", "h.", 1) if key.startswith("blocks.") else key
            )
        value = sd[name]
        if key.endswith(CONV1D_WEIGHTS):
            value = value.t().contiguous()
        new[key] = value
    model.load_state_dict(new)
    return model.eval()


def to_hf_tokenizer(tokenizer: CharTokenizer) -> Any:
    """A ``PreTrainedTokenizerFast`` with the same ids as a book character tokenizer.

    Every character is one token (unknown ones map to ``<unk>``); the special tokens
    keep their ids (``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3).
    """
    transformers = _require_transformers()
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {tokenizer.id_to_token(i): i for i in range(tokenizer.vocab_size)}
    tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
    )


@torch.no_grad()
def mean_hidden_states(
    hf_model: Any,
    tokenizer: Tokenizer,
    texts: list[str],
    *,
    batch_size: int = 64,
    max_len: int | None = None,
) -> Any:
    """Sentence vectors from a converted model: last hidden states averaged over tokens.

    ``hf_model`` is a ``GPT2LMHeadModel`` (or ``GPT2Model``); ``tokenizer`` a book
    tokenizer (``encode``, ``pad_id``).  Texts are cut to their first ``max_len`` tokens
    (default: the model's context) and padded per batch; padding is masked out of the attention and of the average.
    Returns a NumPy array ``[len(texts), n_embd]``.
    """
    import numpy as np

    if max_len is None:
        max_len = int(hf_model.config.n_positions)
    if max_len > hf_model.config.n_positions:
        raise ValueError(
            f"max_len {max_len} exceeds the model's context of {hf_model.config.n_positions}"
        )
    body = getattr(hf_model, "transformer", hf_model)
    feats = []
    for i in range(0, len(texts), batch_size):
        enc = [
            list(tokenizer.encode(t))[:max_len] or [tokenizer.unk_id]
            for t in texts[i : i + batch_size]
        ]
        ids, lengths = right_pad(enc, tokenizer.pad_id)
        mask = (torch.arange(ids.size(1)) < lengths[:, None]).float()
        h = body(ids, attention_mask=mask).last_hidden_state
        feats.append(((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy())
    return np.concatenate(feats)
