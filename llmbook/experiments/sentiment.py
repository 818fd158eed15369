"""The sentiment experiment: fine-tune the modern-Chinese GPT (full or LoRA) and compare with TF-IDF and snownlp baselines.

The GPT itself (``data/checkpoints/gpt-modern``) is pretrained by the ordinary trainer:
``python -m llmbook train --config configs/cpu-modern.toml``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from llmbook.experiments.artifacts import Artifact, BuildContext, builder
from llmbook.models.classifier import GPTClassifier
from llmbook.training.checkpoint import save_classifier
from llmbook.training.finetune import finetune_classifier, predict
from llmbook.utils import Timer

__all__ = [
    "main",
    "build_pretrain_curve",
]


#: the shipped checkpoint (:func:`llmbook.data.registry.shipped_checkpoint`) fine-tuned here
MODERN_CHECKPOINT = "gpt-modern"


def load_modern_gpt() -> tuple[nn.Module, Any, dict[str, Any]]:
    """The shipped modern-Chinese GPT checkpoint ``data/checkpoints/gpt-modern``."""
    from llmbook.data.registry import shipped_checkpoint
    from llmbook.training.checkpoint import load_checkpoint

    return load_checkpoint(shipped_checkpoint(MODERN_CHECKPOINT))


@dataclass
class BaselineResult:
    """Cross-validation accuracies on train, test predictions, size and the fitted model."""

    cv_accuracy: list[float]
    test_predictions: list[int]
    n_parameters: int
    model: Any


def tfidf_logreg(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    test_texts: Sequence[str],
    *,
    folds: int = 5,
    ngram_range: tuple[int, int] = (1, 2),
    C: float = 4.0,
    seed: int = 0,
) -> BaselineResult:
    """TF-IDF over character n-grams + logistic regression (scikit-learn).

    ``folds``-fold stratified cross-validation on the training set estimates accuracy
    without touching the test set; the model is then refit on all of train.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=ngram_range, sublinear_tf=True, min_df=2),
        LogisticRegression(C=C, max_iter=2000),
    )
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(pipe, list(train_texts), list(train_labels), cv=cv, n_jobs=1)
    pipe.fit(list(train_texts), list(train_labels))
    pred = [int(p) for p in pipe.predict(list(test_texts))]
    lr = pipe[-1]
    size = int(lr.coef_.size + lr.intercept_.size)
    return BaselineResult([float(s) for s in scores], pred, size, pipe)


def snownlp_predict(texts: Sequence[str]) -> list[int]:
    """snownlp's built-in sentiment classifier (naive Bayes), positive if p > 0.5.

    snownlp was trained on this very review collection, test split included, so its test
    score is optimistic.
    """
    from snownlp import SnowNLP

    return [int(SnowNLP(t).sentiments > 0.5) if t.strip() else 1 for t in texts]


def per_review_ms(predict_batch: Callable[[list[str]], Any], texts: Sequence[str]) -> float:
    """Mean wall-clock milliseconds of ``predict_batch([text])`` over ``texts`` (batch size 1).

    Chapter 6 measures the latency of each sentiment model this way, one review at a time.
    """
    if len(texts) == 0:
        raise ValueError("per_review_ms needs at least one text to time; got an empty sequence")
    with Timer() as t:
        for text in texts:
            predict_batch([text])
    return 1000 * t.seconds / len(texts)


SENTIMENT_LABELS = ("负面", "正面")


def run_sentiment_method(
    method: str,
    *,
    steps: int,
    batch_size: int = 32,
    max_len: int = 64,
    lr: float | None = None,
    lora_r: int = 4,
    lora_alpha: float = 8.0,
    lora_targets: Sequence[str] = ("c_attn",),
    train_subset: int | None = None,
    seed: int = 0,
    progress: bool = True,
    body: nn.Module | None = None,
) -> tuple[GPTClassifier, Any, dict[str, Any]]:
    """Fine-tune a classifier on the sentiment train split with one of three methods.

    ``"full"``: every weight of the pretrained GPT plus the head; ``"lora"``: LoRA on
    ``lora_targets`` (default: the fused QKV projection of every block) plus the head, the
    body frozen; ``"scratch"``: the same
    architecture randomly initialised, all weights trained.  ``train_subset`` takes the
    first ``n`` training reviews of a fixed shuffle.  ``body`` replaces the shipped
    GPT (it must use the shipped tokenizer), e.g. a snapshot of a longer pre-training.
    Returns the model (LoRA still unmerged), the tokenizer and a record with the
    settings, parameter shares and time.
    """
    from llmbook.data.sentiment import load_sentiment
    from llmbook.models.gpt import GPT
    from llmbook.models.lora import apply_lora, mark_trainable, trainable_share

    if method not in ("full", "lora", "scratch"):
        raise ValueError(f"method must be 'full', 'lora' or 'scratch', got {method!r}")
    gpt, tok, _ = load_modern_gpt()
    if body is not None:
        if getattr(getattr(body, "config", None), "vocab_size", None) != tok.vocab_size:
            raise ValueError("body must be a GPT over the shipped gpt-modern tokenizer")
        gpt = body
    if not isinstance(gpt, GPT):
        raise TypeError(f"the gpt-modern checkpoint holds a {type(gpt).__name__}, not a GPT")
    torch.manual_seed(seed)
    if method == "scratch":
        gpt = GPT(gpt.config)
    clf = GPTClassifier.from_gpt(gpt, SENTIMENT_LABELS, max_len=max_len)
    if method == "lora":
        apply_lora(clf, list(lora_targets), r=lora_r, alpha=lora_alpha)
        mark_trainable(clf, ["head."])
    train: list[Any] = list(load_sentiment("train"))
    random.Random(seed).shuffle(train)
    if train_subset is not None:
        train = train[:train_subset]
    if lr is None:
        lr = {"full": 5e-4, "lora": 3e-3, "scratch": 1e-3}[method]
    n_train, n_total, share = trainable_share(clf)
    res = finetune_classifier(
        clf,
        tok,
        [e.text for e in train],
        [e.label for e in train],
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_len=max_len,
        seed=seed,
        progress=progress,
    )
    record = {
        "method": method,
        "steps": steps,
        "batch_size": batch_size,
        "max_len": max_len,
        "lr": lr,
        "train_examples": len(train),
        "trainable_parameters": n_train,
        "total_parameters": n_total,
        "trainable_share": share,
        "seconds": res.seconds,
        "losses": [round(x, 4) for x in res.losses],
    }
    if method == "lora":
        record.update(lora_r=lora_r, lora_alpha=lora_alpha, lora_targets=list(lora_targets))
    return clf, tok, record


def strip_lora(model: nn.Module) -> nn.Module:
    """Replace merged :class:`~llmbook.models.lora.LoRALinear` layers by their (merged) base Linear."""
    from llmbook.models.lora import LoRALinear, unwrap_lora

    for name, mod in model.named_modules():
        if isinstance(mod, LoRALinear) and not mod.merged:
            raise ValueError(f"{name} is not merged; call merge_lora(model) first")
    unwrap_lora(model)
    return model


@builder("pretrain-curve")
def build_pretrain_curve(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    """Sentiment accuracy against pre-training compute (section 6.1's learning curve).

    One pre-training run of the gpt-modern architecture on the modern corpus, with the
    weights kept at every ``[pretrain] milestones`` step (0: random initialisation);
    each snapshot is scored in bits per character on the first 200 held-out People's
    Daily paragraphs and fine-tuned on the reviews exactly like the shipped ``full``
    run.  The pre-training resumes from its checkpoints; finished fine-tunings are
    skipped on ``--resume``.
    """
    from safetensors.torch import load_file, save_file

    from llmbook.data.lmdata import encode_corpus
    from llmbook.data.modern import modern_pretraining_texts
    from llmbook.data.sentiment import load_sentiment
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.evaluation.metrics import classification_report
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.training.trainer import TrainConfig, train

    pre, fin = dict(art.config.get("pretrain", {})), dict(art.config.get("finetune", {}))
    milestones = sorted({int(m) for m in pre.get("milestones", [])} | {0})
    if len(milestones) < 2:
        raise ValueError(f"{art.config_path}: [pretrain] milestones needs a step > 0")
    seed = int(art.config.get("seed", 0))
    shipped, tok, _ = load_modern_gpt()
    model_cfg = GPTConfig(**{**cast(GPT, shipped).config.to_dict(), "dropout": 0.0})
    snaps = ctx.run_dir / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)

    def snap(step: int) -> Path:
        return snaps / f"step{step}.safetensors"

    def keep(model: nn.Module, step: int) -> None:
        state = {
            k: v.detach().clone().contiguous()
            for k, v in model.state_dict().items()
            if k != "lm_head.weight"
        }  # tied to wte.weight
        save_file(state, str(snap(step)))

    if not all(snap(m).exists() for m in milestones):
        torch.manual_seed(seed)
        model = GPT(model_cfg)
        keep(model, 0)
        train_ids = encode_corpus(modern_pretraining_texts("train"), tok)
        valid_ids = encode_corpus(modern_pretraining_texts("valid"), tok)
        ctx.log(f"{art.name}: pre-training on {len(train_ids):,} tokens to step {milestones[-1]}")

        def on_step(record: dict[str, Any]) -> None:
            if record["step"] in milestones:
                keep(model, record["step"])
                ctx.log(f"{art.name}: kept step {record['step']}")

        train(
            model,
            train_ids,
            valid_ids,
            TrainConfig(
                max_steps=milestones[-1],
                batch_size=int(pre.get("batch_size", 32)),
                block_size=model_cfg.block_size,
                lr=float(pre.get("lr", 4e-3)),
                min_lr=float(pre.get("min_lr", 4e-4)),
                warmup_steps=int(pre.get("warmup_steps", 40)),
                eval_interval=0,
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
    test: list[Any] = list(load_sentiment("test"))
    gold = [e.label for e in test]
    valid_texts = modern_pretraining_texts("valid")[:200]
    rows: dict[str, Any] = ctx.load_state("curve.json", {}) if ctx.resume else {}
    tokens_per_step = int(pre.get("batch_size", 32)) * model_cfg.block_size
    for m in milestones:
        if str(m) in rows:
            continue
        body = GPT(model_cfg)
        state = load_file(str(snap(m)))
        state["lm_head.weight"] = state["wte.weight"]
        body.load_state_dict(state)
        bpc = bits_per_char(body, tok, valid_texts)
        clf, _, rec = run_sentiment_method(
            "full",
            steps=int(fin.get("steps", 1500)),
            lr=float(fin.get("lr", 5e-4)),
            seed=seed,
            progress=False,
            body=body,
        )
        pred, _ = predict(clf, tok, [e.text for e in test], max_len=rec["max_len"])
        acc = classification_report(gold, pred).accuracy
        rows[str(m)] = {
            "pretrain_steps": m,
            "pretrain_tokens": m * tokens_per_step,
            "valid_bpc": bpc,
            "test_accuracy": acc,
            "finetune_seconds": rec["seconds"],
        }
        ctx.save_state("curve.json", rows)
        ctx.log(f"{art.name}: step {m}: {bpc:.3f} bpc, sentiment accuracy {acc:.4f}")
    train_set: list[Any] = list(load_sentiment("train"))
    base = tfidf_logreg(
        [e.text for e in train_set], [e.label for e in train_set], [e.text for e in test]
    )
    tfidf_acc = classification_report(gold, base.test_predictions).accuracy
    result: dict[str, Any] = {
        "rows": [rows[str(m)] for m in milestones],
        "tfidf_test_accuracy": tfidf_acc,
        "finetune": {"method": "full", **fin},
        "pretrain": pre,
    }
    art.output.mkdir(parents=True, exist_ok=True)
    (art.output / "results.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics: dict[str, Any] = {"tfidf_test_accuracy": round(tfidf_acc, 4)}
    for r in result["rows"]:
        metrics[f"step{r['pretrain_steps']}_accuracy"] = round(r["test_accuracy"], 4)
        metrics[f"step{r['pretrain_steps']}_bpc"] = round(r["valid_bpc"], 4)
    data = (
        "预训练：《人民日报》1998 年 1 月段落加情感数据训练划分的评论（modern_pretraining_texts），"
        "与 gpt-modern 相同；微调与评估：情感数据的训练划分与测试划分。"
    )
    return {"metrics": metrics, "data": data}


def sentiment_main(argv: Sequence[str] | None = None) -> int:
    """Fine-tune full / LoRA / from-scratch classifiers and ship their test predictions."""
    from llmbook.data.sentiment import load_sentiment
    from llmbook.evaluation.metrics import classification_report
    from llmbook.models.lora import merge_lora

    p = argparse.ArgumentParser(prog="python -m llmbook.experiments.sentiment sentiment")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--out", default="data/results/sentiment_finetune.json")
    p.add_argument("--classifier-out", default="data/checkpoints/sentiment-gpt")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(list(argv) if argv is not None else None)
    torch.set_num_threads(args.threads)
    test: list[Any] = list(load_sentiment("test"))
    texts, gold = [e.text for e in test], [e.label for e in test]
    command = "python -m llmbook.experiments.sentiment sentiment " + " ".join(
        argv if argv is not None else sys.argv[2:]
    )
    out: dict[str, Any] = {"command": command, "test_size": len(test), "runs": {}}
    for method in ("full", "lora", "scratch"):
        clf, tok, rec = run_sentiment_method(
            method,
            steps=args.steps,
            batch_size=args.batch_size,
            max_len=args.max_len,
            progress=False,
        )
        if method == "lora":
            merge_lora(clf)
            strip_lora(clf)
        pred, _ = predict(clf, tok, texts, max_len=args.max_len)
        rec["test_predictions"] = pred
        rec["test_accuracy"] = classification_report(gold, pred).accuracy
        out["runs"][method] = rec
        print(
            f"{method}: accuracy {rec['test_accuracy']:.4f} in {rec['seconds']:.0f} s", flush=True
        )
        if method == "lora" and args.classifier_out:
            save_classifier(
                args.classifier_out,
                clf,
                tok,
                extra={
                    "description": "sentiment classifier: gpt-modern + LoRA (merged); "
                    "results in data/results/sentiment_finetune.json",
                    "command": command,
                },
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmbook.experiments.sentiment sentiment [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "sentiment":
        print(
            "usage: python -m llmbook.experiments.sentiment sentiment [options]\n"
            "(pretrain the GPT with: python -m llmbook train --config configs/cpu-modern.toml)",
            file=sys.stderr,
        )
        return 2
    return sentiment_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
