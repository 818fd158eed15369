"""Chapter 5's GPT against Hugging Face GPT-2 at an identical configuration, on this CPU.

Measured in one run, on the same machine, with the same number of threads:

1. training throughput (tokens/s of forward + backward + AdamW step) of
   ``llmbook.models.gpt.GPT`` vs ``transformers.GPT2LMHeadModel`` — same layers, heads,
   width, context, vocabulary and batch; ratio = ours / peer (> 1: we are faster);
2. model-FLOPs utilisation (MFU): achieved training FLOP/s (``flops_per_token`` ×
   tokens/s, i.e. 6·N plus attention) as a share of this machine's measured matmul FLOP/s;
3. generating 256 new tokens with the KV cache vs without (recomputing the whole
   sequence every step); ratio = uncached time / cached time;
4. our cached greedy generation vs ``GPT2LMHeadModel.generate`` (greedy, ``use_cache``)
   on the same weights; ratio = peer time / our time.  Both produce the same tokens
   (checked here and in ``tests/test_generate.py``).

Timings alternate between the two contestants and take the median of several repeats, so
that load from other processes on a shared machine affects both alike.

Usage: ``python benchmarks/bench_gpt.py`` (also run by ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmbook.generation.decoding import generate  # noqa: E402
from llmbook.models.gpt import GPT, GPTConfig  # noqa: E402
from llmbook.models.hf import to_hf  # noqa: E402

THREADS = 2
# The training comparison uses a config of the size chapter 5 trains on a CPU.
TRAIN_CFG = dict(vocab_size=6551, block_size=128, n_layer=4, n_head=4, n_embd=256)
BATCH = 16
GEN_CFG = dict(vocab_size=6551, block_size=512, n_layer=6, n_head=6, n_embd=384)
NEW_TOKENS = 256


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _alternate(
    a: Callable[[], object], b: Callable[[], object], rounds: int, per: int
) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_median_time(a, per))
        tb.append(_median_time(b, per))
    return min(ta), min(tb)


def matmul_flops(n: int = 1024, repeats: int = 10) -> float:
    """Measured float32 matmul FLOP/s of this machine (the MFU denominator)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = min(_median_time(lambda: a @ b, repeats) for _ in range(3))
    return 2 * n**3 / t


def bench_training(steps: int = 3, rounds: int = 3) -> dict[str, float]:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(**TRAIN_CFG)).train()  # type: ignore[arg-type]
    hf = to_hf(ours).train()
    idx = torch.randint(0, TRAIN_CFG["vocab_size"], (BATCH, TRAIN_CFG["block_size"]))
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_b = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def step_ours() -> None:
        _, loss = ours(idx[:, :-1], idx[:, 1:])
        assert loss is not None
        loss.backward()
        opt_a.step()
        opt_a.zero_grad(set_to_none=True)

    def step_hf() -> None:
        hf(idx, labels=idx).loss.backward()  # HF shifts the labels inside
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)

    step_ours(), step_hf()  # warm-up
    t_ours, t_hf = _alternate(step_ours, step_hf, rounds, steps)
    tokens = BATCH * (TRAIN_CFG["block_size"] - 1)
    flops = ours.flops_per_token(seq_len=TRAIN_CFG["block_size"] - 1)
    return {
        "ours_tok_s": tokens / t_ours,
        "hf_tok_s": tokens / t_hf,
        "params": ours.num_parameters(),
        "flops_per_token": flops,
        "achieved_flops": flops * tokens / t_ours,
    }


def bench_generation(rounds: int = 2) -> dict[str, float]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**GEN_CFG)).eval()  # type: ignore[arg-type]
    hf = to_hf(model).eval()
    prompt = torch.randint(0, GEN_CFG["vocab_size"], (1, 16))

    def cached() -> torch.Tensor:
        return generate(model, prompt, NEW_TOKENS, use_cache=True)

    def uncached() -> torch.Tensor:
        return generate(model, prompt, NEW_TOKENS, use_cache=False)

    def peer() -> torch.Tensor:
        with torch.no_grad():
            return hf.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )

    same = bool(torch.equal(cached(), uncached())) and bool(torch.equal(cached(), peer()))
    t_cached, t_uncached = _alternate(cached, uncached, rounds, 1)
    t_cached2, t_peer = _alternate(cached, peer, rounds, 1)
    return {
        "cached_s": min(t_cached, t_cached2),
        "uncached_s": t_uncached,
        "hf_generate_s": t_peer,
        "identical_tokens": same,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """All four measurements; returns the dict ``benchmarks/run_all.py`` renders."""
    torch.set_num_threads(THREADS)
    peak = matmul_flops()
    tr = bench_training(steps=2 if quick else 3, rounds=2 if quick else 3)
    peak = max(peak, matmul_flops())  # measured before and after: the better of the two
    gen = bench_generation(rounds=1 if quick else 2)
    mfu = tr["achieved_flops"] / peak
    cfg = ", ".join(f"{k}={v}" for k, v in TRAIN_CFG.items())
    rows = [
        {
            "metric": "training throughput vs GPT2LMHeadModel",
            "ours": tr["ours_tok_s"],
            "peer": tr["hf_tok_s"],
            "ratio": tr["ours_tok_s"] / tr["hf_tok_s"],
            "unit": "tokens/s",
            "note": f"{cfg}, batch={BATCH}, AdamW, fp32",
        },
        {
            "metric": "CPU MFU (training)",
            "ours": tr["achieved_flops"] / 1e9,
            "peer": peak / 1e9,
            "ratio": mfu,
            "unit": "GFLOP/s",
            "note": "achieved (6N + attention) / measured 1024² matmul",
        },
        {
            "metric": f"KV cache vs no cache, {NEW_TOKENS} new tokens",
            "ours": gen["cached_s"],
            "peer": gen["uncached_s"],
            "ratio": gen["uncached_s"] / gen["cached_s"],
            "unit": "s",
            "note": "greedy, batch 1, prompt 16; identical tokens"
            if gen["identical_tokens"]
            else "TOKENS DIFFER",
        },
        {
            "metric": f"generate vs GPT2LMHeadModel.generate, {NEW_TOKENS} tokens",
            "ours": gen["cached_s"],
            "peer": gen["hf_generate_s"],
            "ratio": gen["hf_generate_s"] / gen["cached_s"],
            "unit": "s",
            "note": "greedy with KV cache on the same weights",
        },
    ]
    return {
        "title": "Chapter 5 GPT vs Hugging Face GPT-2 (CPU)",
        "rows": rows,
        "notes": (
            f"{THREADS} threads. Parameters of the training model: {tr['params']:,}; "
            f"{tr['flops_per_token'] / 1e6:.1f} MFLOP per token (training). Ratios > 1 mean "
            "ours is faster (MFU: the share of measured matmul FLOP/s)."
        ),
    }


def main() -> None:
    result = run(quick="--quick" in sys.argv)
    for r in result["rows"]:
        print(
            f"{r['metric']}: ours {r['ours']:.4g}, peer {r['peer']:.4g} {r['unit']} -> ratio {r['ratio']:.3f}  ({r['note']})"
        )
    print(result["notes"])


if __name__ == "__main__":
    main()
