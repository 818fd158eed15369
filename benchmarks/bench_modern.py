"""The modern GPT (llama preset) against Hugging Face Llama, and the memory GQA saves.

Measured in one run, on the same machine, with the same number of threads:

1. training throughput (tokens/s of forward + backward + AdamW step) of
   ``GPT(GPTConfig.llama(...))`` vs ``transformers.LlamaForCausalLM`` with the same
   weights (``llmbook.models.hf.to_hf``): RoPE, RMSNorm, SwiGLU, grouped-query attention,
   no biases; ratio = ours / peer (> 1: we are faster);
2. the KV cache of multi-head (MHA), grouped-query (GQA, ``n_kv_head = n_head / 4``) and
   multi-query attention (MQA, ``n_kv_head = 1``) at one configuration: bytes of the
   cache for a batch at full context (ratio = MHA bytes / these bytes, i.e.
   ``n_head / n_kv_head``), and greedy decoding speed with that cache after a long
   prompt (new tokens/s of the batch, prefill not timed, best of many short rounds;
   ratio = these / MHA).  The three models differ only in ``n_kv_head`` (so GQA and MQA
   also have smaller K/V projections).  On a CPU most of a decoding step is the weight
   matrices (the output layer above all), so the cache's share, and with it the gain,
   grows with the context and the batch.

Timings alternate between the contestants and take the median of several repeats, so
that load from other processes on a shared machine affects all alike (the helpers live in
:mod:`llmbook.evaluation.throughput`, which section 4.5 of the book also uses).

Usage: ``python benchmarks/bench_modern.py [--quick]`` (also run by
``benchmarks/run_all.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from llmbook.evaluation.throughput import decode_seconds, training_throughput  # noqa: E402
from llmbook.models.gpt import GPT, GPTConfig  # noqa: E402
from llmbook.models.hf import to_hf  # noqa: E402

THREADS = 2
# the size chapter 5 trains on a CPU (as in bench_gpt.py), with the modern switches
TRAIN_CFG = dict(vocab_size=6551, block_size=128, n_layer=4, n_head=4, n_embd=256)
BATCH = 16
# decoding: a long context, so that reading the cache is a large part of every step
GEN_CFG = dict(vocab_size=6551, block_size=1024, n_layer=4, n_head=8, n_embd=256)
GEN_BATCH = 8
NEW_TOKENS = 16  #: decoded per round; short rounds, many of them: the best is least disturbed
KV_HEADS = {"MHA": 8, "GQA": 2, "MQA": 1}


def bench_training(steps: int = 3, rounds: int = 3) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = GPT(GPTConfig.llama(**TRAIN_CFG)).train()  # type: ignore[arg-type]
    hf = to_hf(ours).train()
    idx = torch.randint(0, TRAIN_CFG["vocab_size"], (BATCH, TRAIN_CFG["block_size"]))
    with torch.no_grad():  # the same function before the race
        same = torch.allclose(ours.eval()(idx)[0], hf.eval()(idx).logits, atol=1e-4)
    ours_tok_s, hf_tok_s = training_throughput([ours, hf], idx, steps, rounds)
    return {
        "ours_tok_s": ours_tok_s,
        "hf_tok_s": hf_tok_s,
        "params": ours.num_parameters(),
        "kv_heads": ours.config.kv_heads,
        "same_logits": same,
    }


def bench_kv_cache(prompt_len: int, new_tokens: int, rounds: int) -> dict[str, dict[str, float]]:
    runs = {}
    prompt = torch.randint(0, GEN_CFG["vocab_size"], (GEN_BATCH, prompt_len))
    for name, kv in KV_HEADS.items():
        torch.manual_seed(0)
        model = GPT(GPTConfig.llama(**GEN_CFG, n_kv_head=kv)).eval()  # type: ignore[arg-type]
        cache = model.new_cache(GEN_BATCH)
        with torch.no_grad():
            logits, _ = model(prompt, cache=cache)  # prefill once
        decode_seconds(model, cache, logits, 2)  # warm-up
        runs[name] = (model, cache, logits)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):  # the models take turns; the best round of each counts
        for name, run in runs.items():
            best[name] = min(best[name], decode_seconds(*run, new_tokens))
    return {
        name: {
            "bytes": float(cache.nbytes),
            "tok_s": GEN_BATCH * new_tokens / best[name],
            "kv_heads": float(model.config.kv_heads),
        }
        for name, (model, cache, _) in runs.items()
    }


def _row(
    metric: str, ours: float, peer: float, unit: str, note: str, ratio: float | None = None
) -> dict[str, Any]:
    """One row of the table run_all.py renders; ratio defaults to ours / peer."""
    ratio = ours / peer if ratio is None else ratio
    return dict(metric=metric, ours=ours, peer=peer, ratio=ratio, unit=unit, note=note)


def run(quick: bool = False) -> dict[str, Any]:
    """Training vs LlamaForCausalLM, and the KV cache of MHA/GQA/MQA (for run_all.py)."""
    torch.set_num_threads(THREADS)
    tr = bench_training(steps=2 if quick else 3, rounds=2 if quick else 4)
    prompt_len = 512 if quick else GEN_CFG["block_size"] - 64
    kv = bench_kv_cache(prompt_len, NEW_TOKENS, rounds=4 if quick else 12)
    cfg = ", ".join(f"{k}={v}" for k, v in TRAIN_CFG.items())
    note = f"{cfg}, n_kv_head={tr['kv_heads']}, batch={BATCH}, AdamW, fp32"
    note += "" if tr["same_logits"] else "; LOGITS DIFFER"
    rows = [
        _row(
            "training throughput, llama preset vs LlamaForCausalLM",
            tr["ours_tok_s"],
            tr["hf_tok_s"],
            "tokens/s",
            note,
        )
    ]
    mha = kv["MHA"]
    for name in ("GQA", "MQA"):
        r = kv[name]
        heads = f"n_kv_head={r['kv_heads']:.0f} of n_head={GEN_CFG['n_head']}"
        memory = f"{heads}; batch {GEN_BATCH} at block_size {GEN_CFG['block_size']}, fp32"
        rows.append(
            _row(
                f"KV cache memory, {name} vs MHA",
                r["bytes"] / 2**20,
                mha["bytes"] / 2**20,
                "MiB",
                memory,
                mha["bytes"] / r["bytes"],
            )
        )
        speed = f"{heads}; batch {GEN_BATCH}, {NEW_TOKENS} tokens after a {prompt_len}-token "
        rows.append(
            _row(
                f"cached greedy decoding, {name} vs MHA",
                r["tok_s"],
                mha["tok_s"],
                "tokens/s",
                speed + "prompt (prefill not timed)",
            )
        )
    gen = ", ".join(f"{k}={v}" for k, v in GEN_CFG.items())
    return {
        "title": "Modern decoder vs Hugging Face Llama (CPU)",
        "rows": rows,
        "notes": (
            f"{THREADS} threads. Training model: {tr['params']:,} parameters, the same weights "
            f"in both. Decoding models: llama preset with {gen}. Ratios > 1 mean ours is "
            "faster, or for memory that the cache is that many times smaller."
        ),
    }


def main() -> None:
    """Print the section ``run_all.py`` would write to RESULTS.md."""
    from run_all import render

    t0 = time.perf_counter()
    result = run(quick="--quick" in sys.argv)
    print(render("bench_modern", result, time.perf_counter() - t0))


if __name__ == "__main__":
    main()
