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
from typing import Any

import torch
from torch import nn

from llmbook.models.classifier import GPTClassifier
from llmbook.training.checkpoint import save_classifier
from llmbook.training.finetune import finetune_classifier, predict
from llmbook.utils import Timer

__all__ = [
    "main",
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
