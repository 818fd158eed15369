"""The sentiment experiment: pretrain the modern-Chinese GPT, fine-tune it (full or LoRA), and compare with TF-IDF and snownlp baselines."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmbook.data.modern import modern_pretraining_texts
from llmbook.models.classifier import GPTClassifier
from llmbook.training.checkpoint import save_classifier
from llmbook.training.finetune import finetune_classifier, predict

__all__ = [
    "pretrain_main",
    "main",
]


MODERN_CHECKPOINT = "checkpoints/gpt-modern"


def pretrain_main(argv: Sequence[str] | None = None) -> int:
    """Pretrain the small character-level GPT on modern Chinese and export the checkpoint."""
    from llmbook.data.lmdata import encode_corpus
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.text.tokenizers import CharTokenizer
    from llmbook.training.checkpoint import save_checkpoint
    from llmbook.training.trainer import TrainConfig, train

    p = argparse.ArgumentParser(prog="python -m llmbook.experiments.sentiment pretrain")
    p.add_argument("--out", default="data/" + MODERN_CHECKPOINT)
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--vocab", type=int, default=4000, help="vocabulary size incl. specials")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(list(argv) if argv is not None else None)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train_texts = modern_pretraining_texts("train")
    valid_texts = modern_pretraining_texts("valid")
    tok: Any = CharTokenizer.fit([t + "\n" for t in train_texts], max_size=args.vocab)
    train_ids = encode_corpus(train_texts, tok)
    valid_ids = encode_corpus(valid_texts, tok)
    mcfg = GPTConfig(
        vocab_size=tok.vocab_size,
        block_size=args.block_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
    )
    model = GPT(mcfg)
    tcfg = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        block_size=args.block_size,
        lr=args.lr,
        min_lr=args.lr / 10,
        warmup_steps=min(100, args.steps // 10),
        eval_interval=max(1, args.steps // 10),
        eval_batches=10,
        seed=args.seed,
        progress=False,
        device="cpu",
        dtype="float32",
    )
    print(
        f"{model.num_parameters():,} parameters, vocab {tok.vocab_size}, "
        f"{len(train_ids):,} training tokens, {args.steps} steps",
        flush=True,
    )

    def log(rec: dict[str, Any]) -> None:
        if rec.get("val_loss") is not None:
            print(
                f"step {rec['step']}: train {rec['train_loss']:.3f} val {rec['val_loss']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )

    result = train(model, train_ids, valid_ids, tcfg, callback=log)
    with torch.no_grad():
        vbpc = bits_per_char(result.model, tok, valid_texts[:200])
    meta = {
        "description": "character-level GPT pretrained on People's Daily (Jan 1998) paragraphs "
        "+ the TRAIN split of the review sentiment data (no valid/test reviews)",
        "command": "python -m llmbook.experiments.sentiment pretrain " + " ".join(argv or sys.argv[2:]),
        "parameters": model.num_parameters(),
        "train_tokens": int(len(train_ids)),
        "steps": result.steps,
        "final_val_loss": result.final_val_loss,
        "valid_bpc_people_daily": vbpc,
        "wall_seconds": time.perf_counter() - t0,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    save_checkpoint(args.out, result.model, tok, tcfg, meta)
    print(json.dumps({k: v for k, v in meta.items()}, ensure_ascii=False, indent=1))
    return 0


def load_modern_gpt() -> tuple[nn.Module, Any, dict[str, Any]]:
    """The shipped modern-Chinese GPT checkpoint ``data/checkpoints/gpt-modern``."""
    from llmbook.data.registry import data_path
    from llmbook.training.checkpoint import load_checkpoint

    path = data_path(MODERN_CHECKPOINT + "/model.safetensors").parent
    return load_checkpoint(path)


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
) -> tuple[GPTClassifier, Any, dict[str, Any]]:
    """Fine-tune a classifier on the sentiment train split with one of three methods.

    ``"full"``: every weight of the pretrained GPT plus the head; ``"lora"``: LoRA on
    ``lora_targets`` (default: the fused QKV projection of every block) plus the head, the
    body frozen; ``"scratch"``: the same
    architecture randomly initialised, all weights trained.  ``train_subset`` takes the
    first ``n`` training reviews of a fixed shuffle.  Returns the model (LoRA still
    unmerged), the tokenizer and a record with the settings, parameter shares and time.
    """
    from llmbook.data.sentiment import load_sentiment
    from llmbook.models.gpt import GPT
    from llmbook.models.lora import apply_lora, mark_trainable, trainable_share

    if method not in ("full", "lora", "scratch"):
        raise ValueError(f"method must be 'full', 'lora' or 'scratch', got {method!r}")
    gpt, tok, _ = load_modern_gpt()
    torch.manual_seed(seed)
    if method == "scratch":
        gpt = GPT(getattr(gpt, "config"))  # noqa: B009
    clf = GPTClassifier(gpt, 2)
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
    from llmbook.models.lora import LoRALinear

    for name, mod in list(model.named_modules()):
        if isinstance(mod, LoRALinear):
            if not mod.merged:
                raise ValueError(f"{name} is not merged; call merge_lora(model) first")
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, mod.base)
    return model


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
                SENTIMENT_LABELS,
                max_len=args.max_len,
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
    """``python -m llmbook.experiments.sentiment pretrain|sentiment [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("pretrain", "sentiment"):
        print("usage: python -m llmbook.experiments.sentiment pretrain|sentiment [options]", file=sys.stderr)
        return 2
    return pretrain_main(argv[1:]) if argv[0] == "pretrain" else sentiment_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
