"""llmbook.evaluation.throughput (used by benchmarks/bench_modern.py and section 4.5) and
the --merge mode of benchmarks/run_all.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from llmbook.evaluation.throughput import (
    alternate,
    decode_seconds,
    median_time,
    train_step,
    training_mfu,
    training_throughput,
)
from llmbook.models.gpt import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)


def test_median_time_and_alternate_call_every_function():
    calls = {"a": 0, "b": 0}

    def bump(key: str):
        return lambda: calls.__setitem__(key, calls[key] + 1)

    assert median_time(bump("a"), 3) >= 0 and calls["a"] == 3
    times = alternate([bump("a"), bump("b")], rounds=2, per=3)
    assert len(times) == 2 and all(t >= 0 for t in times)
    assert calls == {"a": 9, "b": 6}
    with pytest.raises(ValueError):
        median_time(bump("a"), 0)
    with pytest.raises(ValueError):
        alternate([bump("a")], rounds=0, per=1)


def test_train_step_lowers_the_loss_and_throughput_is_positive():
    torch.manual_seed(0)
    model = GPT(GPTConfig.llama(**TINY))
    idx = torch.randint(0, 50, (4, 16))
    before = model(idx[:, :-1], idx[:, 1:])[1].item()
    step = train_step(model, idx, lr=1e-2)
    for _ in range(5):
        step()
    assert model(idx[:, :-1], idx[:, 1:])[1].item() < before
    (tok_s,) = training_throughput([model], idx, steps=1, rounds=1)
    assert tok_s > 0 and model.training


def test_training_mfu_is_step_flops_over_step_time_over_peak():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    idx = torch.randint(0, 50, (4, 16))
    r = training_mfu(model, idx, 1e6, matmul_n=64, rounds=2, per=1)
    assert r.peak_flops > 0 and r.step_seconds > 0
    assert r.mfu == pytest.approx(1e6 / r.step_seconds / r.peak_flops)
    # twice the FLOPs per step on the same step time would be twice the utilization
    r2 = training_mfu(model, idx, 2e6, matmul_n=64, rounds=2, per=1)
    assert r2.mfu / r.mfu == pytest.approx(
        2 * (r.step_seconds * r.peak_flops) / (r2.step_seconds * r2.peak_flops)
    )
    with pytest.raises(ValueError, match="flops_per_step"):
        training_mfu(model, idx, 0.0)
    with pytest.raises(ValueError, match="matmul_n"):
        training_mfu(model, idx, 1e6, matmul_n=0)


def test_decode_seconds_rewinds_the_cache():
    torch.manual_seed(0)
    model = GPT(GPTConfig.llama(**TINY)).eval()
    cache = model.new_cache(2)
    with torch.no_grad():
        logits, _ = model(torch.randint(0, 50, (2, 5)), cache=cache)
    assert decode_seconds(model, cache, logits, 3) >= 0 and cache.length == 5
    ticks = iter([10.0, 12.5])
    assert decode_seconds(model, cache, logits, 2, clock=lambda: next(ticks)) == 2.5
    assert cache.length == 5


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_replaces_or_inserts_sections_and_keeps_the_rest():
    merge = _run_all().merge
    existing = "# Results\n\nhead\n\n## A\n\nold a\n\n## B\n\nold b\n\n## GPU\n\ngpu\n"
    out = merge(existing, ["## A\n\nnew a\n", "## C\n\nnew c\n"])
    assert out == (
        "# Results\n\nhead\n\n## A\n\nnew a\n\n## B\n\nold b\n\n## C\n\nnew c\n\n## GPU\n\ngpu\n"
    )
    assert merge("# R\n\n## A\n\nx\n", ["## Z\n\nz\n"]).endswith("## Z\n\nz\n\n")
