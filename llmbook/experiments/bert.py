"""Section 3.5's experiment: pre-train a small BERT-style encoder by masked LM, fine-tune it on the reviews.

``python -m llmbook.experiments build bert-modern --threads 1`` (``--resume`` continues).
The encoder has the shape of ``gpt-modern`` (3 layers, width 96, 4 heads, 64 positions,
the same 3,000-character tokenizer plus one ``[MASK]`` id) and is pre-trained on the same
modern corpus with the same batch (32 windows of 64 characters) and schedule shape, so at
equal steps both models have seen the same number of characters.  The weights are kept at
every ``[pretrain] milestones`` step (0: random initialisation; the learning-rate cosine
runs over ``schedule_steps``, and training stops at the last milestone); each snapshot is scored
by masked-token accuracy on held-out People's Daily windows and fine-tuned on the
reviews exactly like the shipped GPT ``full`` run (same split and shuffle, steps, batch,
learning rate, length, evaluation on the test split).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from llmbook.experiments.artifacts import Artifact, BuildContext, builder
from llmbook.models.bert import Bert, BertClassifier, BertConfig, mask_tokens

__all__ = ["build_bert_modern", "finetune_bert_sentiment", "heldout_mlm"]


def finetune_bert_sentiment(
    bert: Bert,
    tok: Any,
    *,
    steps: int,
    lr: float,
    pooling: str = "cls",
    batch_size: int = 32,
    max_len: int = 64,
    seed: int = 0,
) -> tuple[float, float]:
    """Fine-tune ``bert`` + a head as :func:`~llmbook.experiments.sentiment.run_sentiment_method`
    fine-tunes the GPT (``"full"``); returns ``(test accuracy, seconds)``."""
    from llmbook.data.sentiment import load_sentiment
    from llmbook.evaluation.metrics import classification_report
    from llmbook.experiments.sentiment import SENTIMENT_LABELS
    from llmbook.training.finetune import finetune_classifier, predict

    torch.manual_seed(seed)
    clf = BertClassifier.from_bert(bert, SENTIMENT_LABELS, pooling=pooling, max_len=max_len)
    train: list[Any] = list(load_sentiment("train"))
    random.Random(seed).shuffle(train)
    res = finetune_classifier(
        cast(Any, clf),
        tok,
        [e.text for e in train],
        [e.label for e in train],
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_len=max_len,
        seed=seed,
        progress=False,
    )
    test: list[Any] = list(load_sentiment("test"))
    pred, _ = predict(cast(Any, clf), tok, [e.text for e in test], max_len=max_len)
    return classification_report([e.label for e in test], pred).accuracy, res.seconds


@torch.no_grad()
def heldout_mlm(bert: Bert, ids: np.ndarray, n: int = 256, seed: int = 0) -> dict[str, float]:
    """MLM loss (nats) and masked-token accuracy on ``n`` fixed windows of held-out ``ids``."""
    T = bert.config.max_positions
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - T, size=n)
    x = torch.from_numpy(np.stack([ids[s : s + T] for s in starts]).astype(np.int64))
    x[:, 0] = bert.config.cls_id
    inputs, labels = mask_tokens(x, bert.config, generator=torch.Generator().manual_seed(seed))
    bert.eval()
    loss_sum, hits, count = 0.0, 0, 0
    for i in range(0, n, 64):
        logits, loss = bert(inputs[i : i + 64], labels[i : i + 64])
        chosen = labels[i : i + 64] != -100
        k = int(chosen.sum())
        loss_sum += float(cast(torch.Tensor, loss)) * k
        hits += int((logits.argmax(-1)[chosen] == labels[i : i + 64][chosen]).sum())
        count += k
    return {"mlm_loss": loss_sum / count, "masked_accuracy": hits / count, "masked_tokens": count}


def snapshot_row(
    body: Bert,
    tok: Any,
    valid_ids: np.ndarray,
    step: int,
    pooling: str,
    batch: int,
    fin: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """One row of the results: a pre-training snapshot scored on held-out MLM and fine-tuned."""
    scores = heldout_mlm(body, valid_ids)
    acc, seconds = finetune_bert_sentiment(
        body,
        tok,
        steps=int(fin.get("steps", 1500)),
        lr=float(fin.get("lr", 5e-4)),
        pooling=pooling,
        seed=seed,
    )
    return {
        "pretrain_steps": step,
        "pretrain_tokens": step * batch * body.config.max_positions,
        "pooling": pooling,
        **scores,
        "test_accuracy": acc,
        "finetune_seconds": seconds,
    }


@builder("bert-mlm")
def build_bert_modern(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    """Pre-train (MLM) with snapshots, score and fine-tune each; ship the final encoder."""
    from safetensors.torch import load_file, save_file

    from llmbook.data.lmdata import encode_corpus
    from llmbook.data.modern import modern_pretraining_texts
    from llmbook.experiments.sentiment import load_modern_gpt
    from llmbook.training.checkpoint import save_checkpoint
    from llmbook.training.mlm import MaskedLM
    from llmbook.training.trainer import TrainConfig, train

    pre, fin = dict(art.config.get("pretrain", {})), dict(art.config.get("finetune", {}))
    model_cfg = dict(art.config.get("model", {}))
    milestones = sorted({int(m) for m in pre.get("milestones", [])} | {0})
    if len(milestones) < 2:
        raise ValueError(f"{art.config_path}: [pretrain] milestones needs a step > 0")
    seed = int(art.config.get("seed", 0))
    _, tok, _ = load_modern_gpt()
    cfg = BertConfig(vocab_size=tok.vocab_size + 1, **model_cfg)  # + [MASK] as the last id
    snaps = ctx.run_dir / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)

    def snap(step: int) -> Path:
        return snaps / f"step{step}.safetensors"

    def keep(model: Bert, step: int) -> None:
        save_file(
            {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
            str(snap(step)),
        )

    train_ids = encode_corpus(modern_pretraining_texts("train"), tok)
    valid_ids = encode_corpus(modern_pretraining_texts("valid"), tok)
    batch = int(pre.get("batch_size", 32))
    if not all(snap(m).exists() for m in milestones):
        torch.manual_seed(seed)
        mlm = MaskedLM(cfg)
        keep(mlm.bert, 0)
        ctx.log(
            f"{art.name}: {mlm.bert.num_parameters():,} parameters; MLM on {len(train_ids):,} tokens"
        )

        def on_step(record: dict[str, Any]) -> bool:
            if record["step"] in milestones:
                keep(mlm.bert, record["step"])
                ctx.log(f"{art.name}: kept step {record['step']}")
            return record["step"] >= milestones[-1]  # stop there, also mid-schedule

        res = train(
            mlm,
            train_ids,
            valid_ids,
            TrainConfig(
                # the cosine runs over schedule_steps; training stops at the last milestone
                max_steps=int(pre.get("schedule_steps", milestones[-1])),
                batch_size=batch,
                block_size=cfg.max_positions,
                lr=float(pre.get("lr", 1e-3)),
                min_lr=float(pre.get("min_lr", 1e-4)),
                warmup_steps=int(pre.get("warmup_steps", 40)),
                weight_decay=float(pre.get("weight_decay", 0.1)),
                eval_interval=int(pre.get("eval_interval", 50)),
                eval_batches=10,
                device="cpu",
                dtype="float32",
                seed=seed,
                out_dir=str(ctx.run_dir / "pretrain"),
                ckpt_interval=200,
                resume=ctx.resume,
                progress=False,
            ),
            callback=on_step,
        )
        ctx.save_state(
            "history.json",
            [{k: h[k] for k in ("step", "train_loss", "val_loss")} for h in res.history],
        )
    history = ctx.load_state("history.json", [])
    rows: dict[str, Any] = ctx.load_state("rows.json", {}) if ctx.resume else {}
    # the last snapshot first: it matters most; the earlier ones may come from parallel runs
    poolings = [str(x) for x in fin.get("last_poolings", ["cls", "mean"])]
    runs = [(milestones[-1], p) for p in poolings] + [(m, "cls") for m in milestones[:-1]]
    for m, pooling in runs:
        key = f"{m}-{pooling}"
        if ctx.resume:  # rows that parallel runs of snapshot_row have added meanwhile
            rows = {**ctx.load_state("rows.json", {}), **rows}
        if key in rows:
            continue
        body = Bert(cfg)
        body.load_state_dict(load_file(str(snap(m))))
        rows[key] = snapshot_row(body, tok, valid_ids, m, pooling, batch, fin, seed)
        ctx.save_state("rows.json", rows)
        r = rows[key]
        ctx.log(f"{art.name}: step {m} ({pooling}): sentiment {r['test_accuracy']:.4f}")
    final = Bert(cfg)
    final.load_state_dict(load_file(str(snap(milestones[-1]))))
    art.output.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        art.output / "model",
        final,
        tok,
        extra={
            "description": "BERT-style encoder pre-trained by masked LM on the modern corpus (section 3.5)",
            "steps": milestones[-1],
        },
    )
    result = {
        "rows": [rows[f"{m}-{p}"] for m, p in sorted(runs)],
        "history": history,
        "model": cfg.to_dict(),
        "parameters": final.num_parameters(),
        "pretrain": pre,
        "finetune": {"method": "full", **fin},
    }
    (art.output / "results.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics: dict[str, Any] = {"parameters": final.num_parameters()}
    for r in result["rows"]:
        tag = f"step{r['pretrain_steps']}_{r['pooling']}"
        metrics[f"{tag}_accuracy"] = round(r["test_accuracy"], 4)
        metrics[f"step{r['pretrain_steps']}_masked_accuracy"] = round(r["masked_accuracy"], 4)
    data = (
        "预训练：《人民日报》1998 年 1 月段落加情感数据训练划分的评论（modern_pretraining_texts），"
        "与 gpt-modern 相同，掩码留出评估用留出的《人民日报》段落；微调与评估：情感数据的训练划分与测试划分，"
        "设置与 sentiment 成果的 full 微调相同。"
    )
    return {"metrics": metrics, "data": data}
