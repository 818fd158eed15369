"""Compute, memory and time of training a GPT — estimated from its configuration.

Three questions every practitioner asks before a run, answered with the standard
back-of-the-envelope formulas:

* **How many parameters?** :func:`param_count` counts them from a GPT configuration,
  layer by layer, and equals ``count_parameters(GPT(config))`` (a test checks it).
* **How many FLOPs?** :func:`training_flops`: the classic :math:`C \\approx 6ND`
  (Kaplan et al. 2020) — 2 FLOPs per parameter per token in the forward pass and 4 in
  the backward pass — plus the attention term :math:`6\\,n_\\text{layer}\\,T\\,d` per token
  that :math:`6ND` leaves out.
* **How much memory and time?** :func:`training_memory` adds weights, gradients,
  optimizer states and activations (Korthikanti et al. 2022) for a dtype;
  :func:`estimate_seconds` divides FLOPs by a device's peak throughput times a model
  FLOPs utilisation (MFU); :func:`plan_training` turns parameters and tokens into
  GPU-hours and days on a cluster.  :data:`GPUS` lists common accelerators with their
  datasheet numbers.

Conventions: a multiply–add counts as 2 FLOPs; ``T`` is the context length
(``block_size``) and ``d`` the width (``n_embd``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "GPUSpec",
    "GPUS",
    "DTYPE_BYTES",
    "param_count",
    "param_breakdown",
    "flops_per_token",
    "training_flops",
    "training_memory",
    "estimate_seconds",
    "TrainingPlan",
    "plan_training",
    "zero_memory_per_gpu",
    "pipeline_bubble",
    "measure_matmul_flops",
    "gpt_config_values",
]

#: Bytes per number for the dtypes the calculator knows.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "float32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "bfloat16": 2.0,
    "fp16": 2.0,
    "float16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: dense (no sparsity) peak 16-bit tensor throughput and memory."""

    name: str
    peak_tflops: float  # dense bf16 (fp16 where the chip has no bf16), FLOP/s / 1e12
    memory_gb: float
    dtype: str
    source: str


#: Datasheet numbers (dense, i.e. without the 2:4 sparsity factor NVIDIA often quotes).
GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in [
        GPUSpec("T4", 65.0, 16, "fp16", "NVIDIA T4 Tensor Core GPU datasheet (2019)"),
        GPUSpec("V100-SXM2", 125.0, 32, "fp16", "NVIDIA V100 Tensor Core GPU datasheet (2020)"),
        GPUSpec("RTX-3090", 71.0, 24, "bf16", "NVIDIA Ampere GA102 GPU architecture whitepaper"),
        GPUSpec("RTX-4090", 165.2, 24, "bf16", "NVIDIA Ada Lovelace GPU architecture whitepaper"),
        GPUSpec("L4", 121.0, 24, "bf16", "NVIDIA L4 Tensor Core GPU datasheet (2023)"),
        GPUSpec("A100-80GB", 312.0, 80, "bf16", "NVIDIA A100 Tensor Core GPU datasheet (2021)"),
        GPUSpec("H100-SXM", 989.0, 80, "bf16", "NVIDIA H100 Tensor Core GPU datasheet (2023)"),
        GPUSpec("H200-SXM", 989.0, 141, "bf16", "NVIDIA H200 Tensor Core GPU datasheet (2024)"),
    ]
}


def gpt_config_values(config: Any) -> dict[str, Any]:
    """Read the fields the formulas need from a GPT config (dataclass or any object).

    Required: ``vocab_size``, ``block_size``, ``n_layer``, ``n_head``, ``n_embd``.
    Optional: ``bias`` (default ``True``: linear layers and LayerNorms have biases),
    ``tie_weights`` (default ``True``: the output layer shares the token embedding) and
    ``mlp_ratio`` (default 4: hidden width of the MLP is ``mlp_ratio * n_embd``).
    """
    values: dict[str, Any] = {}
    missing = []
    for key in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        v = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if v is None:
            missing.append(key)
        else:
            values[key] = int(v)
    if missing:
        raise TypeError(
            f"config {type(config).__name__} lacks {missing}; pass a GPTConfig (or a dict) with "
            "vocab_size, block_size, n_layer, n_head and n_embd"
        )
    for key, default in (("bias", True), ("tie_weights", True), ("mlp_ratio", 4)):
        v = config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)
        values[key] = v
    if values["n_embd"] % values["n_head"]:
        raise ValueError(
            f"n_embd={values['n_embd']} is not divisible by n_head={values['n_head']}; "
            "choose n_embd as a multiple of n_head"
        )
    if min(values[k] for k in ("vocab_size", "block_size", "n_layer", "n_embd")) <= 0:
        raise ValueError(f"sizes must be positive, got {values}")
    return values


def param_breakdown(config: Any) -> dict[str, int]:
    r"""Parameters of a GPT-2-style decoder, by component.

    With width :math:`d`, vocabulary :math:`V`, context :math:`T`, :math:`L` layers and MLP
    width :math:`4d`, each block holds :math:`12d^2` weights (attention :math:`4d^2`, MLP
    :math:`8d^2`) plus biases and two LayerNorms, so for large :math:`d`

    .. math:: N \approx 12 L d^2 + V d + T d.
    """
    c = gpt_config_values(config)
    d, v, t, n_layer = c["n_embd"], c["vocab_size"], c["block_size"], c["n_layer"]
    h = int(c["mlp_ratio"] * d)
    b = 1 if c["bias"] else 0
    ln = 2 * d if c["bias"] else d  # LayerNorm: gain (+ bias)
    attn = 3 * d * d + 3 * d * b + d * d + d * b
    mlp = d * h + h * b + h * d + d * b
    per_layer = attn + mlp + 2 * ln
    return {
        "token_embedding": v * d,
        "position_embedding": t * d,
        "attention": n_layer * attn,
        "mlp": n_layer * mlp,
        "layernorm": n_layer * 2 * ln + ln,
        "lm_head": 0 if c["tie_weights"] else v * d,
        "per_layer": per_layer,
    }


def param_count(config: Any, *, non_embedding: bool = False) -> int:
    """Total number of parameters of ``GPT(config)`` (tied weights counted once).

    ``non_embedding=True`` leaves out the token and position embeddings, the convention
    Kaplan et al. use for :math:`N` in scaling laws (an untied output layer stays in,
    as in ``GPT.num_parameters(non_embedding=True)``).
    """
    p = param_breakdown(config)
    total = sum(v for k, v in p.items() if k != "per_layer")
    if non_embedding:
        total -= p["token_embedding"] + p["position_embedding"]
    return total


def flops_per_token(
    config: Any, context: int | None = None, *, attention: str = "causal"
) -> dict[str, float]:
    r"""Training FLOPs per token, split into the dense part and the attention part.

    *dense* :math:`= 6 N_\text{matmul}`, where :math:`N_\text{matmul}` counts every weight
    used in a matrix product for each token — all block weights and the output layer
    (:math:`Vd`, also when tied), but not the position embedding, which is only looked
    up.  *attention* :math:`= 6 L T d`: the scores :math:`QK^\top` and the weighted sum
    over values, with the average causal context :math:`T/2` (Kaplan et al. 2020, Table 1),
    times 3 for forward + backward.  ``context`` defaults to ``block_size``.
    ``attention="full"`` counts the whole :math:`T\times T` square instead
    (:math:`12 L T d`, the PaLM convention that ``GPT.flops_per_token`` uses).
    """
    if attention not in ("causal", "full"):
        raise ValueError(f"attention must be 'causal' or 'full', got {attention!r}")
    c = gpt_config_values(config)
    d = c["n_embd"]
    h = int(c["mlp_ratio"] * d)
    # weights of the matrix products only (biases are additions, not multiply-adds)
    n_matmul = c["n_layer"] * (4 * d * d + 2 * d * h) + c["vocab_size"] * d
    t = c["block_size"] if context is None else int(context)
    dense = 6.0 * n_matmul
    attention = 6.0 * c["n_layer"] * t * c["n_embd"] * (2.0 if attention == "full" else 1.0)
    return {"dense": dense, "attention": attention, "total": dense + attention}


def training_flops(
    config: Any, tokens: float, *, context: int | None = None, include_attention: bool = True
) -> float:
    """FLOPs to train ``GPT(config)`` on ``tokens`` tokens (forward + backward).

    ``include_attention=False`` gives the textbook :math:`6ND` with :math:`N` the
    parameters used in matrix products (see :func:`flops_per_token`).
    """
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    f = flops_per_token(config, context)
    return float(tokens) * (f["total"] if include_attention else f["dense"])


def training_memory(
    config: Any,
    batch_size: int,
    *,
    seq_len: int | None = None,
    dtype: str = "fp32",
    optimizer: str = "adamw",
    activation_checkpointing: bool = False,
) -> dict[str, float]:
    r"""Bytes of memory a training step needs, by component.

    * weights and gradients: :math:`N` numbers each in ``dtype``; with a 16-bit dtype
      (mixed precision) an fp32 master copy of the weights is added (:math:`4N` bytes).
    * optimizer: AdamW keeps two fp32 moments (:math:`8N` bytes); SGD with momentum one
      (:math:`4N`); plain ``"sgd"`` none.
    * activations, per layer (Korthikanti et al. 2022, no tensor parallelism), for
      sequence length :math:`s`, batch :math:`b`, width :math:`h`, :math:`a` heads:
      :math:`sbh\,(34 + 5as/h)` bytes in 16-bit, scaled for ``dtype``; plus the logits
      and their softmax (:math:`2sbV` numbers, kept in fp32).  With activation
      checkpointing only each layer's input (:math:`2sbh` bytes in 16-bit) is kept.

    Returns ``{"weights", "gradients", "optimizer", "activations", "total"}`` in bytes.
    """
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_BYTES)}")
    if optimizer not in ("adamw", "adam", "sgd_momentum", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adamw', 'sgd_momentum' or 'sgd'")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    c = gpt_config_values(config)
    n = param_count(config)
    nbytes = DTYPE_BYTES[dtype]
    s = c["block_size"] if seq_len is None else int(seq_len)
    b, h, a, n_layer = batch_size, c["n_embd"], c["n_head"], c["n_layer"]
    weights = n * nbytes + (4.0 * n if nbytes < 4 else 0.0)
    grads = n * nbytes
    opt_bytes = {"adamw": 8.0, "adam": 8.0, "sgd_momentum": 4.0, "sgd": 0.0}[optimizer]
    opt = n * opt_bytes
    scale = nbytes / 2.0
    if activation_checkpointing:
        per_layer = 2.0 * s * b * h * scale
    else:
        per_layer = s * b * h * (34.0 + 5.0 * a * s / h) * scale
    acts = n_layer * per_layer + 2.0 * s * b * c["vocab_size"] * 4.0
    return {
        "weights": weights,
        "gradients": grads,
        "optimizer": opt,
        "activations": acts,
        "total": weights + grads + opt + acts,
    }


def estimate_seconds(flops: float, peak_flops_per_s: float, mfu: float = 0.4) -> float:
    """Wall-clock seconds for ``flops`` on a device with ``peak_flops_per_s``.

    ``mfu`` (model FLOPs utilisation) is the fraction of the peak a real training run
    reaches: 0.3–0.5 is typical for well-tuned GPU training, much less for tiny models.
    """
    if peak_flops_per_s <= 0:
        raise ValueError(f"peak_flops_per_s must be positive, got {peak_flops_per_s}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    return float(flops) / (peak_flops_per_s * mfu)


@dataclass(frozen=True)
class TrainingPlan:
    """What :func:`plan_training` estimated for a training run on a GPU cluster."""

    flops: float  #: 6ND
    gpu: str
    n_gpus: int
    mfu: float
    gpu_hours: float  #: total accelerator time: what a cloud bill and a model card count
    days: float  #: wall-clock days with all ``n_gpus`` busy


def plan_training(
    n_params: float, tokens: float, gpu: str = "H100-SXM", n_gpus: int = 1, mfu: float = 0.4
) -> TrainingPlan:
    """How many GPU-hours and days to train ``n_params`` parameters on ``tokens`` tokens.

    Uses :math:`C = 6ND` (the attention term is small for long-context large models and
    left out, as in published estimates), the dense 16-bit peak of :data:`GPUS` and a
    model FLOPs utilisation ``mfu``; the work is assumed to split evenly over
    ``n_gpus`` (data, tensor and pipeline parallelism at that MFU).
    """
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {sorted(GPUS)}")
    if n_params <= 0 or tokens <= 0:
        raise ValueError(f"n_params and tokens must be positive, got {n_params}, {tokens}")
    if not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be an int >= 1, got {n_gpus!r}")
    flops = 6.0 * n_params * tokens
    gpu_hours = estimate_seconds(flops, GPUS[gpu].peak_tflops * 1e12, mfu) / 3600
    return TrainingPlan(flops, gpu, n_gpus, mfu, gpu_hours, gpu_hours / n_gpus / 24)


def zero_memory_per_gpu(
    n_params: float, n_gpus: int, stage: int, *, optimizer_bytes: float = 12.0
) -> float:
    """Bytes of weights, gradients and optimizer states per GPU under ZeRO ``stage``.

    Mixed-precision Adam keeps 2 bytes of bf16 weights and 2 of gradients per parameter,
    plus ``optimizer_bytes`` (12: fp32 master weights, momentum and variance) of optimizer
    state.  Plain data parallelism (stage 0) replicates all 16 bytes on every GPU; ZeRO
    (Rajbhandari et al. 2020) shards over the ``n_gpus`` data-parallel ranks the optimizer
    states (stage 1), then the gradients too (stage 2), then the weights (stage 3, what
    PyTorch FSDP does).  Activations are not included.
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0 (plain data parallel), 1, 2 or 3, got {stage!r}")
    if not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be an int >= 1, got {n_gpus!r}")
    w, g, o = 2.0 * n_params, 2.0 * n_params, optimizer_bytes * n_params
    sharded = {0: 0.0, 1: o, 2: o + g, 3: o + g + w}[stage]
    return (w + g + o - sharded) + sharded / n_gpus


def pipeline_bubble(stages: int, microbatches: int) -> float:
    """Idle share of a GPipe-style pipeline: :math:`(p-1)/(m+p-1)` for ``p`` stages, ``m`` micro-batches."""
    if stages < 1 or microbatches < 1:
        raise ValueError(f"stages and microbatches must be >= 1, got {stages}, {microbatches}")
    return (stages - 1) / (microbatches + stages - 1)


def measure_matmul_flops(
    n: int = 512, repeats: int = 20, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> float:
    """Measured FLOP/s of an ``n×n`` by ``n×n`` matrix product here (best of ``repeats``).

    A practical "peak" for this machine: what a large dense matmul achieves.
    """
    if n <= 0 or repeats <= 0:
        raise ValueError(f"n and repeats must be positive, got n={n}, repeats={repeats}")
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    (a @ b).sum().item()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    del c
    return 2.0 * n**3 / best
