"""The chapter-5 ablation builder: variants trained alike, resumable, active parameters."""

from __future__ import annotations

import json

import pytest

from llmbook.experiments import ablation as AB
from llmbook.experiments import artifacts as A
from llmbook.models.gpt import GPT, GPTConfig

TINY = """
kind = "ablation"
module = "llmbook.experiments.ablation"
title = "测试消融"
chapter = "5.5"
output = "data/results/abl"
workers = 1
curve_every = 2
[model]
block_size = 16
n_layer = 1
n_head = 2
n_embd = 16
[train]
max_steps = 4
batch_size = 2
block_size = 16
warmup_steps = 1
eval_interval = 2
eval_batches = 1
ckpt_interval = 2
[[variants]]
name = "gpt2"
[[variants]]
name = "llama"
label = "llama 预设"
set = { pos = "rope", norm = "rmsnorm", mlp = "swiglu", bias = false, n_kv_head = 1 }
"""


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    (tmp_path / "configs" / "artifacts").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(A, "ROOT", tmp_path)
    monkeypatch.setattr(A, "CONFIG_DIR", tmp_path / "configs" / "artifacts")
    monkeypatch.setattr(A, "RUNS_DIR", tmp_path / "runs" / "artifacts")
    monkeypatch.setattr("llmbook.data.registry.write_manifest", lambda: 0)
    (tmp_path / "configs" / "artifacts" / "abl.toml").write_text(TINY, encoding="utf-8")
    return tmp_path


def test_ablation_trains_every_variant_alike_and_resumes(sandbox, monkeypatch):
    card = A.build("abl", threads=1)
    table = json.loads((sandbox / "data/results/abl/ablation.json").read_text("utf-8"))
    rows = {r["name"]: r for r in table["variants"]}
    assert list(rows) == ["gpt2", "llama"]
    assert {r["tokens_seen"] for r in rows.values()} == {4 * 2 * 16}
    assert rows["llama"]["config"]["pos"] == "rope" and rows["gpt2"]["config"]["pos"] == "learned"
    assert rows["llama"]["label"] == "llama 预设" and rows["gpt2"]["label"] == "gpt2"
    assert [c["step"] for c in rows["gpt2"]["curve"]] == [2, 4]
    assert card["metrics"]["llama_valid_bpc"] == round(rows["llama"]["valid_bpc"], 4)
    # learned positions are counted as embedding parameters, RoPE has none
    g = rows["gpt2"]
    assert g["non_embedding_parameters"] < g["parameters"] - 16 * 16
    with pytest.raises(FileExistsError, match="--resume"):
        A.build("abl", threads=1)
    trained: list[str] = []
    monkeypatch.setattr(AB, "train_variant", lambda name, *a: trained.append(name))
    A.build("abl", resume=True, threads=1)
    assert trained == []  # both variants were finished: nothing retrained


def test_active_parameters_of_moe_match_the_dense_model():
    """4 experts of half width, top-2: one token uses as many MLP weights as the dense SwiGLU."""
    dense = GPT(GPTConfig.llama(vocab_size=50, n_embd=48, n_head=4, block_size=8))
    hidden = dense.config.ffn_hidden  # 8·48/3 = 128
    assert hidden == 128
    moe = GPT(
        GPTConfig.llama(
            vocab_size=50,
            n_embd=48,
            n_head=4,
            block_size=8,
            n_experts=4,
            moe_top_k=2,
            moe_hidden=hidden // 2,
        )
    )
    n_dense = sum(p.numel() for p in dense.parameters())
    router = moe.config.n_layer * 48 * 4
    active = AB._active_parameters(moe)
    assert active < sum(p.numel() for p in moe.parameters())
    assert active == n_dense + router
    assert AB._active_parameters(dense) == n_dense


def test_ablation_without_variants_is_rejected(sandbox):
    path = sandbox / "configs" / "artifacts" / "abl.toml"
    path.write_text(TINY.split("[[variants]]")[0], encoding="utf-8")
    with pytest.raises(ValueError, match="variants"):
        A.build("abl", threads=1)


def test_throughput_of_configs_measures_every_config():
    tiny = dict(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16)
    tps = AB.throughput_of_configs(
        {"gpt2": tiny, "llama": GPTConfig.llama(**tiny)},
        batch_size=2,
        block_size=8,
        steps=1,
        rounds=1,
    )
    assert set(tps) == {"gpt2", "llama"} and all(v > 0 for v in tps.values())
    with pytest.raises(ValueError, match="at least one"):
        AB.throughput_of_configs({})
