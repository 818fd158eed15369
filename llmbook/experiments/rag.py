"""Section 6.12's reader: gpt-modern fine-tuned to answer from passages, and the RAG evaluation.

``kind = "rag-reader"`` (``configs/artifacts/rag-reader.toml``):

1. loads the shipped ``gpt-modern`` and lengthens its context from 64 to ``block_size``
   positions (the new rows of the learned position table start as copies of the old
   ones, repeated);
2. builds synthetic reading-comprehension examples on the fly with
   :func:`llmbook.applications.rag.make_cloze` from People's Daily paragraphs of at most
   ``max_passage`` characters, with 0–2 random other paragraphs as distractors, packed by
   :func:`llmbook.applications.rag.pack_context`.  The 60 paragraphs of the QA set
   (``data/eval/qa_zh.jsonl``) are excluded entirely — as sources of questions and as
   distractors — so the reader never trained on a sentence it is tested on; 2% of the
   other paragraphs (by hash) are held out for a cloze validation set;
3. trains with the loss on the answer tokens (and ``<eos>``) only, checkpointing every
   ``ckpt_every`` steps into ``runs/artifacts/rag-reader/`` for ``--resume``;
4. ranks the collection for the 60 questions with word BM25 and the contrastive
   ``BagEncoder`` of section 6.4, and answers every question closed-book, from the gold
   passage and from the top-k passages — by free greedy decoding and by decoding
   constrained to copy from the passages — writing ``results.json`` and the checkpoint.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import torch
import torch.nn.functional as F

from llmbook.experiments.artifacts import Artifact, BuildContext, builder

__all__ = ["build_rag_reader", "lengthen_context", "CONDITIONS"]

#: evaluation conditions: (name, retriever, k); retriever None = closed book, "gold" = oracle
CONDITIONS: list[tuple[str, str | None, int]] = [
    ("closed", None, 0),
    ("gold", "gold", 1),
    ("bm25@1", "bm25", 1),
    ("bm25@2", "bm25", 2),
    ("bm25@3", "bm25", 3),
    ("bm25@5", "bm25", 5),
    ("dense@1", "dense", 1),
    ("dense@3", "dense", 3),
]


def lengthen_context(model: Any, block_size: int) -> Any:
    """A copy of a learned-position GPT with ``block_size`` positions (rows repeated)."""
    from llmbook.models.gpt import GPT

    cfg = model.config
    if block_size <= cfg.block_size:
        raise ValueError(f"block_size {block_size} must exceed the model's {cfg.block_size}")
    new = GPT(type(cfg)(**{**cfg.__dict__, "block_size": block_size}))
    state = model.state_dict()
    old = state["wpe.weight"]
    reps = -(-block_size // old.size(0))
    state["wpe.weight"] = old.repeat(reps, 1)[:block_size].clone()
    new.load_state_dict(state)
    return new


def _example(reader: Any, item: Any, distractors: list[str], rng: random.Random) -> Any:
    """Token ids and targets (-100 outside the answer) for one cloze item, or None."""
    passages = [item.passage, *distractors]
    rng.shuffle(passages)
    packed = reader.pack(item.question, passages)
    if item.passage not in packed.passages:  # the gold passage was cut or dropped
        packed = reader.pack(item.question, [item.passage, *distractors])
        if item.passage not in packed.passages:
            return None
    prompt = reader.encode(packed.prompt)
    ans = reader.tokenizer.encode(item.answer) + [reader.tokenizer.eos_id]
    if len(prompt) + len(ans) > reader.model.config.block_size or len(ans) > reader.max_new_tokens:
        return None
    ids = prompt + ans
    targets = [-100] * (len(prompt) - 1) + ans + [-100]
    return ids, targets


def _evaluate_qa(
    reader: Any, qa: list[Any], contexts: dict[str, list[list[str]]], copy: bool = False
) -> dict:
    from llmbook.applications import rag

    out = {}
    for name, ctxs in contexts.items():
        rows = []
        for q, passages in zip(qa, ctxs):
            text, packed = reader.read(q.question, passages, copy=copy)
            rows.append(
                {
                    "answer": text,
                    "em": rag.exact_match(text, q.answer),
                    "contains": rag.contains_match(text, q.answer),
                    "f1": rag.char_f1(text, q.answer),
                    "n_passages": len(packed.passages),
                    "cut": packed.cut,
                    "n_tokens": packed.n_tokens,
                    "gold_in_context": any(q.answer in p for p in packed.passages),
                }
            )
        out[name] = rows
    return out


@builder("rag-reader")
def build_rag_reader(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    import numpy as np

    from llmbook.applications import rag, retrieval
    from llmbook.data.people_daily import load_people_daily
    from llmbook.data.registry import hash_fraction, shipped_checkpoint
    from llmbook.optim import warmup_cosine
    from llmbook.training.checkpoint import load_checkpoint, save_checkpoint

    cfg = dict(art.config.get("reader", {}))
    steps, batch = int(cfg.get("steps", 3000)), int(cfg.get("batch_size", 16))
    lr, seed = float(cfg.get("lr", 1e-3)), int(cfg.get("seed", 0))
    block, max_passage = int(cfg.get("block_size", 256)), int(cfg.get("max_passage", 200))
    every, ckpt_every = int(cfg.get("eval_every", 500)), int(cfg.get("ckpt_every", 250))
    torch.manual_seed(seed)

    base, tok, _ = load_checkpoint(shipped_checkpoint(cfg.get("base", "gpt-modern")))
    model = lengthen_context(base, block)
    reader = rag.Reader(model, tok, max_new_tokens=int(cfg.get("max_new_tokens", 24)))

    qa = retrieval.load_qa()
    qa_texts = {q.passage for q in qa}
    sents = load_people_daily()
    train_pool: list[Any] = []
    valid_pool: list[Any] = []
    for s in sents:
        text = "".join(s.words)
        if not 20 <= len(text) <= max_passage or text in qa_texts:
            continue
        (valid_pool if hash_fraction(text) < 0.02 else train_pool).append(s)
    _, docs = retrieval.qa_passages()
    distractor_pool = [d for d in docs if d not in qa_texts]
    ctx.log(f"{art.name}: {len(train_pool):,} training paragraphs, {len(valid_pool)} held out")

    vrng = random.Random(1234)
    valid = [c for s in valid_pool if (c := rag.make_cloze(s.words, s.tags, vrng))][:200]

    # ---- retrieval for the 60 questions (once; kept in the run directory) ----
    ranks = ctx.load_state("rankings.json", None)
    if ranks is None:
        t0 = time.perf_counter()
        doc_tokens = [retrieval.tokenize_zh(d) for d in docs]
        bm25 = retrieval.BM25(docs, doc_tokens=doc_tokens)
        enc = retrieval.BagEncoder(seed=0)
        retrieval.train_contrastive(enc, docs, steps=150, batch_size=256, seed=0, progress=False)
        dense = retrieval.DenseRetriever(docs, enc.embed)
        ids, _ = retrieval.qa_passages()
        gold = [ids.index(q.passage_id) for q in qa]
        ranks = {
            "bm25": [bm25.search(q.question, 10) for q in qa],
            "dense": [dense.search(q.question, 10) for q in qa],
            "gold": gold,
            "bm25_gold_rank": retrieval.gold_ranks(bm25, [q.question for q in qa], gold),
            "dense_gold_rank": retrieval.gold_ranks(dense, [q.question for q in qa], gold),
            "seconds": time.perf_counter() - t0,
        }
        ctx.save_state("rankings.json", ranks)
    gold_passages = [q.passage for q in qa]
    contexts = {
        name: rag.condition_contexts(which, k, gold_passages, docs, ranks)
        for name, which, k in CONDITIONS
    }

    def cloze_accuracy() -> float:
        return float(
            np.mean(
                [rag.exact_match(reader.read(c.question, [c.passage])[0], c.answer) for c in valid]
            )
        )

    # ---- training (resumable) ----
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    state = ctx.load_state("progress.json", {"step": 0, "losses": [], "curve": [], "seconds": 0.0})
    if ctx.resume and state["step"] > 0 and (ctx.run_dir / "train.pt").exists():
        saved = torch.load(ctx.run_dir / "train.pt", weights_only=True)  # never unpickles code
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        rng = random.Random()
        rng.setstate(saved["rng_state"])
        ctx.log(f"{art.name}: resuming at step {state['step']}")
    else:
        state = {"step": 0, "losses": [], "curve": [], "seconds": 0.0}
        rng = random.Random(seed)
    warmup = min(100, steps // 10)
    t0 = time.perf_counter() - state["seconds"]
    while state["step"] < steps:
        step = state["step"]
        if step % every == 0:
            model.eval()
            gold_em = np.mean(
                [r["em"] for r in _evaluate_qa(reader, qa, {"g": contexts["gold"]})["g"]]
            )
            point = {"step": step, "cloze_em": cloze_accuracy(), "qa_gold_em": float(gold_em)}
            state["curve"].append(point)
            ctx.log(f"{art.name}: {point}")
        model.train()
        examples: list[Any] = []
        while len(examples) < batch:
            s = rng.choice(train_pool)
            item = rag.make_cloze(s.words, s.tags, rng)
            if item is None:
                continue
            distr = rng.sample(distractor_pool, rng.choice([0, 1, 2]))
            if (ex := _example(reader, item, distr, rng)) is not None:
                examples.append(ex)
        T = max(len(x) for x, _ in examples)
        x = torch.full((batch, T), tok.pad_id, dtype=torch.long)
        y = torch.full((batch, T), -100, dtype=torch.long)
        for b, (ids, tg) in enumerate(examples):
            x[b, : len(ids)], y[b, : len(tg)] = torch.tensor(ids), torch.tensor(tg)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(
                step, lr=lr, total_steps=steps, warmup_steps=warmup, min_lr=lr / 10
            )
        h = model.hidden_states(x)
        mask = y != -100
        loss = F.cross_entropy(model.lm_head(h[mask]), y[mask])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["losses"].append(round(loss.item(), 4))
        state["step"] = step + 1
        if state["step"] % 50 == 0:
            ctx.log(f"{art.name}: step {state['step']} loss {np.mean(state['losses'][-50:]):.3f}")
        if state["step"] % ckpt_every == 0 or state["step"] == steps:
            state["seconds"] = time.perf_counter() - t0
            ctx.run_dir.mkdir(parents=True, exist_ok=True)
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "rng_state": rng.getstate()},
                ctx.run_dir / "train.pt",
            )
            ctx.save_state("progress.json", state)
    train_seconds = time.perf_counter() - t0

    # ---- final evaluation ----
    model.eval()
    t1 = time.perf_counter()
    final = _evaluate_qa(reader, qa, contexts)
    final_copy = _evaluate_qa(reader, qa, contexts, copy=True)
    base_reader = rag.Reader(lengthen_context(base, block), tok, reader.max_new_tokens)
    base_copy = _evaluate_qa(
        base_reader, qa, {n: contexts[n] for n in ("gold", "bm25@3")}, copy=True
    )
    cloze_final = cloze_accuracy()
    cloze_copy = float(
        np.mean(
            [
                rag.exact_match(reader.read(c.question, [c.passage], copy=True)[0], c.answer)
                for c in valid
            ]
        )
    )
    state["curve"].append(
        {
            "step": steps,
            "cloze_em": cloze_final,
            "qa_gold_em": float(np.mean([r["em"] for r in final["gold"]])),
        }
    )
    samples = [
        {
            "question": c.question,
            "answer": c.answer,
            "kind": c.kind,
            "passage": c.passage,
            "prediction": reader.read(c.question, [c.passage])[0],
            "prediction_copy": reader.read(c.question, [c.passage], copy=True)[0],
        }
        for c in valid[:20]
    ]
    results = {
        "train_paragraphs": len(train_pool),
        "valid_paragraphs": len(valid_pool),
        "n_cloze_valid": len(valid),
        "cloze_copy_em": cloze_copy,
        "excluded_qa_paragraphs": len(qa_texts),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t1,
        "losses": state["losses"],
        "curve": state["curve"],
        "rankings": ranks,
        "conditions": [list(c) for c in CONDITIONS],
        "answers": final,
        "answers_copy": final_copy,
        "base_answers_copy": base_copy,
        "cloze_samples": samples,
    }
    art.output.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        art.output,
        model,
        tok,
        config=cfg,
        extra={"base": cfg.get("base", "gpt-modern"), "prompt": "llmbook.applications.rag"},
    )
    (art.output / "results.json").write_text(
        json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "cloze_em": cloze_final}
    for name, rows in final.items():
        metrics[f"em_{name}"] = round(float(np.mean([r["em"] for r in rows])), 4)
        metrics[f"contains_{name}"] = round(float(np.mean([r["contains"] for r in rows])), 4)
        rows = final_copy[name]
        metrics[f"em_copy_{name}"] = round(float(np.mean([r["em"] for r in rows])), 4)
    data = (
        f"《人民日报》1998 年 1 月段落（20–{max_passage} 字）自动构造的填空式阅读题：{len(train_pool):,} 段训练，"
        f"按哈希留出 2%（{len(valid_pool)} 段）作验证；问答集 data/eval/qa_zh.jsonl 的 60 个段落"
        "既不出题也不作干扰段落。基座为随书发布的 gpt-modern。"
    )
    return {"metrics": metrics, "data": data}
