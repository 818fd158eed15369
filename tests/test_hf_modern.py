"""The modern GPT against Hugging Face: Llama, Qwen3, Mixtral, Qwen3-MoE and Qwen2-MoE.

For every combination of switches a ``transformers`` class can express: export, the
logits agree to 1e-4 on random weights, converting back gives the same config and
weights, greedy generation (the book's, with its GQA KV cache, against ``generate``)
produces the same tokens, and ``save_pretrained`` / ``from_pretrained`` round-trips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_gpt

transformers = pytest.importorskip("transformers")

from llmbook.generation.decoding import generate  # noqa: E402
from llmbook.models.gpt import GPT, GPTConfig  # noqa: E402
from llmbook.models.hf import from_hf, hf_family, to_hf  # noqa: E402
from llmbook.models.modern import load_balancing_loss  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

V, T = 40, 12
BASE = dict(vocab_size=V, block_size=T, n_layer=2, n_head=4, n_embd=32)
#: every combination the HF classes express: (switches over the llama preset, class)
COMBOS: dict[str, tuple[dict[str, Any], str]] = {
    "llama-gqa": ({}, "LlamaForCausalLM"),
    "llama-mha-bias-untied": (
        dict(n_kv_head=None, bias=True, tie_weights=False),
        "LlamaForCausalLM",
    ),
    "llama-mqa-theta": (dict(n_kv_head=1, rope_theta=500.0, mlp_hidden=40), "LlamaForCausalLM"),
    "qwen3-qk_norm": (dict(qk_norm=True, tie_weights=False), "Qwen3ForCausalLM"),
    "mixtral-moe": (dict(n_experts=4, moe_top_k=2), "MixtralForCausalLM"),
    "qwen3_moe-qk_norm": (
        dict(n_experts=4, moe_top_k=2, qk_norm=True, moe_hidden=24),
        "Qwen3MoeForCausalLM",
    ),
    "qwen3_moe-unnormalised": (
        dict(n_experts=3, moe_top_k=2, qk_norm=True, moe_norm_topk=False),
        "Qwen3MoeForCausalLM",
    ),
    "qwen2_moe-shared": (
        dict(n_experts=4, moe_top_k=1, moe_shared_expert=True, moe_norm_topk=False),
        "Qwen2MoeForCausalLM",
    ),
}


#: the sizes of BASE in the names of transformers (layers are set per test)
HF_SMALL = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_attention_heads=4)
HF_SMALL |= dict(max_position_embeddings=T)


def book_model(name: str) -> GPT:
    """Random weights: every weight, gain and router moved off its initial value.

    Large enough for peaky next-token distributions that change from step to step, so
    that generation tests see varied tokens rather than one token repeated.
    """
    return tiny_gpt(noise=0.3, **(GPTConfig.llama(**BASE).to_dict() | COMBOS[name][0]))


def _ids(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(seed))


def _logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)[0] if isinstance(model, GPT) else model(x).logits


@pytest.mark.parametrize("name", COMBOS)
def test_logits_agree_both_ways(name: str) -> None:
    model = book_model(name)
    hf = to_hf(model)
    assert type(hf).__name__ == COMBOS[name][1] and not hf.training
    assert hf.config.num_key_value_heads == model.config.kv_heads
    x = _ids()
    ours = _logits(model, x)
    torch.testing.assert_close(_logits(hf, x), ours, rtol=1e-4, atol=1e-4)
    back = from_hf(hf)
    assert back.config == model.config
    for k, v in model.state_dict().items():  # the same numbers, not just the same logits
        torch.testing.assert_close(back.state_dict()[k], v, rtol=0, atol=0, msg=k)
    tied = hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    assert tied == model.config.tie_weights


@pytest.mark.parametrize("name", COMBOS)
def test_greedy_generation_identical(name: str) -> None:
    model = book_model(name)
    hf = to_hf(model)
    prompt = _ids(2)[:, :3]
    ours = generate(model, prompt, 8)  # the book's loop with its (GQA) KV cache
    theirs = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=0,
    )
    assert ours.tolist() == theirs.tolist()
    assert len(set(ours[:, 3:].flatten().tolist())) > 4  # not one token repeated


@pytest.mark.parametrize(
    "name", ["llama-gqa", "qwen3-qk_norm", "qwen3_moe-qk_norm", "qwen2_moe-shared"]
)
def test_save_pretrained_from_pretrained_round_trip(name: str, tmp_path: Path) -> None:
    model = book_model(name)
    to_hf(model).save_pretrained(tmp_path / "hf")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(loaded).__name__ == COMBOS[name][1]
    x = _ids()
    torch.testing.assert_close(_logits(loaded, x), _logits(model, x), rtol=1e-4, atol=1e-4)
    back = from_hf(loaded)
    assert back.config == model.config
    torch.testing.assert_close(_logits(back, x), _logits(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cls, kw",
    [
        ("LlamaForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
        ("Qwen3ForCausalLM", dict(num_key_value_heads=1, head_dim=8)),
        ("MixtralForCausalLM", dict(num_local_experts=4, num_key_value_heads=2)),
        (
            "Qwen3MoeForCausalLM",
            dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16),
        ),
    ],
)
def test_models_initialised_by_transformers_convert(cls: str, kw: dict[str, Any]) -> None:
    config_cls = getattr(transformers, cls.replace("ForCausalLM", "Config"))
    config = config_cls(**HF_SMALL, num_hidden_layers=2, bos_token_id=None, eos_token_id=None, **kw)
    torch.manual_seed(0)
    hf = getattr(transformers, cls)(config).eval()
    with torch.no_grad():  # HF initialises norm gains to 1 and (Qwen) routers to 0
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = _ids()
    ours = from_hf(hf)
    assert hf_family(ours.config) == config.model_type
    torch.testing.assert_close(_logits(ours, x), _logits(hf, x), rtol=1e-4, atol=1e-4)


def test_the_aux_loss_is_the_one_of_transformers() -> None:
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    logits = torch.randn(64, 4)
    probs = logits.softmax(-1)
    ours = load_balancing_loss(probs, probs.topk(2, -1).indices, 4)
    torch.testing.assert_close(ours, load_balancing_loss_func((logits,), 4, 2))
    model = tiny_gpt(
        noise=0.1, **(GPTConfig.llama(**BASE).to_dict() | dict(n_layer=1, n_experts=4))
    )
    hf = to_hf(model)
    x = _ids()
    with torch.no_grad():
        model(x)
        out = hf(x, output_router_logits=True)
    torch.testing.assert_close(model.aux_loss(), out.aux_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(norm="layernorm"), r"norm='layernorm'.*has no Hugging Face equivalent"),
        (dict(pos="learned"), "has no Hugging Face equivalent"),
        (dict(qk_norm=True, bias=True), "Qwen3 .* has no MLP biases"),
        (dict(n_experts=2, bias=True), "MoE classes of transformers have no biases"),
        (dict(n_experts=2, qk_norm=True, moe_shared_expert=True), "both QK-norm and a shared"),
        (dict(n_experts=2, moe_norm_topk=False), "Mixtral always renormalises"),
    ],
)
def test_combinations_no_class_expresses_are_named(kw: dict[str, Any], match: str) -> None:
    model = GPT(GPTConfig.llama(**(BASE | kw)))
    with pytest.raises(ValueError, match=match):
        to_hf(model)


def test_gpt2_with_modern_attention_is_not_expressible() -> None:
    for kw in (dict(n_kv_head=2), dict(qk_norm=True), dict(n_experts=2)):
        with pytest.raises(ValueError, match="GPT2LMHeadModel has neither GQA"):
            hf_family(GPTConfig(**(BASE | kw)))


def test_unsupported_hf_settings_are_rejected() -> None:
    small = HF_SMALL | dict(num_hidden_layers=1)
    cases = [
        (transformers.LlamaConfig(**small, hidden_act="gelu"), "hidden_act='gelu'"),
        (
            transformers.LlamaConfig(**small, rope_parameters=dict(rope_type="linear", factor=2.0)),
            "rope_type='linear'",
        ),
        (transformers.LlamaConfig(**small, attention_bias=True), "attention_bias != mlp_bias"),
        (transformers.MixtralConfig(**small, router_jitter_noise=0.1), "router_jitter_noise"),
    ]
    for config, match in cases:
        hf = getattr(transformers, type(config).__name__.replace("Config", "ForCausalLM"))(config)
        with pytest.raises(ValueError, match=match):
            from_hf(hf)
    hf = to_hf(book_model("qwen2_moe-shared"))
    with torch.no_grad():
        hf.model.layers[0].mlp.shared_expert_gate.weight.normal_()
    with pytest.raises(ValueError, match="gates its shared expert by the input"):
        from_hf(hf)
