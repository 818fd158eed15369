"""From GPT-2 to Llama, one switch at a time: the chapter-5 ablation (``kind = "ablation"``).

Every variant is the chapter-5 GPT (:class:`llmbook.models.gpt.GPT`) with some of the
modern switches of :class:`~llmbook.models.gpt.GPTConfig` turned on, trained with the
same data (the poem split, character tokens), the same schedule, the same seed and the
same number of tokens.  Variants are independent, so :func:`build_ablation` trains them in
``workers`` processes of one thread each; a finished variant is skipped on ``--resume``
and an interrupted one continues from its last checkpoint.

The config (``configs/artifacts/ch5-ablation.toml``) holds a ``[model]`` table shared by
all variants, a ``[train]`` table and a list of ``[[variants]]``, each with a ``name``, a
Chinese ``label`` and the ``set`` of :class:`GPTConfig` fields it changes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import torch

from llmbook.experiments.artifacts import Artifact, BuildContext, builder, poem_char_data
from llmbook.models.gpt import GPT

__all__ = ["build_ablation", "throughput_of_configs", "train_variant"]

GPTConfigLike = Any  # a GPTConfig or a dict of its fields


def train_variant(
    name: str,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    run_dir: str,
    resume: bool,
    curve_every: int,
) -> dict[str, Any]:
    """Train one variant on one thread; write and return its metrics (``run_dir/NAME.json``)."""
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models.gpt import GPTConfig
    from llmbook.training.trainer import TrainConfig, train
    from llmbook.utils import count_parameters

    torch.set_num_threads(1)
    out = Path(run_dir)
    tok, train_ids, valid_ids, texts = poem_char_data()
    seed = int(train_cfg.get("seed", 0))
    torch.manual_seed(seed)
    mconf = GPTConfig.from_dict({**model_cfg, "vocab_size": tok.vocab_size})
    model = GPT(mconf)
    tcfg = TrainConfig.from_dict(
        {**train_cfg, "out_dir": str(out / name), "resume": resume, "progress": False}
    )
    curve_path = out / f"{name}.curve.json"
    curve: list[dict[str, Any]] = (
        json.loads(curve_path.read_text(encoding="utf-8")) if resume and curve_path.exists() else []
    )
    first = True

    def on_step(rec: dict[str, Any]) -> None:
        nonlocal first, curve
        step = int(rec["step"])
        if first:
            curve = [c for c in curve if c["step"] < step]
            first = False
        if step % curve_every == 0 or step == tcfg.max_steps:
            bpc = bits_per_char(model, tok, texts["valid"])
            model.train()
            curve.append({"step": step, "valid_bpc": bpc, "train_loss": float(rec["train_loss"])})
            curve_path.write_text(json.dumps(curve), encoding="utf-8")
            print(f"ablation {name} step {step}: valid bpc {bpc:.3f}", flush=True)

    t0 = time.perf_counter()
    result = train(model, train_ids, valid_ids, tcfg, callback=on_step, tokenizer=tok)
    trained = model  # trained in place (result.model is this model, in eval mode)
    trained.eval()
    n_params = count_parameters(trained)
    c = mconf
    wpe = c.block_size * c.n_embd if c.pos == "learned" else 0
    metrics: dict[str, Any] = {
        "name": name,
        "config": {k: v for k, v in mconf.to_dict().items() if k != "vocab_size"},
        "parameters": n_params,
        "active_parameters": _active_parameters(trained),
        "non_embedding_parameters": n_params - c.vocab_size * c.n_embd - wpe,
        "steps": result.steps,
        "tokens_seen": result.steps * tcfg.tokens_per_step,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": time.perf_counter() - t0,
        "valid_bpc": bits_per_char(trained, tok, texts["valid"]),
        "test_bpc": bits_per_char(trained, tok, texts["test"]),
        "curve": curve,
    }
    (out / f"{name}.json").write_text(json.dumps(metrics, ensure_ascii=False), encoding="utf-8")
    return metrics


def _active_parameters(model: GPT) -> int:
    """Parameters one token uses: an MoE layer counts only ``top_k`` of its experts."""
    cfg = model.config
    total = sum(p.numel() for p in model.parameters())
    if not cfg.n_experts:
        return int(total)
    unused = 0
    for mod in model.modules():
        experts = getattr(mod, "experts", None)
        if isinstance(experts, torch.nn.ModuleList) and len(experts) == cfg.n_experts:
            per_expert = sum(p.numel() for p in experts[0].parameters())
            unused += (cfg.n_experts - cfg.moe_top_k) * per_expert
    return int(total - unused)


@builder("ablation")
def build_ablation(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    cfg = art.config
    variants: list[dict[str, Any]] = cfg.get("variants", [])
    if not variants or any("name" not in v for v in variants):
        raise ValueError(f"{art.config_path}: an ablation needs [[variants]] each with a name")
    base = dict(cfg.get("model", {}))
    train_cfg = dict(cfg["train"])
    every = int(cfg.get("curve_every", 250))
    workers = max(1, min(int(cfg.get("workers", 1)), ctx.threads, len(variants)))
    run_dir = ctx.run_dir / "variants"
    run_dir.mkdir(parents=True, exist_ok=True)
    todo = [v for v in variants if not (ctx.resume and (run_dir / f"{v['name']}.json").exists())]
    for v in variants:
        if v not in todo:
            ctx.log(f"ablation: {v['name']} already trained, skipped")
    jobs = [
        (v["name"], {**base, **v.get("set", {})}, train_cfg, str(run_dir), ctx.resume, every)
        for v in todo
    ]
    if workers == 1:
        for job in jobs:
            train_variant(*job)
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.starmap(train_variant, jobs, chunksize=1)
    rows = []
    for v in variants:
        m = json.loads((run_dir / f"{v['name']}.json").read_text(encoding="utf-8"))
        m["label"] = v.get("label", v["name"])
        m["set"] = v.get("set", {})
        rows.append(m)
    (art.output / "ablation.json").write_text(
        json.dumps(
            {"variants": rows, "train": train_cfg, "model": base}, ensure_ascii=False, indent=1
        ),
        encoding="utf-8",
    )
    metrics = {f"{r['name']}_valid_bpc": round(r["valid_bpc"], 4) for r in rows}
    metrics |= {f"{r['name']}_test_bpc": round(r["test_bpc"], 4) for r in rows}
    n_tokens = rows[0]["tokens_seen"]
    data = (
        "唐诗语料 `poem_lm_texts`（训练集训练，验证集、测试集按全书统一协议计 bpc），字级分词；"
        f"每个变体训练 {rows[0]['steps']:,} 步、{n_tokens:,} 个词元，种子、学习率日程完全相同。"
    )
    return {"metrics": metrics, "data": data}


def throughput_of_configs(
    configs: dict[str, GPTConfigLike],
    *,
    batch_size: int = 32,
    block_size: int = 80,
    steps: int = 3,
    rounds: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Training tokens/s (forward, backward, AdamW step) of a fresh model per config.

    Builds ``GPT(config)`` for every entry (seeded) and times them in turns on one random
    batch with :func:`llmbook.evaluation.throughput.training_throughput`, so a change in
    the machine's load affects all of them alike.  Returns ``{name: tokens per second}``.
    """
    from llmbook.evaluation.throughput import training_throughput
    from llmbook.models.gpt import GPTConfig

    if not configs:
        raise ValueError("throughput_of_configs needs at least one config")
    torch.manual_seed(seed)
    models = {
        name: GPT(c if isinstance(c, GPTConfig) else GPTConfig.from_dict(c))
        for name, c in configs.items()
    }
    vocab = min(m.config.vocab_size for m in models.values())
    idx = torch.randint(
        0, vocab, (batch_size, block_size + 1), generator=torch.Generator().manual_seed(seed)
    )
    tok_s = training_throughput(list(models.values()), idx, steps=steps, rounds=rounds)
    return dict(zip(models, tok_s, strict=True))
