"""One trainer for every language model in the book.

:func:`train` takes a model that follows the book's LM interface
(``model(idx, targets) -> (logits, loss)``), two 1-D arrays of token ids and a
:class:`TrainConfig`, and runs the loop that every modern LM trainer runs:

1. draw a batch of random windows of ``block_size + 1`` tokens;
2. forward and backward pass, optionally in mixed precision (bf16 autocast, or fp16 with a
   gradient scaler) and accumulated over several micro-batches;
3. clip the gradient norm, set the learning rate (linear warm-up, then cosine decay) and
   take an optimizer step (AdamW by default; fused on CUDA) — the schedule and the step
   are the ones every loop of the book shares (:mod:`llmbook.optim`);
4. now and then evaluate on held-out windows and save a checkpoint.

Checkpoints hold the model, the optimizer, the step, the history and the states of every
random generator (Python, NumPy, PyTorch and the window sampler), so a run that is
interrupted and resumed produces *the same* loss curve as one that is not.  The same
function also runs under ``torchrun`` with DistributedDataParallel
(:mod:`llmbook.training.distributed`).
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from llmbook.data.lmdata import WindowSampler, encode_corpus
from llmbook.optim import optimizer_step, warmup_cosine
from llmbook.text.tokenizers import BaseTokenizer
from llmbook.training.distributed import DistInfo, dist_info
from llmbook.utils import get_device, set_seed

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "encode_corpus",
    "lr_at",
    "make_optimizer",
    "resolve_dtype",
    "evaluate_loss",
    "OPTIMIZERS",
]

OPTIMIZERS = ("adamw", "adam", "sgd", "momentum")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TrainConfig:
    """Everything that controls a training run (saved with every checkpoint)."""

    max_steps: int = 1000
    batch_size: int = 32  #: windows per micro-batch (all processes together under DDP)
    block_size: int = 128  #: tokens per window (the model's context length or less)
    lr: float = 1e-3  #: peak learning rate, reached after warm-up
    min_lr: float = 1e-4  #: learning rate at the end of the cosine decay
    warmup_steps: int = 100
    weight_decay: float = 0.1  #: applied to matrices only, not to biases and LayerNorm
    grad_clip: float = 1.0  #: max global gradient norm; 0 disables clipping
    grad_accum_steps: int = 1  #: micro-batches per optimizer step
    eval_interval: int = 100  #: evaluate every this many steps (0: only at the end)
    eval_batches: int = 20  #: held-out batches per evaluation
    device: str | None = None  #: None: CUDA > MPS > CPU
    dtype: str = "auto"  #: "auto", "float32", "bfloat16" or "float16"
    compile: bool = False  #: torch.compile the model
    seed: int = 0
    out_dir: str | None = None  #: where checkpoints go (None: no checkpoints)
    ckpt_interval: int = 0  #: save a checkpoint every this many steps (0: only at the end)
    progress: bool = True  #: show a tqdm progress bar
    optimizer: str = "adamw"  #: "adamw", "adam", "sgd" or "momentum"
    beta1: float = 0.9
    beta2: float = 0.95
    momentum: float = 0.9  #: for optimizer="momentum"
    resume: bool = False  #: continue from the checkpoint in out_dir if there is one
    #: switch on torch.use_deterministic_algorithms (process-wide; matters on GPUs only)
    deterministic: bool = False

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "block_size", "grad_accum_steps", "eval_batches")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        for name in ("warmup_steps", "eval_interval", "ckpt_interval", "seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {v!r}")
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(
                f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
            )
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(
                f"TrainConfig.dtype must be 'auto' or one of {sorted(DTYPES)}, got {self.dtype!r}"
            )
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0")
        if self.resume and self.out_dir is None:
            raise ValueError("resume=True needs out_dir: the directory that holds the checkpoint")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict (e.g. a TOML table), naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig key(s) {unknown}; valid keys are {sorted(known)}"
            )
        return cls(**d)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.block_size


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    tokens_per_s: float = 0.0  #: training throughput (evaluation and saving excluded)
    seconds: float = 0.0  #: wall time of this call
    steps: int = 0  #: optimizer steps completed in total (including resumed ones)
    checkpoint: str | None = None  #: directory of the last checkpoint, if any

    @property
    def val_losses(self) -> list[tuple[int, float]]:
        return [(h["step"], h["val_loss"]) for h in self.history if h.get("val_loss") is not None]

    @property
    def final_val_loss(self) -> float | None:
        vl = self.val_losses
        return vl[-1][1] if vl else None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of the run ``cfg`` describes.

    Linear warm-up over ``cfg.warmup_steps``, then cosine decay to ``cfg.min_lr`` at
    ``cfg.max_steps``: :func:`llmbook.optim.warmup_cosine`.
    """
    return warmup_cosine(
        step,
        lr=cfg.lr,
        total_steps=cfg.max_steps,
        warmup_steps=cfg.warmup_steps,
        min_lr=cfg.min_lr,
    )


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 on GPUs that support it, else fp16 on CUDA, else float32."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer``; weight decay only on matrices.

    Biases and LayerNorm gains (1-D tensors) are not decayed: shrinking them toward zero
    has no regularising meaning.  AdamW uses the fused CUDA kernel on GPUs.
    """
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        extra = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **extra)
    if cfg.optimizer == "adam":  # L2 penalty added to the gradient (coupled), as in Adam
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.SGD(groups, lr=cfg.lr)


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Mean loss (nats per token) of ``model`` over fixed held-out ``batches``."""
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches:
        with _autocast(device, dtype):
            _, loss = model(x.to(device), y.to(device))
        assert loss is not None
        total += float(loss)
    model.train(was_training)
    return total / max(1, len(batches))


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_rng_{i}"] = s
    version, state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return tensors, {"python": [version, list(state), gauss], "numpy": _jsonable(np_state)}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_rng"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda_rng_")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    version, state, gauss = js["python"]
    random.setstate((version, tuple(state), gauss))
    np_state = dict(js["numpy"])
    np_state["state"] = {
        k: np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v
        for k, v in np_state["state"].items()
    }
    np.random.set_state(np_state)


def _check_ids(ids: Any, name: str, vocab_size: int | None) -> np.ndarray:
    arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D integer array of token ids, got {arr.shape} {arr.dtype}"
        )
    if vocab_size is not None and len(arr) and int(arr.max()) >= vocab_size:
        raise ValueError(
            f"{name} contains id {int(arr.max())} but the model's vocab_size is {vocab_size}; "
            "build the model with the tokenizer's vocab_size"
        )
    return arr


def train(
    model: nn.Module,
    train_ids: Any,
    valid_ids: Any,
    config: TrainConfig,
    *,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    tokenizer: BaseTokenizer | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on random windows of ``train_ids``; evaluate on ``valid_ids``.

    ``callback(record)`` is called after every step with that step's history record;
    returning ``True`` stops training early.  ``tokenizer`` and ``extra`` are stored in
    checkpoints (``out_dir/last``).  Under ``torchrun`` (an initialised process group) the
    model is wrapped in DistributedDataParallel and every process trains on its slice of
    each batch.  Returns a :class:`TrainResult`; ``result.model`` is the trained (unwrapped)
    model in eval mode.
    """
    from llmbook.training.checkpoint import (
        check_writable,
        load_trainer_state,
        load_weights,
        save_checkpoint,
    )

    t_start = time.perf_counter()
    cfg = config
    mcfg = getattr(model, "config", None)
    vocab = getattr(mcfg, "vocab_size", None)
    model_block = getattr(mcfg, "block_size", None)
    if isinstance(model_block, int) and cfg.block_size > model_block:
        raise ValueError(
            f"TrainConfig.block_size {cfg.block_size} is longer than the model's block_size "
            f"{model_block}; use block_size <= {model_block}"
        )
    train_arr = _check_ids(train_ids, "train_ids", vocab)
    valid_arr = _check_ids(valid_ids, "valid_ids", vocab)
    info: DistInfo = dist_info()
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {cfg.batch_size} must be divisible by the number of processes "
            f"{info.world_size}: every process trains on an equal slice of each batch"
        )
    set_seed(cfg.seed, deterministic=cfg.deterministic)
    device = get_device(cfg.device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    dtype = resolve_dtype(cfg.dtype, device)
    model.to(device)
    model.train()
    sampler = WindowSampler(train_arr, cfg.block_size, seed=cfg.seed)
    eval_sampler = WindowSampler(valid_arr, cfg.block_size, seed=cfg.seed + 1)
    eval_set = [eval_sampler.sample(cfg.batch_size) for _ in range(cfg.eval_batches)]
    optimizer = make_optimizer(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    history: list[dict[str, Any]] = []
    step = 0
    ckpt_dir = Path(cfg.out_dir) / "last" if cfg.out_dir else None
    if ckpt_dir is not None and info.is_main:
        # A read-only or full disk fails now, not at the first checkpoint after hours of
        # training (found by tests/test_faults.py).  Room for two checkpoints (the new one
        # is written next to the old one), each the weights plus two Adam moments.
        n_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        check_writable(ckpt_dir.parent, need_bytes=2 * 3 * n_bytes)
    # A SIGKILL between the two renames of save_checkpoint leaves only out_dir/.last.old
    # (load_trainer_state falls back to it); resume from it instead of silently starting
    # again at step 0, and let a damaged checkpoint be a clear error (tests/test_faults.py).
    if (
        cfg.resume
        and ckpt_dir is not None
        and (ckpt_dir.exists() or ckpt_dir.with_name(f".{ckpt_dir.name}.old").is_dir())
    ):
        st = load_trainer_state(ckpt_dir)
        # strict: a tensor missing from the checkpoint is an error, not a silently fresh weight
        load_weights(model, st["model"], ckpt_dir / "model.safetensors")
        if st["optimizer"] is not None:
            optimizer.load_state_dict(st["optimizer"])
        js = st["json"]
        step, history = int(js["step"]), list(js["history"])
        sampler.load_state_dict(js["sampler"])
        if "scaler" in js and scaler.is_enabled():
            scaler.load_state_dict(js["scaler"])
        _set_rng_state(st["tensors"], js["rng"])

    run_model: nn.Module = model
    if cfg.compile:
        run_model = torch.compile(model)  # type: ignore[assignment]
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run_model = DDP(run_model, device_ids=[device.index] if device.type == "cuda" else None)

    def save(path: Path) -> None:
        tensors, rng_js = _rng_state()
        js = {"step": step, "history": history, "sampler": sampler.state_dict(), "rng": rng_js}
        if scaler.is_enabled():
            js["scaler"] = scaler.state_dict()
        meta = dict(extra or {})
        meta.update({"steps": step, "val_loss": _last_val(history)})
        save_checkpoint(
            path,
            model,
            tokenizer,
            asdict(cfg) | {"dtype_used": str(dtype)},
            meta,
            trainer_state={"optimizer": optimizer.state_dict(), "tensors": tensors, "json": js},
        )

    local = cfg.batch_size // info.world_size
    lo = info.rank * local
    bar = _progress(cfg.progress and info.is_main, step, cfg.max_steps)
    train_seconds = 0.0
    tokens_done = 0
    stop = False
    while step < cfg.max_steps and not stop:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        loss_sum = 0.0
        for micro in range(cfg.grad_accum_steps):
            x, y = sampler.sample(cfg.batch_size)
            x, y = x[lo : lo + local].to(device), y[lo : lo + local].to(device)
            sync = micro == cfg.grad_accum_steps - 1 or not info.enabled
            ctx = contextlib.nullcontext() if sync else run_model.no_sync()  # type: ignore[operator]
            with ctx:
                with _autocast(device, dtype):
                    _, loss = run_model(x, y)
                assert loss is not None
                scaler.scale(loss / cfg.grad_accum_steps).backward()
            loss_sum += float(loss.detach())
        # the gradients of every micro-batch are summed: clip, step, zero them
        optimizer_step(model, optimizer, None, lr=lr, clip=cfg.grad_clip, scaler=scaler)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        train_seconds += dt
        tokens_done += cfg.tokens_per_step
        step += 1
        record: dict[str, Any] = {
            "step": step,
            "train_loss": loss_sum / cfg.grad_accum_steps,
            "val_loss": None,
            "lr": lr,
            "tokens_per_s": cfg.tokens_per_step / dt if dt > 0 else float("inf"),
        }
        if (cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_steps:
            record["val_loss"] = evaluate_loss(model, eval_set, device, dtype)
        history.append(record)
        if bar is not None:
            post = {"loss": f"{record['train_loss']:.3f}", "tok/s": f"{record['tokens_per_s']:.0f}"}
            if record["val_loss"] is not None:
                post["val"] = f"{record['val_loss']:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
        if (
            ckpt_dir is not None
            and info.is_main
            and ((cfg.ckpt_interval and step % cfg.ckpt_interval == 0) or step == cfg.max_steps)
        ):
            save(ckpt_dir)
        if callback is not None and callback(record):
            stop = True
    if bar is not None:
        bar.close()
    model.eval()
    return TrainResult(
        model=model,
        history=history,
        tokens_per_s=tokens_done / train_seconds if train_seconds > 0 else 0.0,
        seconds=time.perf_counter() - t_start,
        steps=step,
        checkpoint=str(ckpt_dir) if ckpt_dir is not None and ckpt_dir.exists() else None,
    )


def _last_val(history: list[dict[str, Any]]) -> float | None:
    for h in reversed(history):
        if h.get("val_loss") is not None:
            return float(h["val_loss"])
    return None


def _progress(enabled: bool, initial: int, total: int) -> Any:
    if not enabled:
        return None
    from llmbook.utils import progress_bar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return progress_bar(total=total, initial=initial, desc="训练", unit="步", leave=False)
