"""Checkpoints: round trip, tied weights, atomic writes, corrupted files, no code execution."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_gpt
from safetensors.torch import load_file

import llmbook.training.checkpoint as ckpt
from llmbook.models.gpt import GPT
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
)

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"


make = partial(tiny_gpt, texts=[POEM])  # (model, tokenizer)


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


def _edit_weights(path: Path, edit: Any) -> None:
    """Apply ``edit`` to the tensors of ``path/model.safetensors`` and re-hash the checkpoint,
    as an attacker or a buggy tool would: only the loader's own checks can notice."""
    from safetensors.torch import save_file

    tensors = edit(load_file(str(path / "model.safetensors")))
    save_file(tensors, str(path / "model.safetensors"))
    table = json.loads((path / "checkpoint.json").read_text(encoding="utf-8"))
    table["files"] = {
        f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in table["files"]
    }
    (path / "checkpoint.json").write_text(json.dumps(table), encoding="utf-8")


def _classifier(tmp_path: Path) -> tuple[Path, Any, Any]:
    from llmbook.models.classifier import GPTClassifier

    gpt, tok = make()
    clf = GPTClassifier.from_gpt(gpt, ["负面", "正面"], pooling="mean", max_len=12).eval()
    return ckpt.save_classifier(tmp_path / "clf", clf, tok, {"note": "x"}), clf, tok


def test_classifier_is_one_ordinary_checkpoint(tmp_path: Path) -> None:
    from llmbook.models.classifier import GPTClassifier

    path, clf, tok = _classifier(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == [
        "checkpoint.json",
        "config.json",
        "meta.json",
        "model.safetensors",
        "tokenizer.json",
    ]  # nothing written next to the checkpoint after it was renamed into place
    assert set(json.loads((path / "checkpoint.json").read_text())["files"]) == {
        "config.json",
        "meta.json",
        "model.safetensors",
        "tokenizer.json",
    }
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    assert cfg["model_class"] == "llmbook.models.classifier.GPTClassifier"
    keys = load_file(str(path / "model.safetensors"))
    assert {"head.weight", "head.bias", "gpt.wte.weight"} <= set(keys)
    assert "gpt.lm_head.weight" not in keys  # tied: stored once
    loaded, tok2, info = ckpt.load_classifier(path)
    assert isinstance(loaded, GPTClassifier) and not loaded.training
    assert info["labels"] == ["负面", "正面"] and info["max_len"] == 12
    assert info["pooling"] == "mean" and info["meta"]["note"] == "x"
    ids = torch.tensor([tok.encode("床前明月", add_bos=True)])
    lens = torch.tensor([ids.size(1)])
    torch.testing.assert_close(loaded(ids, lens)[0], clf(ids, lens)[0], rtol=0, atol=0)
    assert tok2.itos == tok.itos


def test_classifier_with_a_missing_or_corrupt_head_is_a_clear_error(tmp_path: Path) -> None:
    path, _, _ = _classifier(tmp_path)
    _edit_weights(path, lambda t: {k: v for k, v in t.items() if k != "head.bias"})
    with pytest.raises(CheckpointError, match=r"missing tensors \['head.bias'\]"):
        ckpt.load_classifier(path)
    path, _, _ = _classifier(tmp_path)
    _edit_weights(path, lambda t: {**t, "head.weight": torch.zeros(3, 7)})
    with pytest.raises(CheckpointError, match="model.safetensors does not fit GPTClassifier"):
        ckpt.load_classifier(path)
    path, _, _ = _classifier(tmp_path)
    _edit_weights(path, lambda t: {**t, "head.extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['head.extra'\]"):
        load_checkpoint(path)


def test_load_classifier_refuses_a_plain_gpt(tmp_path: Path) -> None:
    model, tok = make()
    save_checkpoint(tmp_path / "c", model, tok)
    with pytest.raises(CheckpointError, match="not a GPTClassifier"):
        ckpt.load_classifier(tmp_path / "c")
