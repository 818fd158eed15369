"""Trainer: schedule, learning, exact resume, accumulation, optimizers, precision, errors."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_gpt

from llmbook.data.lmdata import WindowSampler, encode_corpus, load_ids, save_ids
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.trainer import TrainConfig, lr_at, make_optimizer, train

V = 24

model = partial(tiny_gpt, vocab_size=V)  # model(seed=..., dropout=...); train() sets train mode


def corpus(n: int = 4000, seed: int = 0) -> np.ndarray:
    """A learnable stream: a random walk where the next id is the previous one + 1, 2 or 3."""
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.integers(1, 4, size=n)) % V).astype(np.uint16)


def cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        max_steps=20,
        batch_size=8,
        block_size=16,
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=4,
        eval_interval=5,
        eval_batches=2,
        progress=False,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def losses(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(h["step"], h["train_loss"], h["val_loss"], h["lr"]) for h in history]


def test_lr_schedule_warmup_then_cosine() -> None:
    c = cfg(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, c) == pytest.approx(0.1)
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0)
    assert lr_at(55, c) == pytest.approx(0.55)  # half-way through the cosine
    assert lr_at(100, c) == pytest.approx(0.1)
    lrs = [lr_at(s, c) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_training_learns_a_simple_stream() -> None:
    ids = corpus()
    res = train(model(), ids, corpus(1000, seed=1), cfg(max_steps=60, eval_interval=20))
    vl = res.val_losses
    assert vl[0][0] == 20 and vl[-1][0] == 60
    # 3 equally likely successors: the best possible loss is ln 3 ≈ 1.10 (start: ln 24 ≈ 3.18)
    assert vl[-1][1] < 1.5 < vl[0][1] + 1
    assert res.steps == 60 and len(res.history) == 60
    assert res.tokens_per_s > 0 and res.seconds > 0
    assert not res.model.training


def test_runs_are_reproducible_with_the_same_seed() -> None:
    a = train(model(), corpus(), corpus(500, 1), cfg(max_steps=8))
    b = train(model(), corpus(), corpus(500, 1), cfg(max_steps=8))
    assert losses(a.history) == losses(b.history)


def test_interrupted_and_resumed_run_gives_the_same_loss_curve(tmp_path: Path) -> None:
    full = train(model(dropout=0.1), corpus(), corpus(500, 1), cfg(max_steps=20))

    class Crash(Exception):
        pass

    def crash_at_12(rec: dict[str, Any]) -> None:
        if rec["step"] == 12:
            raise Crash

    with pytest.raises(Crash):
        train(
            model(dropout=0.1),
            corpus(),
            corpus(500, 1),
            cfg(out_dir=str(tmp_path), ckpt_interval=5),
            callback=crash_at_12,
        )
    # the last complete checkpoint is step 10; a fresh process would start from new weights
    resumed = train(
        model(seed=123, dropout=0.1),
        corpus(),
        corpus(500, 1),
        cfg(out_dir=str(tmp_path), ckpt_interval=5, resume=True),
    )
    assert resumed.steps == 20
    assert losses(resumed.history) == losses(full.history)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_resume_from_a_checkpoint_with_a_missing_tensor_fails(tmp_path: Path) -> None:
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from llmbook.training.checkpoint import CheckpointError

    train(model(), corpus(), corpus(500, 1), cfg(max_steps=2, out_dir=str(tmp_path)))
    last = tmp_path / "last"
    weights = load_file(str(last / "model.safetensors"))
    del weights["blocks.0.ln_1.weight"]
    save_file(weights, str(last / "model.safetensors"))
    manifest = json.loads((last / "checkpoint.json").read_text(encoding="utf-8"))
    manifest["files"]["model.safetensors"] = hashlib.sha256(
        (last / "model.safetensors").read_bytes()
    ).hexdigest()  # consistent checksums: only the weight check can notice
    (last / "checkpoint.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"missing tensors \['blocks.0.ln_1.weight'\]"):
        train(
            model(), corpus(), corpus(500, 1), cfg(max_steps=4, out_dir=str(tmp_path), resume=True)
        )


def test_set_seed_and_train_leave_the_global_deterministic_mode_alone() -> None:
    from llmbook.utils import set_seed

    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        set_seed(0, deterministic=False)
        train(model(), corpus(), corpus(500, 1), cfg(max_steps=1))
        assert not torch.are_deterministic_algorithms_enabled()
        train(model(), corpus(), corpus(500, 1), cfg(max_steps=1, deterministic=True))
        assert torch.are_deterministic_algorithms_enabled()  # opt-in
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def test_callback_can_stop_early() -> None:
    res = train(model(), corpus(), corpus(500, 1), cfg(), callback=lambda r: r["step"] == 3)
    assert res.steps == 3


def test_gradient_accumulation_equals_a_bigger_batch() -> None:
    one = train(model(), corpus(), corpus(500, 1), cfg(max_steps=1, batch_size=8, grad_clip=0.0))
    acc = train(
        model(),
        corpus(),
        corpus(500, 1),
        cfg(max_steps=1, batch_size=4, grad_accum_steps=2, grad_clip=0.0),
    )
    for p, q in zip(one.model.parameters(), acc.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "momentum"])
def test_every_optimizer_reduces_the_loss(name: str) -> None:
    lr = {"adamw": 1e-2, "adam": 1e-2, "sgd": 0.5, "momentum": 0.1}[name]
    res = train(
        model(),
        corpus(),
        corpus(500, 1),
        cfg(optimizer=name, lr=lr, min_lr=lr / 10, max_steps=25, eval_interval=0),
    )
    assert res.final_val_loss is not None
    assert res.final_val_loss < np.log(V) - 0.5  # start: about ln 24


def test_weight_decay_only_on_matrices() -> None:
    opt = make_optimizer(model(), cfg(weight_decay=0.1), torch.device("cpu"))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"])
    assert all(p.dim() == 1 for p in plain["params"])
    assert isinstance(opt, torch.optim.AdamW)


def test_bf16_autocast_on_cpu() -> None:
    res = train(model(), corpus(), corpus(500, 1), cfg(max_steps=5, dtype="bfloat16"))
    assert all(np.isfinite(h["train_loss"]) for h in res.history)
    assert next(res.model.parameters()).dtype == torch.float32  # master weights stay fp32


def test_fp16_with_grad_scaler_on_cpu() -> None:
    res = train(model(), corpus(), corpus(500, 1), cfg(max_steps=5, dtype="float16"))
    assert all(np.isfinite(h["train_loss"]) for h in res.history)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_compile_matches_eager() -> None:
    eager = train(model(), corpus(), corpus(500, 1), cfg(max_steps=3))
    compiled = train(model(), corpus(), corpus(500, 1), cfg(max_steps=3, compile=True))
    for a, b in zip(losses(eager.history), losses(compiled.history)):
        assert a[1] == pytest.approx(b[1], rel=1e-4)


def test_memory_mapped_ids(tmp_path: Path) -> None:
    path = save_ids(tmp_path / "train", corpus())
    ids = load_ids(path)
    assert isinstance(ids, np.memmap)
    res = train(model(), ids, corpus(500, 1), cfg(max_steps=3))
    ref = train(model(), corpus(), corpus(500, 1), cfg(max_steps=3))
    assert losses(res.history) == losses(ref.history)


def test_window_sampler_targets_are_shifted_inputs() -> None:
    ids = np.arange(100, dtype=np.uint16)
    x, y = WindowSampler(ids, 10, seed=0).sample(4)
    assert x.shape == y.shape == (4, 10)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)


def test_encode_corpus_adds_bos_and_separator() -> None:
    tok = CharTokenizer.fit(["床前明月光\n", "疑是地上霜\n"])
    ids = encode_corpus(["床前", "明月"], tok)
    assert ids.dtype == np.uint16
    assert tok.decode(ids.tolist(), skip_special=False) == "<bos>床前\n<bos>明月\n"
    assert encode_corpus(["床前"], tok, add_bos=False).tolist() == tok.encode("床前\n")
    no_newline = CharTokenizer.fit(["床前明月光"])
    with pytest.raises(ValueError, match="separator '\\\\n' is not in the tokenizer's vocabulary"):
        encode_corpus(["床前"], no_newline)


def test_bad_config_and_data_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['max_step'\]"):
        TrainConfig.from_dict({"max_step": 3})
    with pytest.raises(ValueError, match="optimizer must be one of"):
        cfg(optimizer="lion")
    with pytest.raises(ValueError, match="dtype"):
        cfg(dtype="fp8")
    with pytest.raises(ValueError, match="min_lr <= lr"):
        cfg(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        cfg(resume=True)
    with pytest.raises(ValueError, match="longer than the model's block_size 16"):
        train(model(), corpus(), corpus(500, 1), cfg(block_size=32))
    with pytest.raises(ValueError, match="vocab_size is 24"):
        train(model(), np.arange(100), corpus(500, 1), cfg())
    with pytest.raises(ValueError, match="fewer than block_size"):
        train(model(), corpus(10), corpus(500, 1), cfg())
