"""Checkpoints: safetensors weights + JSON, written atomically, verified on load.

A checkpoint is a directory::

    model.safetensors      the weights (safetensors: raw tensors, no code, no pickle)
    config.json            model class and its config dataclass, format version
    tokenizer.json         the tokenizer (if one was given)
    meta.json              free-form facts: steps, validation loss, bits per character …
    trainer_state.*        optional: optimizer tensors (safetensors) and JSON state
                           (step, history, random-generator states) to resume training
    checkpoint.json        SHA-256 of every file above, written last

Writing goes to a temporary sibling directory that is renamed into place only when it is
complete, so a crash (or Ctrl-C) during saving never leaves a half-written checkpoint.
Loading checks every file against ``checkpoint.json`` first, so a truncated or modified
file is reported with its name instead of producing a silently wrong model — and because
nothing is unpickled, loading never executes code from the file.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from llmbook.data.registry import sha256_file
from llmbook.models.classifier import GPTClassifier
from llmbook.text.tokenizers import BaseTokenizer

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
    "load_trainer_state",
    "save_classifier",
    "load_classifier",
    "verify_checkpoint",
    "load_tokenizer",
    "check_writable",
    "FORMAT",
]

FORMAT = "llmbook-checkpoint"
VERSION = 1
MANIFEST = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupted or of an unknown kind."""


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_llmbook(qualname: str, kind: type | None = None) -> Any:
    """Import a class by dotted name — only a class defined in ``llmbook`` (nothing else).

    ``kind``: the class must also be a subclass of it.  Without these checks a crafted
    checkpoint could name anything an llmbook module imports (``llmbook.training.checkpoint.torch``
    as a tokenizer class made load_checkpoint call ``torch.load`` on the file, an unpickler;
    found by tests/test_security.py).
    """
    module, _, name = qualname.rpartition(".")
    if not (module == "llmbook" or module.startswith("llmbook.")):
        raise CheckpointError(
            f"the checkpoint names the class {qualname!r}, which is not part of llmbook; "
            "only llmbook models and tokenizers can be loaded"
        )
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"cannot import {qualname!r} named by the checkpoint: {e}") from e
    if not (
        isinstance(obj, type)
        and obj.__module__.split(".")[0] == "llmbook"
        and (kind is None or issubclass(obj, kind))
    ):
        what = "an llmbook class" if kind is None else f"an llmbook {kind.__name__} class"
        raise CheckpointError(
            f"the checkpoint names {qualname!r}, which is not {what}; the checkpoint is "
            "corrupted or was crafted, do not use it"
        )
    return obj


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def _state_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, with tied (shared) weights stored once."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, t in model.state_dict().items():
        key = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if key in seen and t.numel():
            continue  # tied to an earlier tensor (e.g. lm_head.weight = wte.weight)
        seen[key] = name
        out[name] = t.detach().contiguous().cpu()
    return out


def _optimizer_to_flat(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in opt_state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().contiguous().cpu()
            elif v is not None:
                scalars.setdefault(str(pid), {})[k] = v
    groups = [dict(g) for g in opt_state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = t
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    tokenizer: BaseTokenizer | None = None,
    config: Any = None,
    extra: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and ``tokenizer``, ``extra`` facts, training state) to ``path``.

    ``config`` is the *training* configuration (a dataclass or dict), stored in
    ``config.json`` next to the model's own config (``model.config``).
    ``trainer_state`` (used by :func:`llmbook.training.trainer.train`) may hold ``"optimizer"`` (an
    optimizer ``state_dict``), ``"tensors"`` (extra named tensors such as random-generator
    states) and ``"json"`` (anything JSON-serialisable).
    """
    path = Path(path)
    model_config = getattr(model, "config", None)
    if not is_dataclass(model_config) or isinstance(model_config, type):
        raise TypeError(
            f"{type(model).__name__} has no dataclass .config; checkpoints store the model's "
            "config so that load_checkpoint can rebuild it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # a process killed while saving leaves its torn temporary directory behind; remove
    # those, or every crash would cost a checkpoint's worth of disk (tests/test_faults.py)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file(
            _state_for_saving(model), str(tmp / "model.safetensors"), metadata={"format": "pt"}
        )
        train_cfg = (
            asdict(config) if is_dataclass(config) and not isinstance(config, type) else config
        )
        _write_json(
            tmp / "config.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "model_class": _qualname(model),
                "config_class": _qualname(model_config),
                "model_config": asdict(model_config),
                "train_config": train_cfg,
            },
        )
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
            tok_json = json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))
            tok_json["class"] = _qualname(tokenizer)
            _write_json(tmp / "tokenizer.json", tok_json)
        _write_json(tmp / "meta.json", extra or {})
        if trainer_state is not None:
            tensors = {
                f"extra.{k}": v.contiguous().cpu()
                for k, v in trainer_state.get("tensors", {}).items()
            }
            opt_meta = None
            if trainer_state.get("optimizer") is not None:
                opt_tensors, opt_meta = _optimizer_to_flat(trainer_state["optimizer"])
                tensors.update(opt_tensors)
            save_file(tensors, str(tmp / "trainer_state.safetensors"))
            _write_json(
                tmp / "trainer_state.json",
                {"optimizer": opt_meta, "json": trainer_state.get("json", {})},
            )
        files = sorted(p.name for p in tmp.iterdir())
        _write_json(
            tmp / MANIFEST, {"format": FORMAT, "files": {f: sha256_file(tmp / f) for f in files}}
        )
        for f in tmp.iterdir():  # make the data durable before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def check_writable(directory: str | Path, need_bytes: int = 0) -> Path:
    """Fail fast when checkpoints cannot be written to ``directory``.

    Creates the directory, writes, syncs and deletes a small probe file, and checks that
    at least ``need_bytes`` are free.  :func:`llmbook.training.trainer.train` calls it before the
    first step, so a read-only or full disk is reported at once, not after hours of
    training at the first checkpoint (found by tests/test_faults.py).  Raises
    :class:`CheckpointError` naming the directory and what to do.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(probe)
        free = shutil.disk_usage(directory).free
    except OSError as e:
        raise CheckpointError(
            f"cannot write checkpoints to {directory}: {e.strerror or e}; choose a writable "
            "directory (TrainConfig.out_dir, or --out-dir on the command line) or free space"
        ) from e
    if free < need_bytes:
        raise CheckpointError(
            f"not enough free space for checkpoints in {directory}: about "
            f"{need_bytes / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free; free some "
            "space or choose another out_dir"
        )
    return directory


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in ("model.safetensors", MANIFEST, "config.json"):
        path = path.parent
    if not path.exists():
        old = path.with_name(f".{path.name}.old")
        if old.is_dir():  # a crash between the two renames of save_checkpoint
            return old
        raise CheckpointError(
            f"no checkpoint at {path}; train one with `python -m llmbook train --config …` "
            "or give the directory that holds model.safetensors"
        )
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a checkpoint directory (expected model.safetensors, config.json)"
        )
    return path


def verify_checkpoint(path: str | Path) -> dict[str, str]:
    """Check every file of a checkpoint against its SHA-256; return the file table."""
    path = _resolve(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise CheckpointError(
            f"{path} has no {MANIFEST}: the checkpoint is incomplete (interrupted while "
            "saving?) or not an llmbook checkpoint"
        )
    try:
        table = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{manifest} is corrupted ({e}); re-create the checkpoint") from e
    for name, digest in table.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint file {f} is missing; re-create the checkpoint")
        if sha256_file(f) != digest:
            raise CheckpointError(
                f"checkpoint file {f} is truncated or was modified (SHA-256 does not match "
                f"{MANIFEST}); restore it from the repository or re-create the checkpoint"
            )
    return dict(table)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from e


def load_tokenizer(path: str | Path) -> Any:
    """Load a tokenizer saved by :func:`save_checkpoint` (any llmbook tokenizer class)."""
    data = _read_json(Path(path))
    qual = data.get("class")
    if qual is None:
        from llmbook.text.tokenizers import CharTokenizer

        cls: Any = CharTokenizer
    else:
        cls = _import_llmbook(qual, BaseTokenizer)
    return cls.load(path)


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu", verify: bool = True
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild ``(model, tokenizer, meta)`` from a checkpoint directory.

    The model is in eval mode on ``device``.  ``tokenizer`` is ``None`` if none was
    saved.  ``meta`` is the ``extra`` dict given to :func:`save_checkpoint`, plus
    ``"train_config"``.  Every file is verified first (``verify=True``).
    """
    path = _resolve(path)
    if verify:
        verify_checkpoint(path)
    cfg = _read_json(path / "config.json")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{path / 'config.json'} is not an llmbook checkpoint config")
    if cfg.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint format version {cfg['version']} is newer than this llmbook "
            f"(supports {VERSION}); upgrade llmbook"
        )
    model_cls = _import_llmbook(cfg["model_class"], nn.Module)
    config_cls = _import_llmbook(cfg["config_class"])
    if not hasattr(config_cls, "__dataclass_fields__"):  # a dataclass (mypy: no narrowing)
        raise CheckpointError(
            f"the checkpoint names {cfg['config_class']!r} as the model config, which is not "
            "a config dataclass; the checkpoint is corrupted or was crafted"
        )
    known = {f.name for f in fields(config_cls)}
    mc = {k: v for k, v in cfg["model_config"].items() if k in known}
    try:
        model = model_cls(config_cls(**mc))
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{path / 'config.json'}: cannot build {cfg['model_class']} from its config ({e})"
        ) from e
    load_weights(model, _load_tensors(path / "model.safetensors"), path / "model.safetensors")
    model.to(device).eval()
    tokenizer = (
        load_tokenizer(path / "tokenizer.json") if (path / "tokenizer.json").is_file() else None
    )
    meta = _read_json(path / "meta.json") if (path / "meta.json").is_file() else {}
    meta = dict(meta)
    meta["train_config"] = cfg.get("train_config")
    return model, tokenizer, meta


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy ``state`` into ``model``: every tensor must be there, with its shape.

    Only a tied weight (e.g. ``lm_head.weight``, the same tensor as ``wte.weight``) may be
    absent, because :func:`save_checkpoint` stores it once.  Anything missing, extra or of
    the wrong shape is a :class:`CheckpointError` naming ``source`` and the tensors.
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: {e}; the file belongs to another "
            "model or was modified, re-create the checkpoint"
        ) from e
    sd = model.state_dict()
    ptrs = {k: v.untyped_storage().data_ptr() for k, v in sd.items()}
    saved = set(sd) - set(missing)
    untied = [n for n in missing if not any(ptrs[n] == ptrs[k] for k in saved)]
    if untied or unexpected:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: missing tensors {sorted(untied)[:5]}, "
            f"unexpected tensors {sorted(unexpected)[:5]}; the file belongs to another model "
            "or is incomplete, re-create the checkpoint"
        )


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Read the training state saved with a checkpoint (for :func:`llmbook.training.trainer.train`).

    Returns ``{"model": tensors, "optimizer": state_dict or None, "tensors": {...},
    "json": {...}}``.  Only tensors and JSON are read (no pickle).
    """
    path = _resolve(path)
    verify_checkpoint(path)
    if not (path / "trainer_state.json").is_file():
        raise CheckpointError(f"{path} holds no training state (saved without trainer_state)")
    tensors = _load_tensors(path / "trainer_state.safetensors")
    meta = _read_json(path / "trainer_state.json")
    optimizer = (
        None if meta.get("optimizer") is None else _optimizer_from_flat(tensors, meta["optimizer"])
    )
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return {
        "model": _load_tensors(path / "model.safetensors"),
        "optimizer": optimizer,
        "tensors": extra,
        "json": meta.get("json", {}),
    }


def save_classifier(
    path: str | Path,
    model: GPTClassifier,
    tokenizer: BaseTokenizer,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a :class:`GPTClassifier` (body and head in one checkpoint, with its tokenizer).

    The class names, pooling and ``max_len`` are in ``model.config``.  Merge LoRA layers
    and replace them by their base layers first: the saved model is a plain classifier.
    """
    from llmbook.models.lora import LoRALinear

    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError(
            "the classifier still has LoRA layers; merge them (llmbook.models.lora.merge_lora) "
            "and replace them by their base layers before saving"
        )
    return save_checkpoint(path, model, tokenizer, None, extra)


def load_classifier(path: str | Path) -> tuple[GPTClassifier, Any, dict[str, Any]]:
    """Load a classifier checkpoint: ``(classifier in eval mode, tokenizer, info)``.

    ``info`` holds ``labels``, ``pooling`` and ``max_len`` from the model's config and the
    checkpoint's ``meta``.
    """
    model, tok, meta = load_checkpoint(path)
    if not isinstance(model, GPTClassifier):
        raise CheckpointError(
            f"{path} holds a {type(model).__name__}, not a GPTClassifier; give a classifier "
            "checkpoint (saved by save_classifier)"
        )
    c = model.config
    info = {"labels": list(c.labels), "pooling": c.pooling, "max_len": c.max_len, "meta": meta}
    return model, tok, info
