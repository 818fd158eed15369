"""Multi-process training with PyTorch's DistributedDataParallel (DDP).

The same :func:`llmbook.training.trainer.train` runs in one process or in many: launched by
``torchrun --nproc_per_node=N -m llmbook train --config …`` every process reads the
environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``,
``MASTER_PORT``) that ``torchrun`` sets, joins a process group — NCCL between GPUs, gloo
on CPUs — and wraps the model in DDP, which averages the gradients of all processes in
the backward pass.  Every process draws the same global batch and trains on its own
slice of it, so one DDP step equals one single-process step on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup_distributed", "cleanup_distributed", "dist_info"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank and world size of an initialised process group (or a single process)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
        )
    return DistInfo()


def setup_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment, if there is one.

    Does nothing (and returns a single-process :class:`DistInfo`) when ``WORLD_SIZE`` is
    unset or 1, or when a group is already initialised (then its info is returned).
    ``backend`` defaults to ``"nccl"`` when CUDA is available and ``"gloo"`` otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return dist_info()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():  # pragma: no cover - every official build has it
        raise RuntimeError("this PyTorch build has no torch.distributed; run one process")
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(
                f"WORLD_SIZE={world} but {var} is not set; launch with "
                "`torchrun --nproc_per_node=N -m llmbook train --config …`"
            )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
