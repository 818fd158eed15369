"""DistributedDataParallel: two gloo processes on CPU take the same step as one process.

Each process draws the same global batch and trains on its half; DDP averages the two
gradients, which equals the gradient of the mean loss over the whole batch.
"""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_gpt
from safetensors.torch import load_file, save_file

from llmbook.training.distributed import dist_info, setup_distributed
from llmbook.training.trainer import TrainConfig, train

V = 24


_model = partial(tiny_gpt, vocab_size=V)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = (np.cumsum(rng.integers(1, 4, size=3000)) % V).astype(np.uint16)
    return ids, ids[:500]


def _cfg(steps: int, optimizer: str = "sgd") -> TrainConfig:
    lr = 0.5 if optimizer == "sgd" else 1e-2
    return TrainConfig(
        max_steps=steps,
        batch_size=8,
        block_size=16,
        lr=lr,
        warmup_steps=0,
        min_lr=lr / 10,
        optimizer=optimizer,
        eval_interval=0,
        eval_batches=1,
        progress=False,
        device="cpu",
        grad_clip=1.0,
    )


def _worker(rank: int, world: int, port: int, out: str, steps: int, optimizer: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    info = setup_distributed()
    assert info.world_size == world and dist_info().rank == rank
    ids, valid = _data()
    res = train(_model(), ids, valid, _cfg(steps, optimizer))
    state = {k: v.contiguous() for k, v in res.model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# SGD is linear in the gradient, so the comparison is tight.  Adam divides by the
# gradient's running RMS, which amplifies float rounding differences of near-zero
# gradient entries (the two processes sum the batch in a different order): looser bound.
@pytest.mark.parametrize("steps, optimizer, atol", [(3, "sgd", 1e-6), (1, "adamw", 1e-4)])
@pytest.mark.usefixtures("one_thread")  # as in the workers
def test_ddp_step_equals_single_process_step(
    tmp_path: Path, steps: int, optimizer: str, atol: float
) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), steps, optimizer), nprocs=2, join=True)
    ids, valid = _data()
    single = train(_model(), ids, valid, _cfg(steps, optimizer)).model.state_dict()
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    start = _model().state_dict()
    assert any(not torch.equal(start[k], single[k]) for k in r0)  # training moved the weights
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0)  # replicas stay identical
        torch.testing.assert_close(r0[k], single[k], rtol=1e-5, atol=atol)


def test_batch_must_split_evenly_across_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmbook.training import trainer as train_mod
    from llmbook.training.distributed import DistInfo

    monkeypatch.setattr(train_mod, "dist_info", lambda: DistInfo(0, 3, 0))
    ids, valid = _data()
    with pytest.raises(
        ValueError, match="batch_size 8 must be divisible by the number of processes 3"
    ):
        train(_model(), ids, valid, _cfg(1))


def test_single_process_without_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed()
    assert not info.enabled and info.is_main and info.world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set; launch with `torchrun"):
        setup_distributed()
