"""The GPT's modern switches: RoPE, RMSNorm, SwiGLU, GQA/MQA, QK-norm and MoE.

Every switch (and the llama preset, and everything at once) is checked for causality, KV
cache equality with the uncached forward, checkpoint round trips, LoRA, the trainer and
DDP; the defaults are checked to still be GPT-2, so that the shipped checkpoints (whose
config.json predates the switches) compute exactly what they computed before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from conftest import TINY, tiny_gpt
from safetensors.torch import load_file, save_file
from test_ddp import _data, _free_port  # the same corpus (V = 24) and port helper

from llmbook.data import registry
from llmbook.generation.decoding import generate
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.lora import LoRALinear, apply_lora, lora_parameters, merge_lora
from llmbook.models.modern import (
    MoE,
    RMSNorm,
    SwiGLU,
    apply_rope,
    load_balancing_loss,
    rope_tables,
    swiglu_hidden,
)
from llmbook.models.positional import RotaryEmbedding
from llmbook.training.checkpoint import load_checkpoint, save_checkpoint
from llmbook.training.distributed import setup_distributed
from llmbook.training.trainer import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

V = 24
LLAMA = GPTConfig.llama(**TINY).to_dict()  # TINY: vocab 24, block 16, 1 layer, 2 heads, C=16
#: one config per switch on GPT-2, the llama preset, and everything at once
SWITCHES: dict[str, dict[str, Any]] = {
    "gpt2": {},
    "rope": dict(pos="rope"),
    "rmsnorm": dict(norm="rmsnorm"),
    "swiglu": dict(mlp="swiglu"),
    "gqa": dict(n_head=4, n_kv_head=2),
    "mqa": dict(n_head=4, n_kv_head=1),
    "qk_norm": dict(qk_norm=True),
    "moe": dict(n_experts=4, moe_top_k=2),
    "moe_shared": dict(n_experts=3, moe_top_k=1, moe_shared_expert=True, moe_hidden=8),
    "llama": LLAMA,
    "everything": LLAMA
    | dict(n_layer=2, n_head=4, n_kv_head=2, qk_norm=True, n_experts=4, moe_shared_expert=True),
}


def model_for(name: str, **extra: Any) -> GPT:
    """A seeded tiny GPT with the switch ``name``; noisy weights (RMSNorm gains ≠ 1 etc.)."""
    return tiny_gpt(noise=0.05, **(SWITCHES[name] | extra))


def _ids(n: int = 2, t: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (n, t), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------ config
def test_defaults_are_gpt2_and_the_preset_turns_the_modern_set_on() -> None:
    c = GPTConfig()
    assert (c.pos, c.norm, c.mlp, c.kv_heads, c.qk_norm, c.n_experts) == (
        "learned",
        "layernorm",
        "gelu",
        c.n_head,
        False,
        0,
    )
    assert c.ffn_hidden == 4 * c.n_embd and c.bias and c.tie_weights
    m = GPT(GPTConfig(**TINY))  # the GPT-2 parameter names, nothing else
    assert [n for n, _ in m.named_parameters()] == [
        "wte.weight",
        "wpe.weight",
        "blocks.0.ln_1.weight",
        "blocks.0.ln_1.bias",
        "blocks.0.attn.c_attn.weight",
        "blocks.0.attn.c_attn.bias",
        "blocks.0.attn.c_proj.weight",
        "blocks.0.attn.c_proj.bias",
        "blocks.0.ln_2.weight",
        "blocks.0.ln_2.bias",
        "blocks.0.mlp.c_fc.weight",
        "blocks.0.mlp.c_fc.bias",
        "blocks.0.mlp.c_proj.weight",
        "blocks.0.mlp.c_proj.bias",
        "ln_f.weight",
        "ln_f.bias",
    ]
    ll = GPTConfig.llama(n_head=8, n_embd=64)
    assert (ll.pos, ll.norm, ll.mlp, ll.kv_heads, ll.bias) == (
        "rope",
        "rmsnorm",
        "swiglu",
        4,
        False,
    )
    assert GPTConfig.llama(n_kv_head=1).kv_heads == 1  # overrides win
    assert GPTConfig.from_dict(ll.to_dict()) == ll


def test_swiglu_hidden_size_keeps_the_mlp_parameter_count() -> None:
    assert swiglu_hidden(256) == 688 and swiglu_hidden(16) == 48
    assert swiglu_hidden(768) == 2048  # 8·768/3 exactly
    for c in (64, 96, 128, 256):
        gelu, glu = 2 * c * 4 * c, 3 * c * swiglu_hidden(c)
        assert gelu <= glu < gelu + 3 * c * 8  # equal up to the rounding to 8


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_head=4, n_kv_head=3), r"n_head \(4\) must be divisible by n_kv_head \(3\)"),
        (dict(n_kv_head=0), "n_kv_head must be a positive int"),
        (dict(n_experts=2, moe_top_k=3), r"moe_top_k \(3\) must not exceed n_experts \(2\)"),
        (dict(n_experts=2, moe_top_k=0), "moe_top_k must be a positive int"),
        (dict(moe_shared_expert=True), "needs n_experts > 0"),
        (dict(n_experts=-1), "n_experts must be an int >= 0"),
        (dict(moe_aux_coef=-0.1), "moe_aux_coef must be >= 0"),
        (dict(pos="alibi"), r"pos must be one of \('learned', 'rope'\)"),
        (dict(norm="batchnorm"), "norm must be one of"),
        (dict(mlp="relu"), "mlp must be one of"),
        (dict(pos="rope", n_embd=18, n_head=6), "even head size"),
        (dict(mlp_hidden=0), "mlp_hidden must be a positive int"),
        (dict(rope_theta=0.0), "rope_theta and norm_eps must be > 0"),
    ],
)
def test_bad_combinations_are_clear_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kw)


# ------------------------------------------------------------------------ checkpoints
def _gpt2_oracle(state: dict[str, torch.Tensor], c: dict[str, Any], idx: torch.Tensor):  # type: ignore[no-untyped-def]
    """GPT-2's forward from the formulas and the raw tensors (no llmbook model code)."""
    C, H = c["n_embd"], c["n_head"]
    B, T = idx.shape
    x = state["wte.weight"][idx] + state["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(c["n_layer"]):
        p = {k.removeprefix(f"blocks.{i}."): v for k, v in state.items()}
        h = F.layer_norm(x, (C,), p["ln_1.weight"], p["ln_1.bias"], 1e-5)
        q, k, v = F.linear(h, p["attn.c_attn.weight"], p["attn.c_attn.bias"]).split(C, 2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2) / (C // H) ** 0.5).masked_fill(~mask, -torch.inf)
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, p["attn.c_proj.weight"], p["attn.c_proj.bias"])
        h = F.layer_norm(x, (C,), p["ln_2.weight"], p["ln_2.bias"], 1e-5)
        h = F.gelu(F.linear(h, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(h, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])
    x = F.layer_norm(x, (C,), state["ln_f.weight"], state["ln_f.bias"], 1e-5)
    return x @ state["wte.weight"].T


@pytest.mark.parametrize("name", ["gpt-poetry", "gpt-modern", "sentiment-gpt"])
def test_shipped_checkpoints_without_the_new_keys_give_the_same_logits(name: str) -> None:
    path = registry.shipped_checkpoint(name)
    saved = json.loads((path / "config.json").read_text(encoding="utf-8"))["model_config"]
    saved = saved.get("gpt", saved)  # the classifier nests the GPT's config
    assert "pos" not in saved and "n_kv_head" not in saved  # written before the switches
    model, _, _ = load_checkpoint(path)
    gpt = getattr(model, "gpt", model)
    assert gpt.config == GPTConfig(**saved)
    state = {
        k.removeprefix("gpt."): v for k, v in load_file(str(path / "model.safetensors")).items()
    }
    assert set(gpt.state_dict()) - set(state) <= {"lm_head.weight"}  # no new tensors
    idx = torch.randint(0, saved["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            gpt(idx)[0], _gpt2_oracle(state, saved, idx), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("name", SWITCHES)
def test_checkpoint_round_trip(name: str, tmp_path: Path) -> None:
    model = model_for(name)
    save_checkpoint(tmp_path / "c", model)
    loaded, _, _ = load_checkpoint(tmp_path / "c")
    assert isinstance(loaded, GPT) and loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids())[0], model(_ids())[0], rtol=0, atol=0)


# ------------------------------------------------------------------------ forward
@pytest.mark.parametrize("name", SWITCHES)
def test_causal_future_tokens_do_not_change_past_logits(name: str) -> None:
    model = model_for(name)
    a, b = _ids(1, 12), _ids(1, 12, seed=1)
    b[:, :7] = a[:, :7]  # same first 7 tokens, different future
    with torch.no_grad():
        la, lb = model(a)[0], model(b)[0]
    torch.testing.assert_close(la[:, :7], lb[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(la[:, 7:], lb[:, 7:])


@pytest.mark.parametrize("name", SWITCHES)
def test_kv_cache_equals_the_uncached_forward(name: str) -> None:
    model = model_for(name)
    idx = _ids(2, 16)
    with torch.no_grad():
        full = model(idx)[0]
        cache = model.new_cache(2)
        parts, at = [], 0
        for n in (5, 1, 3, 1, 6):  # a prompt, single tokens and chunks after a prefix
            parts.append(model(idx[:, at : at + n], cache=cache)[0])
            at += n
    assert cache.length == 16
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gqa", "mqa", "everything"])
def test_cached_generation_and_beam_search_equal_uncached(name: str) -> None:
    model = model_for(name)
    prompt = _ids(2, 3)
    for strategy in ("greedy", "beam"):
        with_cache = generate(model, prompt, 8, strategy=strategy, num_beams=3)
        without = generate(model, prompt, 8, strategy=strategy, num_beams=3, use_cache=False)
        assert torch.equal(with_cache, without), strategy


@pytest.mark.parametrize("name", ["gqa", "mqa", "qk_norm", "rope"])
def test_attention_maps_spell_out_the_fused_attention(name: str) -> None:
    model = model_for(name)
    idx = _ids(2, 9)
    maps = model.attention_maps(idx)  # the explicit softmax path
    assert maps.shape == (1, 2, model.config.n_head, 9, 9)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 2, model.config.n_head, 9))
    with torch.no_grad():
        spelled = model.lm_head(model.hidden_states(idx, attention=[]))
        torch.testing.assert_close(spelled, model(idx)[0], rtol=1e-5, atol=1e-5)


def test_kv_cache_bytes_fall_by_n_head_over_n_kv_head() -> None:
    sizes = {}
    for kv in (8, 4, 2, 1):  # MHA, GQA, GQA, MQA
        cfg = GPTConfig(n_layer=3, n_head=8, n_embd=64, block_size=32, n_kv_head=kv)
        cache = GPT(cfg).new_cache(batch_size=5)
        assert cache.k[0].shape == (5, kv, 32, 8)
        sizes[kv] = cache.nbytes
        assert sizes[kv] == 2 * 3 * 5 * kv * 32 * 8 * 4  # 2 (K, V) · L · B · H_kv · T · D · fp32
    assert {kv: sizes[8] / sizes[kv] for kv in sizes} == {8: 1, 4: 2, 2: 4, 1: 8}


def test_gqa_shares_each_key_value_head_among_its_query_group() -> None:
    """GQA equals MHA whose key/value heads are copies within every group of query heads."""
    gqa = model_for("gqa")  # 4 query heads, 2 key/value heads, D = 4
    mha = tiny_gpt(n_head=4)
    sd = gqa.state_dict()
    D, C = 4, 16
    for kind in ("weight", "bias"):
        w = sd[f"blocks.0.attn.c_attn.{kind}"]
        q, k, v = w.split([C, 2 * D, 2 * D])
        k, v = (
            t.view(2, D, *t.shape[1:]).repeat_interleave(2, 0).reshape(C, *t.shape[1:])
            for t in (k, v)
        )
        sd[f"blocks.0.attn.c_attn.{kind}"] = torch.cat([q, k, v])
    mha.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(mha(_ids())[0], gqa(_ids())[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ layers
def test_rmsnorm_equals_torch() -> None:
    x = torch.randn(3, 5, 16)
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    expected = F.rms_norm(x, (16,), norm.weight, eps=1e-5)
    torch.testing.assert_close(norm(x), expected, rtol=1e-6, atol=1e-6)


def test_rope_halves_convention_is_the_pairs_convention_permuted() -> None:
    D, T = 8, 10
    x = torch.randn(2, 3, T, D)
    cos, sin = rope_tables(D, T, theta=10000.0)
    perm = torch.cat([torch.arange(0, D, 2), torch.arange(1, D, 2)])  # (0, 2, 4, 6, 1, 3, …)
    pairs = RotaryEmbedding(D, max_len=T)(x)  # chapter 3: pairs (x_2i, x_2i+1)
    halves = apply_rope(x[..., perm], cos, sin)  # here: pairs (x_i, x_i+D/2)
    torch.testing.assert_close(halves, pairs[..., perm], rtol=1e-5, atol=1e-6)


def test_rope_scores_depend_on_the_relative_position_only() -> None:
    D = 8
    q, k = torch.randn(D), torch.randn(D)
    cos, sin = rope_tables(D, 40)

    def score(m: int, n: int) -> float:
        qm = apply_rope(q[None], cos[m : m + 1], sin[m : m + 1])
        kn = apply_rope(k[None], cos[n : n + 1], sin[n : n + 1])
        return float((qm * kn).sum())

    assert score(7, 3) == pytest.approx(score(27, 23), abs=1e-5)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)


def test_moe_equals_a_token_by_token_loop() -> None:
    torch.manual_seed(0)
    moe = MoE(8, 4, 2, lambda: SwiGLU(8, 12), shared=SwiGLU(8, 12))
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        out = moe(x)
        for b in range(2):
            for t in range(5):
                p = moe.router(x[b, t]).softmax(-1)
                w, e = p.topk(2)
                w = w / w.sum()
                want = sum(w[j] * moe.experts[int(e[j])](x[b, t]) for j in range(2))
                want = want + moe.shared(x[b, t])  # type: ignore[misc]
                torch.testing.assert_close(out[b, t], want, rtol=1e-5, atol=1e-6)


def test_load_balancing_loss_formula() -> None:
    E, k, N = 4, 2, 64
    uniform = torch.full((N, E), 1 / E)
    balanced = torch.stack([torch.arange(N) % E, (torch.arange(N) + 1) % E], 1)
    assert float(load_balancing_loss(uniform, balanced, E)) == pytest.approx(k)  # minimum k
    collapsed = torch.tensor([[0.9, 0.1 - 2e-3, 1e-3, 1e-3]]).repeat(N, 1)
    lopsided = torch.tensor([[0, 1]]).repeat(N, 1)
    assert float(load_balancing_loss(collapsed, lopsided, E)) == pytest.approx(4 * (0.9 + 0.098))


def test_training_loss_adds_the_aux_loss_and_eval_loss_does_not() -> None:
    model = model_for("moe", moe_aux_coef=0.5)
    idx = _ids(2, 12)
    with torch.no_grad():
        ce = F.cross_entropy(model(idx)[0].view(-1, V), idx.view(-1))
        assert torch.allclose(model(idx, idx)[1], ce)  # type: ignore[arg-type]
        model.train()
        loss = model(idx, idx)[1]
        assert torch.allclose(loss, ce + 0.5 * model.aux_loss())  # type: ignore[arg-type]
    assert float(model.aux_loss()) > 0
    model(idx, idx)[1].backward()  # type: ignore[union-attr]
    assert all(p.grad is not None for p in model.parameters())  # every expert, the router
    with pytest.raises(RuntimeError, match="n_experts > 0"):
        model_for("llama").aux_loss()


def test_flops_count_only_the_active_experts() -> None:
    dense = tiny_gpt(**(LLAMA | dict(mlp_hidden=12)))
    moe = tiny_gpt(**(LLAMA | dict(mlp_hidden=12, n_experts=4, moe_top_k=1)))
    router = 2 * 4 * 16  # forward FLOPs of the [16 -> 4] router per token
    assert moe.flops_per_token(training=False) == dense.flops_per_token(training=False) + router
    assert moe.num_parameters() == dense.num_parameters() + 3 * 3 * 16 * 12 + 4 * 16
    assert dense.num_parameters(non_embedding=True) == dense.num_parameters() - V * 16


# ------------------------------------------------------------------------ LoRA, trainer
LINEAR = ["c_attn", "c_proj", "c_fc", "c_gate", "router"]


@pytest.mark.parametrize("name", ["swiglu", "gqa", "qk_norm", "moe_shared", "everything"])
def test_lora_wraps_the_new_linear_layers(name: str) -> None:
    model = model_for(name)
    idx = _ids()
    with torch.no_grad():
        before = model(idx)[0]
    names = apply_lora(model, LINEAR, r=2, alpha=4)
    linears = [n for n, m in model_for(name).named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(names) == sorted(n for n in linears if n != "lm_head")
    assert any(n.endswith("c_gate") for n in names) == (model.config.mlp == "swiglu")
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], before)  # B = 0: the same model
        for p in lora_parameters(model):
            p.add_(0.1 * torch.randn_like(p))
        adapted = model(idx)[0]
    assert not torch.allclose(adapted, before)
    assert merge_lora(model) == len(names)
    assert all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], adapted, rtol=1e-5, atol=1e-5)


def _cfg(steps: int, **kw: Any) -> TrainConfig:
    base = dict(batch_size=8, block_size=16, lr=0.5, min_lr=0.05, warmup_steps=0)
    base |= dict(optimizer="sgd", eval_interval=0, eval_batches=1, progress=False)
    return TrainConfig(max_steps=steps, device="cpu", **(base | kw))


@pytest.mark.parametrize("name", SWITCHES)
def test_trainer_trains_every_switch(name: str) -> None:
    model = model_for(name)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    aux: list[float] = []

    def record(_: dict[str, Any]) -> None:
        if model.config.n_experts:
            aux.append(float(model.aux_loss().detach()))

    ids, valid = _data()
    res = train(model, ids, valid, _cfg(4, lr=0.05, optimizer="adamw"), callback=record)
    assert res.steps == 4 and np.isfinite(res.final_val_loss)  # type: ignore[arg-type]
    assert all(np.isfinite(h["train_loss"]) for h in res.history)
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, start[k])]
    assert len(moved) == len(start)  # every tensor trained, each expert and the router too
    assert len(aux) == (4 if model.config.n_experts else 0)


# ------------------------------------------------------------------------ DDP
def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    env = dict(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world, MASTER_PORT=port)
    os.environ.update({k: str(v) for k, v in env.items()}, MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    setup_distributed()
    for coef in (0.0, 0.01):
        res = train(model_for("everything", moe_aux_coef=coef), *_data(), _cfg(3))
        state = {k: v.contiguous() for k, v in res.model.state_dict().items()}
        state.pop("lm_head.weight")
        save_file(state, f"{out}/rank{rank}-{coef}.safetensors")
    dist.destroy_process_group()


def test_ddp_step_of_every_switch_equals_single_process_step(tmp_path: Path) -> None:
    """Two gloo processes, each on half of every batch, take the one-process SGD step.

    ``everything`` has RoPE, RMSNorm, SwiGLU, GQA, QK-norm, experts and a shared expert;
    experts that no token of a half-batch chose still take part (zero gradients), which
    DDP requires.  Each process computes the load-balancing loss of its own half-batch
    (as ``transformers`` does); that loss is not an average over tokens, so only the run
    without it equals one process exactly, and the run with it keeps identical replicas.
    """
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = train(model_for("everything", moe_aux_coef=0.0), *_data(), _cfg(3)).model
    start = model_for("everything").state_dict()
    for coef in (0.0, 0.01):
        r0 = load_file(str(tmp_path / f"rank0-{coef}.safetensors"))
        r1 = load_file(str(tmp_path / f"rank1-{coef}.safetensors"))
        assert all(not torch.equal(r0[k], start[k]) for k in r0)  # every tensor trained
        for k in r0:
            torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0)  # replicas agree
            if coef == 0.0:
                torch.testing.assert_close(r0[k], single.state_dict()[k], rtol=1e-5, atol=1e-5)


def test_server_generates_with_every_switch_on(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from llmbook.serving.server import create_app

    poem = ["春风又绿江南岸，明月何时照我还。\n"]
    model, tok = tiny_gpt(texts=poem, noise=0.05, **(SWITCHES["everything"] | dict(block_size=32)))
    save_checkpoint(tmp_path / "gpt", model, tok)
    with TestClient(create_app(tmp_path / "gpt")) as client:
        r = client.post("/generate", json={"prompt": "春风", "strategy": "greedy"})
    assert r.status_code == 200, r.text
    assert r.json()["text"].startswith("春风") and r.json()["completion"]
