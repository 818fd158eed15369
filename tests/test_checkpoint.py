"""Checkpoints: round trip, tied weights, atomic writes, corrupted files, no code execution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import llmbook.training.checkpoint as ckpt
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
)

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"


def make() -> tuple[GPT, CharTokenizer]:
    tok = CharTokenizer.fit([POEM])
    torch.manual_seed(0)
    return GPT(
        GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    ), tok


def test_round_trip_restores_model_tokenizer_and_meta(tmp_path: Path) -> None:
    model, tok = make()
    save_checkpoint(tmp_path / "c", model, tok, {"lr": 0.1}, {"steps": 7, "note": "诗"})
    loaded, tok2, meta = load_checkpoint(tmp_path / "c")
    assert isinstance(loaded, GPT) and loaded.config == model.config and not loaded.training
    assert loaded.lm_head.weight is loaded.wte.weight  # tying survives the round trip
    idx = torch.tensor([tok.encode("床前明月")])
    torch.testing.assert_close(loaded(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)
    assert tok2.itos == tok.itos and type(tok2) is CharTokenizer
    assert meta["steps"] == 7 and meta["note"] == "诗" and meta["train_config"] == {"lr": 0.1}


def test_tied_weight_is_stored_once(tmp_path: Path) -> None:
    model, tok = make()
    save_checkpoint(tmp_path / "c", model, tok)
    keys = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert "wte.weight" in keys and "lm_head.weight" not in keys


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    model, tok = make()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    idx = torch.tensor([tok.encode(POEM[:10])])
    for _ in range(2):
        model(idx[:, :-1], idx[:, 1:])[1].backward()  # type: ignore[union-attr]
        opt.step()
    rng = torch.get_rng_state()
    state = {"optimizer": opt.state_dict(), "tensors": {"rng": rng}, "json": {"step": 2}}
    save_checkpoint(tmp_path / "c", model, tok, trainer_state=state)
    st = load_trainer_state(tmp_path / "c")
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(st["optimizer"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for k in a["state"][pid]:
            torch.testing.assert_close(a["state"][pid][k], b["state"][pid][k])
    assert torch.equal(st["tensors"]["rng"], rng) and st["json"] == {"step": 2}


def test_truncated_weights_are_a_clear_error(tmp_path: Path) -> None:
    model, tok = make()
    path = save_checkpoint(tmp_path / "c", model, tok)
    f = path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated or was modified"):
        load_checkpoint(path)
    # even without the checksum check the format error is reported, not a crash
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(path, verify=False)


def test_tampered_byte_is_detected(tmp_path: Path) -> None:
    model, tok = make()
    path = save_checkpoint(tmp_path / "c", model, tok)
    f = path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte inside a tensor: still a valid file
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_checkpoint(path)


def test_missing_manifest_and_missing_directory(tmp_path: Path) -> None:
    model, tok = make()
    path = save_checkpoint(tmp_path / "c", model, tok)
    (path / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing")


def test_a_checkpoint_cannot_name_foreign_code(tmp_path: Path) -> None:
    model, tok = make()
    path = save_checkpoint(tmp_path / "c", model, tok)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_class"] = "os.system"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not part of llmbook"):
        load_checkpoint(path, verify=False)


def test_crash_while_saving_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = make()
    path = save_checkpoint(tmp_path / "c", model, tok, extra={"version": 1})

    def broken_save(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", broken_save)
    with torch.no_grad():
        model.wte.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, tok, extra={"version": 2})
    _, _, meta = load_checkpoint(path)
    assert meta["version"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary leftovers


def test_overwriting_replaces_the_checkpoint(tmp_path: Path) -> None:
    model, tok = make()
    save_checkpoint(tmp_path / "c", model, tok, extra={"version": 1})
    save_checkpoint(tmp_path / "c", model, tok, extra={"version": 2})
    assert load_checkpoint(tmp_path / "c")[2]["version"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_model_without_config_dataclass_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="no dataclass .config"):
        save_checkpoint(tmp_path / "c", torch.nn.Linear(2, 2))
