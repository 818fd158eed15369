"""Chapter 5.5's ablation: from GPT-2 to the llama preset, one switch at a time.

Bits per character come from the shipped artifact ``data/results/ch5-ablation`` (built by
``python -m llmbook.experiments build ch5-ablation``: every variant trained on the same
tokens, schedule and seed); the peer of every variant is the GPT-2 baseline
(ratio = GPT-2 bpc / variant bpc, > 1: the variant is better).  Training throughput is
measured here, in one run: every variant's fresh model is timed in turns on the same batch
(:func:`llmbook.experiments.ablation.throughput_of_configs`), ratio = variant / GPT-2.

Usage: ``python benchmarks/bench_ablation.py`` (also run by ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from llmbook.data.registry import data_path  # noqa: E402
from llmbook.experiments.ablation import throughput_of_configs  # noqa: E402
from llmbook.models.gpt import GPTConfig  # noqa: E402

THREADS = 2
VOCAB = 6551  # the Tang-poem character vocabulary the artifact was trained with


def run(rounds: int = 3) -> dict[str, Any]:
    """The ablation table: bpc from the artifact, throughput measured now (for run_all.py)."""
    torch.set_num_threads(THREADS)
    result = json.loads(data_path("results/ch5-ablation/ablation.json").read_text("utf-8"))
    rows = result["variants"]
    base = next(r for r in rows if r["name"] == "gpt2")
    configs = {r["name"]: GPTConfig.from_dict({**r["config"], "vocab_size": VOCAB}) for r in rows}
    tps = throughput_of_configs(configs, batch_size=16, block_size=80, steps=2, rounds=rounds)
    out = []
    for r in rows:
        params = f"{r['parameters']:,} parameters ({r['active_parameters']:,} active)"
        out.append(
            dict(
                metric=f"valid bpc, {r['name']}",
                ours=f"{r['valid_bpc']:.3f}",
                peer=f"{base['valid_bpc']:.3f}",
                ratio=base["valid_bpc"] / r["valid_bpc"],
                unit="bits/char",
                note=f"test {r['test_bpc']:.3f}; {params}; switches {r['set'] or 'none'}",
            )
        )
    for name, v in tps.items():
        out.append(
            dict(
                metric=f"training throughput, {name} vs gpt2",
                ours=v,
                peer=tps["gpt2"],
                ratio=v / tps["gpt2"],
                unit="tokens/s",
                note="fresh model, batch 16 x 80, AdamW, fp32, timed in turns",
            )
        )
    train = result["train"]
    return {
        "title": "Ablation: GPT-2 to the llama preset, one switch at a time (chapter 5.5)",
        "rows": out,
        "notes": (
            f"bpc: the shipped artifact data/results/ch5-ablation ({rows[0]['steps']:,} steps "
            f"x {train['batch_size']} x {train['block_size']} tokens per variant, same seed "
            "and schedule, poem split, character tokens); the model is chapter 5's cpu-small "
            "(4 layers, 4 heads, width 128). Throughput: measured in this run."
        ),
    }


if __name__ == "__main__":
    from run_all import render

    print(render("bench_ablation", run(), 0.0))
