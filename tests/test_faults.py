"""Faults: a crash while saving, corrupted files, a read-only or full disk.

* A training run killed with SIGKILL while it is writing a checkpoint (inside the weights
  file, or between the two renames that publish it) leaves the previous checkpoint intact
  and loadable, and ``resume`` continues from it and reproduces the loss curve of an
  uninterrupted run exactly.  The run is a real ``llmbook.training.trainer`` in a child process; a
  hook in the child makes the checkpoint writer stop at the chosen point and tell the
  test, which then kills it.
* A corrupted checkpoint or token-id file is reported with its name and the fix.
* A read-only or full output directory is an error before the first training step.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_gpt

from llmbook.data.lmdata import encode_corpus, load_ids, save_ids
from llmbook.data.poetry import poem_lm_texts
from llmbook.models.gpt import GPT
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.checkpoint import (
    CheckpointError,
    check_writable,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
    verify_checkpoint,
)
from llmbook.training.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TOK = CharTokenizer.fit(["床前明月光\n"])
TESTS = Path(__file__).resolve().parent

MODEL = dict(block_size=16, n_layer=1, n_head=2, n_embd=16)
TRAIN = dict(
    max_steps=12,
    batch_size=8,
    block_size=16,
    lr=1e-2,
    min_lr=1e-3,
    warmup_steps=2,
    eval_interval=4,
    eval_batches=2,
    ckpt_interval=4,
    progress=False,
    device="cpu",
    seed=0,
)

# The child: trains the tiny GPT on the saved poem ids.  MODE
# "kill-weights" / "kill-rename" stop inside the 2nd checkpoint write (half of
# model.safetensors on disk / after the old checkpoint was moved aside) and wait to be
# killed; "resume" continues from out_dir and then, as the reference, trains the same run
# again uninterrupted without checkpoints.  It prints one JSON line with the histories.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import netguard
    netguard.install()  # the child is offline too
    import torch
    torch.set_num_threads(1)
    import llmbook.training.checkpoint as ck
    from llmbook.data.lmdata import load_ids
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.training.trainer import TrainConfig, train

    mode, data, out_dir, marker = sys.argv[1:5]
    spec = json.loads(Path(data, "spec.json").read_text())
    saves = {{"n": 0}}
    real_save_file, real_replace = ck.save_file, os.replace

    def hang() -> None:
        Path(marker).write_text(str(saves["n"]))
        time.sleep(300)  # the test kills us here

    def save_file(tensors, filename, metadata=None):
        if Path(filename).name == "model.safetensors":
            saves["n"] += 1
            if mode == "kill-weights" and saves["n"] == 2:
                real_save_file(tensors, filename, metadata=metadata)
                with open(filename, "r+b") as f:  # only half of the bytes have reached the disk
                    f.truncate(os.path.getsize(filename) // 2)
                hang()
        return real_save_file(tensors, filename, metadata=metadata)

    def replace(src, dst):
        real_replace(src, dst)
        if mode == "kill-rename" and saves["n"] == 2 and Path(dst).name == ".last.old":
            hang()  # the old checkpoint is moved aside, the new one not yet in place

    ck.save_file, ck.os.replace = save_file, replace
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=spec["vocab_size"], **spec["model"]))
    cfg = TrainConfig(**spec["train"], out_dir=out_dir, resume=mode == "resume")
    first = []
    result = train(
        model,
        load_ids(Path(data, "train.npy")),
        load_ids(Path(data, "valid.npy")),
        cfg,
        callback=lambda rec: first.append(rec["step"]) and None,
    )
    report = {{"history": result.history, "first_step": first[0] if first else None}}
    if mode == "resume":  # the same run never interrupted, in this process, for comparison
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=spec["vocab_size"], **spec["model"]))
        full = train(
            model,
            load_ids(Path(data, "train.npy")),
            load_ids(Path(data, "valid.npy")),
            TrainConfig(**spec["train"]),
        )
        report["reference"] = full.history
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real poems as memory-mapped token ids, the child script and the training spec."""
    d = tmp_path_factory.mktemp("faults")
    texts = poem_lm_texts("train")[:300]
    tok = CharTokenizer.fit([t + "\n" for t in texts])
    save_ids(d / "train.npy", encode_corpus(texts[:270], tok))
    save_ids(d / "valid.npy", encode_corpus(texts[270:], tok))
    spec = {"vocab_size": tok.vocab_size, "model": MODEL, "train": TRAIN}
    (d / "spec.json").write_text(json.dumps(spec))
    (d / "child.py").write_text(CHILD.format(tests=str(TESTS)))
    return d


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def curve(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Everything in a history record except the timing."""
    return [(h["step"], h["train_loss"], h["val_loss"], h["lr"]) for h in history]


def run_child(data: Path, mode: str, out_dir: Path) -> dict[str, Any]:
    """Run the child to completion and return its JSON report."""
    proc = subprocess.run(
        [sys.executable, str(data / "child.py"), mode, str(data), str(out_dir), "-"],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kill_child_mid_save(data: Path, mode: str, out_dir: Path) -> None:
    """Start the child, wait until it is inside the 2nd checkpoint write, SIGKILL it."""
    marker = out_dir.parent / f"{mode}.inside-save"
    proc = subprocess.Popen(
        [sys.executable, str(data / "child.py"), mode, str(data), str(out_dir), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"child exited early: {proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("the child never reached the checkpoint write")
            time.sleep(0.05)
        assert marker.read_text() == "2"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kill-weights", "kill-rename"])
def test_sigkill_during_checkpoint_write_keeps_previous_and_resume_is_exact(
    data: Path, tmp_path: Path, mode: str
) -> None:
    out = tmp_path / "run"
    kill_child_mid_save(data, mode, out)

    # the checkpoint of step 4 (the one before the interrupted save) is intact
    last = out / "last"
    if mode == "kill-weights":
        assert last.is_dir()
        assert any(p.name.startswith(".last.tmp-") for p in out.iterdir())  # the torn write
    else:
        assert not last.exists() and (out / ".last.old").is_dir()
    verify_checkpoint(last)
    model, _, meta = load_checkpoint(last)
    assert meta["steps"] == 4
    assert isinstance(model, GPT)
    state = load_trainer_state(last)
    assert state["json"]["step"] == 4
    assert [h["step"] for h in state["json"]["history"]] == [1, 2, 3, 4]

    # resuming continues at step 5 and gives exactly the uninterrupted curve
    report = run_child(data, "resume", out)
    assert report["first_step"] == 5, "resume did not start from the saved checkpoint"
    assert curve(report["history"]) == curve(report["reference"])
    assert len(report["reference"]) == TRAIN["max_steps"]
    assert load_checkpoint(out / "last")[2]["steps"] == TRAIN["max_steps"]
    assert not (out / ".last.old").exists()
    assert sorted(p.name for p in out.iterdir()) == ["last"]  # the torn write is cleaned up


# --------------------------------------------------------------------------- corruption


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    tok = CharTokenizer.fit(["床前明月光"])
    m = tiny_gpt(vocab_size=12, block_size=8, n_embd=8)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()  # type: ignore[union-attr]
    opt.step()
    state = {"optimizer": opt.state_dict(), "tensors": {}, "json": {"step": 1}}
    return save_checkpoint(tmp_path / "ck", m, tok, {"lr": 1.0}, {"steps": 1}, state)


def _flip_byte(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset % len(b)] ^= 0xFF
    path.write_bytes(bytes(b))


@pytest.mark.parametrize(
    "damage",
    [
        "flip-weights",
        "truncate-weights",
        "flip-trainer",
        "edit-config",
        "edit-tokenizer",
        "delete-meta",
        "delete-manifest",
        "garbage-manifest",
    ],
)
def test_corrupted_checkpoint_is_detected_and_named(ckpt: Path, damage: str) -> None:
    target = {
        "flip-weights": "model.safetensors",
        "truncate-weights": "model.safetensors",
        "flip-trainer": "trainer_state.safetensors",
        "edit-config": "config.json",
        "edit-tokenizer": "tokenizer.json",
        "delete-meta": "meta.json",
        "delete-manifest": "checkpoint.json",
        "garbage-manifest": "checkpoint.json",
    }[damage]
    f = ckpt / target
    if damage.startswith("flip"):
        _flip_byte(f, f.stat().st_size // 2 + 3)
        expect = f"{target} is truncated or was modified"
    elif damage.startswith("truncate"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        expect = f"{target} is truncated or was modified"
    elif damage.startswith("edit"):
        f.write_text(f.read_text(encoding="utf-8") + " ", encoding="utf-8")
        expect = f"{target} is truncated or was modified"
    elif damage == "delete-manifest":
        f.unlink()
        expect = "has no checkpoint.json"
    elif damage == "garbage-manifest":
        f.write_text("{not json", encoding="utf-8")
        expect = "checkpoint.json is corrupted"
    else:
        f.unlink()
        expect = f"{target} is missing"
    for load in (verify_checkpoint, load_checkpoint, load_trainer_state):
        with pytest.raises(CheckpointError, match=expect):
            load(ckpt)


def test_unverified_load_still_rejects_a_broken_weights_file(ckpt: Path) -> None:
    (ckpt / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(ckpt, verify=False)


def test_resume_from_a_corrupted_checkpoint_fails_before_training(tmp_path: Path) -> None:
    ids = encode_corpus(["床前明月光"] * 40, TOK)
    cfg = dict(TRAIN, max_steps=2, ckpt_interval=1, out_dir=str(tmp_path))
    model = tiny_gpt(vocab_size=TOK.vocab_size, **MODEL)
    train(model, ids, ids, TrainConfig(**cfg))  # type: ignore[arg-type]
    _flip_byte(tmp_path / "last" / "model.safetensors", 200)
    steps: list[int] = []
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or was modified"):
        train(
            model,
            ids,
            ids,
            TrainConfig(**dict(cfg, max_steps=4, resume=True)),  # type: ignore[arg-type]
            callback=lambda r: steps.append(r["step"]) and None,
        )
    assert steps == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "object", "float"])
def test_corrupted_token_id_file_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = save_ids(tmp_path / "ids.npy", np.arange(1000, dtype=np.uint16))
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file " * 8)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(path, np.linspace(0, 1, 10))
    for mmap in (True, False):
        with pytest.raises(ValueError, match=r"ids\.npy .*(save_ids|integer token ids)"):
            load_ids(path, mmap=mmap)


# --------------------------------------------------------------------------- disks


def _train_tiny(out_dir: Path) -> list[int]:
    """Train 3 steps with checkpoints in ``out_dir``; return the steps that ran."""
    ids = encode_corpus(["床前明月光"] * 40, TOK)
    steps: list[int] = []
    model = tiny_gpt(vocab_size=TOK.vocab_size, **MODEL)
    cfg = TrainConfig(**dict(TRAIN, max_steps=3, out_dir=str(out_dir)))  # type: ignore[arg-type]
    train(model, ids, ids, cfg, callback=lambda r: steps.append(r["step"]) and None)
    return steps


def test_full_disk_is_an_error_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=4096))  # 4 KiB left
    steps: list[int] = []
    with pytest.raises(CheckpointError, match=r"not enough free space .* MiB needed"):
        steps = _train_tiny(tmp_path / "out")
    assert steps == []


def test_disk_full_on_write_is_an_error_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(CheckpointError, match="cannot write checkpoints to .*No space left"):
        _train_tiny(tmp_path / "out")
    assert not [p for p in (tmp_path / "out").iterdir()], "the probe file was left behind"


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmbook.training.checkpoint as ck

    real = ck.save_file
    calls = {"n": 0}

    def fills_up(tensors: Any, filename: str, metadata: Any = None) -> None:
        if Path(filename).name == "model.safetensors":
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ck, "save_file", fills_up)
    cfg = dict(TRAIN, max_steps=3, ckpt_interval=1)
    ids = encode_corpus(["床前明月光"] * 40, TOK)
    model = tiny_gpt(vocab_size=TOK.vocab_size, **MODEL)
    with pytest.raises(OSError, match="No space left"):
        train(model, ids, ids, TrainConfig(**dict(cfg, out_dir=str(tmp_path))))  # type: ignore[arg-type]
    assert load_checkpoint(tmp_path / "last")[2]["steps"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no torn temporary left


def _no_root_override() -> Any:
    """preexec_fn that makes file permissions apply to a root child (as to everyone else).

    Root ignores permission bits through the CAP_DAC_OVERRIDE capability; the child drops
    it (and CAP_DAC_READ_SEARCH) from its bounding set before exec, so a ``chmod 555``
    directory is really read-only for it.  Not needed when the tests do not run as root.
    """
    if os.geteuid() != 0:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop() -> None:
        for cap in (cap_dac_override, cap_dac_read_search):
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    try:  # can this process drop capabilities at all (CAP_SETPCAP)?
        subprocess.run(["true"], preexec_fn=drop, check=True)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("running as root without CAP_SETPCAP: cannot make a directory read-only")
    return drop


@pytest.fixture
def readonly_dir() -> Any:
    """A ``chmod 555`` directory (see :func:`_no_root_override` for root)."""
    parent = Path(tempfile.mkdtemp(prefix="llmbook-ro-"))
    parent.chmod(0o755)
    ro = parent / "ro"
    ro.mkdir()
    ro.chmod(
        stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    )
    yield ro
    ro.chmod(0o755)
    shutil.rmtree(parent, ignore_errors=True)


def test_readonly_out_dir_is_an_error_before_training(readonly_dir: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import netguard
        netguard.install()
        from llmbook.training.checkpoint import CheckpointError, check_writable
        from test_faults import _train_tiny
        try:
            _train_tiny(__import__("pathlib").Path({str(readonly_dir)!r}) / "run")
        except CheckpointError as e:
            print("REFUSED", e)
        else:
            print("TRAINED")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=ROOT,
        preexec_fn=_no_root_override(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("REFUSED cannot write checkpoints to"), proc.stdout
    assert "Permission denied" in proc.stdout and "out_dir" in proc.stdout
    assert list(readonly_dir.iterdir()) == []


def test_cli_readonly_out_dir_fails_before_loading_data(readonly_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llmbook", "train", "--config", "configs/cpu-tiny.toml",
         "--out-dir", str(readonly_dir / "run")],
        capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT,
        preexec_fn=_no_root_override(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: cannot write checkpoints to" in proc.stderr
    assert "Permission denied" in proc.stderr
    assert "parameters" not in proc.stdout  # printed once the corpus is built: never reached


def test_check_writable_accepts_a_writable_directory(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b", need_bytes=1) == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe is removed
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoints to"):
        check_writable(f / "sub")  # a path under a regular file: fails even for root
