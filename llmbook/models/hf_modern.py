r"""Hugging Face ``transformers`` ↔ the book's GPT with the modern switches.

**The modern block** (``pos="rope"``, ``norm="rmsnorm"``, ``mlp="swiglu"``, any
``n_kv_head``) maps onto the Llama family; :func:`hf_family` names the class for a config
and explains the combinations no class expresses:

=======================================  ====================================  =============
book switches                            Hugging Face class                    biases
=======================================  ====================================  =============
dense                                    ``LlamaForCausalLM``                  yes or no
dense, ``qk_norm``                       ``Qwen3ForCausalLM``                  no
MoE (``moe_norm_topk``)                  ``MixtralForCausalLM``                no
MoE, ``qk_norm``                         ``Qwen3MoeForCausalLM``               no
MoE, ``moe_shared_expert``               ``Qwen2MoeForCausalLM``               no
=======================================  ====================================  =============

Not expressible: learned positions, LayerNorm or GELU together with any modern switch
(and GQA, QK-norm or MoE on GPT-2); biases with QK-norm or MoE; MoE with QK-norm *and* a
shared expert; MoE without QK-norm, without a shared expert and without renormalised
top-k weights.  The conventions: the fused ``c_attn`` is split into ``q_proj``,
``k_proj``, ``v_proj``; SwiGLU's ``c_gate``/``c_fc``/``c_proj`` are
``gate_proj``/``up_proj``/``down_proj``; the experts are stacked into the 3-D
``gate_up_proj`` (gate rows, then up rows) and ``down_proj`` of ``transformers`` 5;
Qwen2-MoE gates its shared expert by ``sigmoid(w·x)``, which the export sets to
:math:`\tfrac12` (``w = 0``) with the expert's output matrix doubled.  RoPE needs no
conversion: the book rotates the pairs ``(x_i, x_{i+D/2})`` as ``transformers`` does
(:mod:`llmbook.models.modern`).  Dropout is copied to ``attention_dropout``, so models
with dropout agree in eval mode only.

GPT-2 (the default switches) is converted by :mod:`llmbook.models.hf`, whose
:func:`~llmbook.models.hf.to_hf` and :func:`~llmbook.models.hf.from_hf` call this module
for every other model.
"""

from __future__ import annotations

from typing import Any

import torch

from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.modern import swiglu_hidden

__all__ = [
    "HF_CLASSES",
    "hf_family",
    "modern_hf_config",
    "to_hf_modern",
    "from_hf_modern",
    "hf_sizes",
    "SWIGLU_NAMES",
]


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError(
            "llmbook.models.hf needs the transformers package: pip install 'llmbook[hf]' "
            "(or pip install transformers)"
        ) from e
    return transformers


#: ``transformers`` class of each family :func:`hf_family` can name
HF_CLASSES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "qwen2_moe": "Qwen2MoeForCausalLM",
}


def hf_family(config: GPTConfig) -> str:
    """The ``transformers`` model type that computes the same function as ``config``.

    Raises ``ValueError`` saying why when no class of ``transformers`` can express it.
    """
    c = config
    switches = (c.pos, c.norm, c.mlp)
    if switches == ("learned", "layernorm", "gelu"):
        if c.kv_heads != c.n_head or c.qk_norm or c.n_experts or c.ffn_hidden != 4 * c.n_embd:
            raise ValueError(
                "GPT2LMHeadModel has neither GQA, QK-norm nor experts, and its MLP is 4·n_embd "
                "wide; use the modern switches (GPTConfig.llama) for those"
            )
        return "gpt2"
    if switches != ("rope", "rmsnorm", "swiglu"):
        raise ValueError(
            f"pos={c.pos!r}, norm={c.norm!r}, mlp={c.mlp!r} has no Hugging Face equivalent: "
            "GPT-2 needs learned/layernorm/gelu, the Llama family rope/rmsnorm/swiglu"
        )
    if not c.n_experts:
        if c.qk_norm and c.bias:
            raise ValueError("Qwen3 (QK-norm) has no MLP biases: use bias=False")
        return "qwen3" if c.qk_norm else "llama"
    if c.bias:
        raise ValueError("the MoE classes of transformers have no biases: use bias=False")
    if c.moe_shared_expert:
        if c.qk_norm:
            raise ValueError("no transformers MoE class has both QK-norm and a shared expert")
        return "qwen2_moe"
    if c.qk_norm:
        return "qwen3_moe"
    if not c.moe_norm_topk:
        raise ValueError(
            "Mixtral always renormalises the top-k router weights: use moe_norm_topk=True "
            "(or qk_norm=True for Qwen3-MoE)"
        )
    return "mixtral"


#: config fields of the Llama family -> GPTConfig fields (or properties) with the same meaning
LLAMA_NAMES = {
    "vocab_size": "vocab_size",
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "num_key_value_heads": "kv_heads",
    "head_dim": "head_dim",
    "max_position_embeddings": "block_size",
    "rms_norm_eps": "norm_eps",
    "rope_theta": "rope_theta",
    "tie_word_embeddings": "tie_weights",
    "attention_dropout": "dropout",
}


def modern_hf_config(config: GPTConfig, **extra: Any) -> Any:
    """The ``transformers`` config (``LlamaConfig``, ``Qwen3Config`` …) of a modern GPT."""
    transformers = _require_transformers()
    c = config
    family = hf_family(c)
    if family == "gpt2":
        raise ValueError("a GPT-2 config: use llmbook.models.hf.hf_config")
    ids = {k: extra.pop(k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    expert = c.moe_hidden or c.ffn_hidden
    kw: dict[str, Any] = {theirs: getattr(c, ours) for theirs, ours in LLAMA_NAMES.items()}
    kw.update(intermediate_size=expert if family == "mixtral" else c.ffn_hidden, hidden_act="silu")
    if family == "llama":
        kw.update(attention_bias=c.bias, mlp_bias=c.bias)
    if c.n_experts:
        n = "num_local_experts" if family == "mixtral" else "num_experts"
        kw.update({n: c.n_experts, "num_experts_per_tok": c.moe_top_k})
        kw.update(router_aux_loss_coef=c.moe_aux_coef)
    if family in ("qwen3_moe", "qwen2_moe"):
        kw.update(moe_intermediate_size=expert, norm_topk_prob=c.moe_norm_topk)
    if family == "qwen2_moe":
        kw.update(shared_expert_intermediate_size=expert, qkv_bias=False)
    config_cls = getattr(transformers, HF_CLASSES[family].replace("ForCausalLM", "Config"))
    return config_cls(**kw, **ids, **extra)


#: the SwiGLU matrices: book name -> Llama name
SWIGLU_NAMES = (("c_gate", "gate_proj"), ("c_fc", "up_proj"), ("c_proj", "down_proj"))


def _one_to_one(cfg: GPTConfig) -> list[tuple[str, str]]:
    """``(book name, HF name)`` of every tensor that is copied as it is."""
    pairs = [("wte.weight", "model.embed_tokens.weight"), ("ln_f.weight", "model.norm.weight")]
    kinds = ("weight", "bias") if cfg.bias else ("weight",)
    for i in range(cfg.n_layer):
        b, h = f"blocks.{i}.", f"model.layers.{i}."
        pairs += [(b + "ln_1.weight", h + "input_layernorm.weight")]
        pairs += [(b + "ln_2.weight", h + "post_attention_layernorm.weight")]
        pairs += [(b + f"attn.c_proj.{k}", h + f"self_attn.o_proj.{k}") for k in kinds]
        if cfg.qk_norm:
            pairs += [
                (b + f"attn.{n}.weight", h + f"self_attn.{n}.weight") for n in ("q_norm", "k_norm")
            ]
        if not cfg.n_experts:
            pairs += [
                (b + f"mlp.{o}.{k}", h + f"mlp.{t}.{k}") for o, t in SWIGLU_NAMES for k in kinds
            ]
            continue
        pairs.append((b + "mlp.router.weight", h + "mlp.gate.weight"))
        if cfg.moe_shared_expert:  # the down matrix is not 1:1 (see to_hf_modern)
            pairs += [
                (b + f"mlp.shared.{o}.weight", h + f"mlp.shared_expert.{t}.weight")
                for o, t in SWIGLU_NAMES[:2]
            ]
    return pairs


def _hf_class(family: str) -> Any:
    transformers = _require_transformers()
    return getattr(transformers, HF_CLASSES[family])


def to_hf_modern(model: GPT, **config_extra: Any) -> Any:
    """The modern GPT as the Llama-family model :func:`hf_family` names (same logits)."""
    cfg = model.config
    family = hf_family(cfg)
    src = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    new = {theirs: src[ours] for ours, theirs in _one_to_one(cfg)}
    new["lm_head.weight"] = src["lm_head.weight"]  # the same tensor as wte when tied
    q, kv = cfg.n_embd, cfg.kv_heads * cfg.head_dim
    for i in range(cfg.n_layer):
        b, h = f"blocks.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            # the fused projection c_attn holds the rows of W_Q, then W_K, then W_V
            parts = src[b + f"attn.c_attn.{kind}"].split([q, kv, kv])
            for name, part in zip(("q_proj", "k_proj", "v_proj"), parts, strict=True):
                new[h + f"self_attn.{name}.{kind}"] = part
        if cfg.n_experts:
            e = [f"{b}mlp.experts.{j}." for j in range(cfg.n_experts)]
            new[h + "mlp.experts.gate_up_proj"] = torch.stack(
                [torch.cat([src[x + "c_gate.weight"], src[x + "c_fc.weight"]]) for x in e]
            )
            new[h + "mlp.experts.down_proj"] = torch.stack([src[x + "c_proj.weight"] for x in e])
        if cfg.moe_shared_expert:  # Qwen2-MoE: sigmoid(0) = 1/2 times twice the output
            new[h + "mlp.shared_expert.down_proj.weight"] = 2 * src[b + "mlp.shared.c_proj.weight"]
            new[h + "mlp.shared_expert_gate.weight"] = torch.zeros(1, cfg.n_embd)
    hf = _hf_class(family)(modern_hf_config(cfg, **config_extra))
    expected = set(hf.state_dict())
    if set(new) != expected:  # e.g. an older transformers with another expert layout
        raise RuntimeError(
            f"{HF_CLASSES[family]} of this transformers version has other parameters "
            f"(missing {sorted(expected - set(new))[:3]}, extra {sorted(set(new) - expected)[:3]});"
            " the MoE export needs transformers >= 5"
        )
    hf.load_state_dict(new)
    return hf.eval()


def _rope(c: Any) -> tuple[float, str]:
    """``(rope_theta, rope_type)`` of a config of transformers 4 or 5."""
    params = getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None) or {}
    theta = params.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    return float(theta), str(params.get("rope_type", params.get("type", "default")))


def hf_sizes(c: Any) -> dict[str, Any]:
    """The size fields of :class:`GPTConfig` from any ``transformers`` config.

    Every config answers to the standard names (GPT-2's ``n_embd`` also as
    ``hidden_size``, through its ``attribute_map``).
    """
    return dict(
        vocab_size=c.vocab_size,
        block_size=c.max_position_embeddings,
        n_layer=c.num_hidden_layers,
        n_head=c.num_attention_heads,
        n_embd=c.hidden_size,
    )


def _modern_config(c: Any) -> GPTConfig:
    family = c.model_type
    if family not in HF_CLASSES:
        raise ValueError(
            f"cannot convert model_type {family!r}; the book's GPT converts {sorted(HF_CLASSES)}"
        )
    theta, rope_type = _rope(c)
    moe = family in ("mixtral", "qwen3_moe", "qwen2_moe")
    problems = []
    if c.hidden_act != "silu":
        problems.append(f"hidden_act={c.hidden_act!r} (book: silu)")
    if getattr(c, "head_dim", None) not in (None, c.hidden_size // c.num_attention_heads):
        problems.append(f"head_dim={c.head_dim} (book: hidden_size // num_attention_heads)")
    if rope_type != "default":
        problems.append(f"rope_type={rope_type!r} (book: plain RoPE)")
    if getattr(c, "use_sliding_window", False) or (family == "mixtral" and c.sliding_window):
        problems.append("sliding-window attention")
    bias = bool(getattr(c, "attention_bias", False) or getattr(c, "qkv_bias", False))
    if family == "llama" and c.mlp_bias != c.attention_bias:
        problems.append("attention_bias != mlp_bias (book: one bias switch)")
    elif family != "llama" and bias:
        problems.append("attention biases (book: only with dense, non-QK-norm Llama)")
    if moe and (getattr(c, "mlp_only_layers", None) or getattr(c, "decoder_sparse_step", 1) != 1):
        problems.append("dense layers between the MoE layers (book: MoE in every block)")
    if getattr(c, "router_jitter_noise", 0.0):
        problems.append("router_jitter_noise")
    expert = c.intermediate_size if family == "mixtral" else getattr(c, "moe_intermediate_size", 0)
    if family == "qwen2_moe" and c.shared_expert_intermediate_size != expert:
        problems.append("a shared expert of another width than the experts")
    if problems:
        raise ValueError(
            f"cannot convert this {family} model to the book's GPT: " + "; ".join(problems)
        )
    ffn = None if family == "mixtral" else c.intermediate_size
    cfg = GPTConfig(
        **hf_sizes(c),
        dropout=float(c.attention_dropout),
        bias=bias,
        tie_weights=bool(c.tie_word_embeddings),
        pos="rope",
        rope_theta=theta,
        norm="rmsnorm",
        norm_eps=float(c.rms_norm_eps),
        mlp="swiglu",
        mlp_hidden=None if ffn in (None, swiglu_hidden(c.hidden_size)) else ffn,
        n_kv_head=None if c.num_key_value_heads == c.num_attention_heads else c.num_key_value_heads,
        qk_norm=family in ("qwen3", "qwen3_moe"),
    )
    if not moe:
        return cfg
    return GPTConfig.from_dict(
        cfg.to_dict()
        | dict(
            n_experts=getattr(c, "num_local_experts", None) or c.num_experts,
            moe_top_k=c.num_experts_per_tok,
            moe_aux_coef=float(c.router_aux_loss_coef),
            moe_shared_expert=family == "qwen2_moe",
            moe_hidden=None if expert == cfg.ffn_hidden else expert,
            moe_norm_topk=bool(getattr(c, "norm_topk_prob", True)),
        )
    )


def from_hf_modern(hf_model: Any) -> GPT:
    """A Llama-family ``transformers`` model as the book's GPT (same logits)."""
    cfg = _modern_config(hf_model.config)
    sd = {k: v.detach().float().cpu() for k, v in hf_model.state_dict().items()}
    new = {ours: sd[theirs] for ours, theirs in _one_to_one(cfg)}
    new["lm_head.weight"] = new["wte.weight"] if cfg.tie_weights else sd["lm_head.weight"]
    for i in range(cfg.n_layer):
        b, h = f"blocks.{i}.", f"model.layers.{i}."
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            parts = [sd[h + f"self_attn.{n}_proj.{kind}"] for n in "qkv"]
            new[b + f"attn.c_attn.{kind}"] = torch.cat(parts)
        for j in range(cfg.n_experts):
            x = f"{b}mlp.experts.{j}."
            gate, up = sd[h + "mlp.experts.gate_up_proj"][j].chunk(2)
            new[x + "c_gate.weight"], new[x + "c_fc.weight"] = gate, up
            new[x + "c_proj.weight"] = sd[h + "mlp.experts.down_proj"][j]
        if cfg.moe_shared_expert:
            if torch.any(sd[h + "mlp.shared_expert_gate.weight"] != 0):
                raise ValueError(
                    "this Qwen2-MoE gates its shared expert by the input; the book's shared "
                    "expert is ungated (only a zero gate converts)"
                )
            new[b + "mlp.shared.c_proj.weight"] = sd[h + "mlp.shared_expert.down_proj.weight"] / 2
    model = GPT(cfg)
    model.load_state_dict(new)
    return model.eval()
