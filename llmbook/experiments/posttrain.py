"""Post-training artifacts: the poem GPT taught to chat, and the SFT → DPO / GRPO ladder run long.

``kind = "sft-chat"`` (``configs/artifacts/sft-poetry-chat.toml``) starts from a shipped
base checkpoint, adds the role tokens of :class:`llmbook.text.chat.RoleTemplate` (the
embedding grows by four rows), and instruction-tunes the whole model on the training
tasks of :func:`llmbook.evaluation.poem_tasks.poem_task_splits` with the loss on the
assistant's tokens only.  The held-out tasks are answered greedily before and after;
the checkpoint (with the grown tokenizer) and ``results.json`` (rates per task, sample
answers, the loss curve) go to the output directory.  Section 6.2 loads it.

``kind = "posttrain-ladder"`` (``configs/artifacts/posttrain-ladder.toml``) repeats
section 6.9's experiment with ten times the steps: the same short SFT, then DPO on
preference pairs from every training prompt and GRPO with the held-out reward measured
every ``eval_every`` steps (the reference model stays the SFT model throughout).  The
GRPO model (LoRA merged into the weights) and ``results.json`` are shipped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from llmbook.experiments.artifacts import Artifact, BuildContext, builder

__all__ = ["build_sft_chat", "quatrain_report", "ladder_prompts", "build_ladder"]


def _rates(ev: Any) -> dict[str, dict[str, float | None]]:
    return {task: dict(r) for task, r in ev.rates.items()}


@builder("sft-chat")
def build_sft_chat(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    from llmbook.data.registry import shipped_checkpoint
    from llmbook.evaluation.instructions import evaluate_tasks
    from llmbook.evaluation.poem_tasks import TASKS, poem_task_splits
    from llmbook.text.chat import ROLE_CHAT, add_role_tokens
    from llmbook.training.checkpoint import load_checkpoint, save_checkpoint
    from llmbook.training.sft import train_sft

    cfg = dict(art.config.get("sft", {}))
    for key in ("base", "steps", "batch_size", "lr"):
        if key not in cfg:
            raise ValueError(f"{art.config_path}: [sft] needs {key!r}")
    seed, per_task = int(cfg.get("seed", 0)), int(cfg.get("eval_per_task", 50))
    max_new = int(cfg.get("max_new_tokens", 40))
    torch.manual_seed(seed)
    model, base_tok, _ = load_checkpoint(shipped_checkpoint(cfg["base"]))
    tok = add_role_tokens(base_tok, model)
    train_tasks, held, authors = poem_task_splits(tok, per_task)
    ctx.log(f"{art.name}: {len(train_tasks):,} training instructions, {len(held)} held out")

    def evaluate() -> Any:
        return evaluate_tasks(
            model, tok, held, template=ROLE_CHAT, authors=authors, max_new_tokens=max_new
        )

    before = evaluate()
    t0 = time.perf_counter()
    losses = train_sft(
        model,
        tok,
        [t.pair for t in train_tasks],
        steps=int(cfg["steps"]),
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg["lr"]),
        template=ROLE_CHAT,
        seed=seed,
        progress=True,
    )
    seconds = time.perf_counter() - t0
    after = evaluate()
    samples = {
        task: [
            {"instruction": t.instruction, "reference": t.response, "before": b, "after": a}
            for t, b, a in zip(held, before.outputs, after.outputs)
            if t.task == task
        ][:5]
        for task in TASKS
    }
    results = {
        "train_instructions": len(train_tasks),
        "held_out": len(held),
        "sft_seconds": seconds,
        "losses": losses[:],
        "before": _rates(before),
        "after": _rates(after),
        "samples": samples,
    }
    art.output.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        art.output, model, tok, config=cfg, extra={"template": "RoleTemplate", "base": cfg["base"]}
    )
    (art.output / "results.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics: dict[str, Any] = {
        "sft_seconds": round(seconds, 1),
        "final_loss": round(sum(losses[-50:]) / 50, 4),
    }
    for task in TASKS:
        for when, ev in (("before", before), ("after", after)):
            metrics[f"{task}_format_{when}"] = ev.rates[task]["format"]
    data = (
        f"唐诗五言/七言绝句按 poetry_split 划分：训练划分构造 {len(train_tasks):,} 条指令"
        f"（写诗、续写、作者、题目四类），测试划分每类前 {per_task} 条（共 {len(held)} 条）"
        "作为留出评估；基座为随书发布的 gpt-poetry。"
    )
    return {"metrics": metrics, "data": data}


def quatrain_report(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    weights: tuple[float, float, float] = (0.6, 0.4, 0.0),
    n: int = 4,
    max_new_tokens: int = 36,
    seed: int = 1,
) -> dict[str, Any]:
    """Sample ``n`` quatrains per prompt and score them (section 6.9's evaluation).

    Returns the shares of samples with perfect form (``格式全对``) and a rhyme
    (``押韵``), the mean form score and reward, the mean line length, distinct-2 and
    the repeat rate, plus the ``texts`` and the rhymed ones (``rhymed``).  Every model
    is judged on the same random numbers (``seed``).
    """
    import numpy as np

    from llmbook.evaluation.poem_rewards import instruction_form, quatrain_lines, score_quatrain
    from llmbook.generation.repetition import distinct_n, repeat_rate
    from llmbook.training.policy import score_samples

    def judge(ins: str, text: str) -> Any:
        return score_quatrain(text, instruction_form(ins), weights)

    scored = score_samples(
        model, tokenizer, prompts, judge, n=n, max_new_tokens=max_new_tokens, seed=seed
    )
    texts = [t for _, t, _ in scored]
    return {
        "格式全对": float(np.mean([s.form == 1 for *_, s in scored])),
        "平均格式分": float(np.mean([s.form for *_, s in scored])),
        "押韵": float(np.mean([s.rhyme for *_, s in scored])),
        "平均奖励": float(np.mean([s.reward for *_, s in scored])),
        "平均句长": float(np.mean([len(line) for t in texts for line, _ in quatrain_lines(t)])),
        "distinct-2": distinct_n(texts, 2),
        "连续重复": repeat_rate(texts),
        "texts": texts,
        "rhymed": [t for _, t, s in scored if s.rhyme],
    }


def ladder_prompts(tokenizer: Any) -> tuple[list[str], list[str]]:
    """Section 6.9's prompts: 五言 instructions of the train split, 48 of the test split."""
    from llmbook.data.poetry import load_poems, poetry_split
    from llmbook.training.sft import poem_instructions

    split = poetry_split(load_poems(dynasty="唐", form=["五言绝句", "七言绝句"]))
    train = [
        ins for ins, _ in poem_instructions(split["train"], tokenizer=tokenizer) if "五言" in ins
    ]
    test = [
        ins for ins, _ in poem_instructions(split["test"], tokenizer=tokenizer) if "五言" in ins
    ][:48]
    return train, test


@builder("posttrain-ladder")
def build_ladder(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    """SFT, then DPO and GRPO from it, longer than the page can afford; scored on the way."""
    import copy
    from functools import partial

    from llmbook.data.poetry import load_poems, poetry_split
    from llmbook.data.registry import shipped_checkpoint
    from llmbook.evaluation.poem_rewards import instruction_reward
    from llmbook.models.lora import unwrap_lora
    from llmbook.training import dpo, grpo
    from llmbook.training.checkpoint import load_checkpoint, save_checkpoint
    from llmbook.training.sft import poem_instructions, train_sft

    cfg = art.config
    s_cfg, d_cfg, g_cfg = (dict(cfg.get(k, {})) for k in ("sft", "dpo", "grpo"))
    seed = int(cfg.get("seed", 0))
    weights = (0.6, 0.4, 0.0)
    reward = partial(instruction_reward, weights=weights)
    torch.manual_seed(seed)
    poet, tok, _ = load_checkpoint(shipped_checkpoint(str(cfg.get("base", "gpt-poetry"))))
    split = poetry_split(load_poems(dynasty="唐", form=["五言绝句", "七言绝句"]))
    train_sft(
        poet,
        tok,
        poem_instructions(split["train"], tokenizer=tok),
        steps=int(s_cfg.get("steps", 40)),
        batch_size=16,
        lr=1e-3,
        seed=seed,
        progress=False,
    )
    train_prompts, test_prompts = ladder_prompts(tok)
    every = int(cfg.get("prompt_stride", 1))
    train_prompts = train_prompts[::every]
    ctx.log(f"{art.name}: {len(train_prompts)} training prompts, {len(test_prompts)} held out")

    def report(model: Any) -> dict[str, Any]:
        r = quatrain_report(model, tok, test_prompts, weights=weights)
        return {k: v for k, v in r.items() if k not in ("rhymed",)} | {"texts": r["texts"][:8]}

    results: dict[str, Any] = {"train_prompts": len(train_prompts), "SFT": report(poet)}
    reference = copy.deepcopy(poet).eval()
    for p in reference.parameters():
        p.requires_grad_(False)

    t0 = time.perf_counter()
    pairs = dpo.build_preference_pairs(
        poet, tok, train_prompts, reward, samples_per_prompt=4, max_new_tokens=36, seed=seed
    )
    dpo_model = copy.deepcopy(poet)
    dpo_log = dpo.train_dpo(
        dpo_model,
        reference,
        pairs,
        tokenizer=tok,
        steps=int(d_cfg.get("steps", 300)),
        batch_size=8,
        lr=float(d_cfg.get("lr", 5e-4)),
        beta=0.1,
        lora_rank=8,
        seed=seed,
    )
    results["SFT + DPO"] = report(dpo_model)
    results["dpo_log"] = {
        "pairs": len(pairs),
        "losses": dpo_log.losses,
        "margins": dpo_log.margins,
        "accuracies": dpo_log.accuracies,
        "kl": dpo_log.kl,
        "seconds": time.perf_counter() - t0,
    }
    ctx.log(f"{art.name}: DPO done ({len(pairs)} pairs): {results['SFT + DPO']['平均奖励']:.3f}")

    grpo_model = copy.deepcopy(poet)
    chunk, total = int(g_cfg.get("eval_every", 50)), int(g_cfg.get("steps", 300))
    curve, rewards, kls = [(0, results["SFT"]["平均奖励"], results["SFT"]["格式全对"])], [], []
    t0 = time.perf_counter()
    for done in range(0, total, chunk):
        log = grpo.train_grpo(
            grpo_model,
            reference,
            train_prompts,
            reward,
            tokenizer=tok,
            steps=min(chunk, total - done),
            prompts_per_step=4,
            group_size=8,
            max_new_tokens=36,
            lr=float(g_cfg.get("lr", 5e-3)),
            inner_steps=2,
            lora_rank=8,
            seed=seed + done,
            progress=False,
        )
        rewards += log.rewards
        kls += log.kl
        r = report(grpo_model)
        curve.append((done + len(log.rewards), r["平均奖励"], r["格式全对"]))
        ctx.log(
            f"{art.name}: GRPO {curve[-1][0]} steps: held-out reward {r['平均奖励']:.3f}, "
            f"form {r['格式全对']:.1%}, KL {log.kl[-1]:.3f}"
        )
    results["SFT + GRPO"] = r
    results["grpo_log"] = {
        "rewards": rewards,
        "kl": kls,
        "curve": curve,
        "seconds": time.perf_counter() - t0,
    }
    art.output.mkdir(parents=True, exist_ok=True)
    unwrap_lora(grpo_model)
    save_checkpoint(
        art.output,
        grpo_model,
        tok,
        config=cfg,
        extra={"template": "ChatTemplate", "stages": ["SFT", "GRPO (LoRA merged)"]},
    )
    (art.output / "results.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics = {
        f"{stage}_{k}": round(results[stage][k], 4)
        for stage in ("SFT", "SFT + DPO", "SFT + GRPO")
        for k in ("格式全对", "押韵", "平均奖励")
    }
    data = (
        f"唐诗五言绝句指令：训练划分 {len(train_prompts)} 条（DPO 偏好对与 GRPO 采样），"
        f"测试划分 {len(test_prompts)} 条留出，每条采样 4 首评估；起点为 gpt-poetry 加 "
        f"{s_cfg.get('steps', 40)} 步 SFT。"
    )
    return {"metrics": metrics, "data": data}
