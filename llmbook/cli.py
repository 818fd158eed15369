"""``python -m llmbook train|generate|eval|export``: train a GPT, sample, evaluate, export GGUF.

A config file has four tables (see ``configs/cpu-tiny.toml``)::

    threads = 2                  # optional: torch.set_num_threads
    [data]    corpus ("poems" or "modern"), tokenizer, min_freq, max_size, limit
    [model]   the fields of llmbook.models.gpt.GPTConfig (vocab_size comes from the tokenizer)
    [train]   the fields of llmbook.training.trainer.TrainConfig
    [export]  dir: where the finished model is exported (weights + tokenizer + model card facts)

Every key is checked: a misspelt key is an error that names it, never silently ignored.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
import tomllib
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "main",
    "load_config",
    "config_path",
    "RunConfig",
    "ConfigError",
    "DEFAULT_CHECKPOINT",
    "build_corpus",
]

#: ``--checkpoint`` default: the shipped poetry GPT (a name of
#: :data:`llmbook.data.registry.SHIPPED_CHECKPOINTS`; a directory path works too)
DEFAULT_CHECKPOINT = "gpt-poetry"
#: ``poems``: the book's shared Tang-poem split (chapter 5); ``modern``: People's Daily plus
#: the training reviews (:func:`llmbook.data.modern.modern_pretraining_texts`, chapter 6)
CORPORA = ("poems", "modern")
DATA_KEYS = {"corpus", "tokenizer", "min_freq", "max_size", "limit"}
TOP_KEYS = {"name", "threads", "data", "model", "train", "export"}
EXPORT_KEYS = {"dir"}


class ConfigError(ValueError):
    """A config file is missing, unreadable or has a bad key or value."""


class RunConfig:
    """A parsed config file: ``data``, ``model`` (dict), ``train`` (TrainConfig), ``export``."""

    def __init__(self, raw: dict[str, Any], source: str = "<dict>") -> None:
        from llmbook.models.gpt import GPTConfig
        from llmbook.training.trainer import TrainConfig

        self.source = source
        unknown = sorted(set(raw) - TOP_KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level key(s) {unknown}; allowed: {sorted(TOP_KEYS)}"
            )
        self.name = str(raw.get("name", Path(source).stem))
        self.threads = raw.get("threads")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"{source}: threads must be a positive int, got {self.threads!r}")
        self.data = dict(raw.get("data", {}))
        self._check(self.data, DATA_KEYS, "data")
        self.data.setdefault("corpus", "poems")
        self.data.setdefault("tokenizer", "char")
        self.data.setdefault("min_freq", 1)
        if self.data["corpus"] not in CORPORA:
            raise ConfigError(
                f"{source}: [data] corpus must be one of {CORPORA}, got {self.data['corpus']!r}"
            )
        if self.data["tokenizer"] != "char":
            raise ConfigError(
                f"{source}: [data] tokenizer must be 'char' (the book's GPTs are character-level)"
            )
        max_size = self.data.setdefault("max_size", None)
        if max_size is not None and (not isinstance(max_size, int) or max_size <= 4):
            raise ConfigError(
                f"{source}: [data] max_size (vocabulary size, special tokens included) must be "
                f"an int > 4, got {max_size!r}"
            )
        self.model = dict(raw.get("model", {}))
        model_keys = {f.name for f in fields(GPTConfig)} - {"vocab_size"}
        self._check(self.model, model_keys, "model")
        train_keys = {f.name for f in fields(TrainConfig)}
        train_raw = dict(raw.get("train", {}))
        self._check(train_raw, train_keys, "train")
        try:
            self.train = TrainConfig(**train_raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: [train] {e}") from e
        self.export = dict(raw.get("export", {}))
        self._check(self.export, EXPORT_KEYS, "export")
        self.raw = raw

    def _check(self, table: dict[str, Any], allowed: set[str], name: str) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{self.source}: [{name}] must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(
                f"{self.source}: unknown key(s) {unknown} in [{name}]; allowed keys: {sorted(allowed)}"
            )


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def config_path(name: str) -> Path:
    """Path of a shipped config by name (``"cpu-tiny"`` → ``<repository>/configs/cpu-tiny.toml``)."""
    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"no shipped config named {name!r} at {path}; the repository's configs/ folder has "
            "cpu-tiny, cpu-small, cpu-modern and gpu-small (clone the repository to get it)"
        )
    return path


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML config; ``overrides`` like ``["train.max_steps=10"]`` replace values.

    ``path`` may also be the name of a shipped config, e.g. ``"cpu-tiny"``.
    """
    if isinstance(path, str) and not path.endswith(".toml") and "/" not in path:
        path = config_path(path)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found; the repository ships configs/cpu-tiny.toml, "
            "configs/cpu-small.toml, configs/cpu-modern.toml and configs/gpu-small.toml"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. train.max_steps=10), got {item!r}")
        *tables, leaf = key.strip().split(".")
        node = raw
        for t in tables:
            node = node.setdefault(t, {})
        node[leaf] = _parse_value(value.strip())
    return RunConfig(raw, str(path))


def build_corpus(data: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Train/valid/test texts of the config's corpus (``data["corpus"]``, see :data:`CORPORA`).

    The ``modern`` corpus has no test split (its held-out reviews are the sentiment
    test set, never trained on): its test list is empty.  ``limit`` keeps the first
    ``limit`` training texts and a tenth as many held-out ones.
    """
    corpus = data.get("corpus", "poems")
    if corpus == "poems":
        from llmbook.data.poetry import poem_lm_texts

        tr, va, te = (poem_lm_texts(s) for s in ("train", "valid", "test"))
    elif corpus == "modern":
        from llmbook.data.modern import modern_pretraining_texts

        tr, va, te = modern_pretraining_texts("train"), modern_pretraining_texts("valid"), []
    else:
        raise ConfigError(f"[data] corpus must be one of {CORPORA}, got {corpus!r}")
    limit = data.get("limit")
    if limit is not None:
        tr, va, te = tr[:limit], va[: max(1, limit // 10)], te[: max(1, limit // 10)]
    return tr, va, te


def _hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _train_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, overrides included (for meta.json)."""
    argv = ["python", "-m", "llmbook", "train", "--config", str(args.config)]
    for kv in args.set or []:
        argv += ["--set", kv]
    for flag in ("out_dir", "export", "threads"):
        value = getattr(args, flag, None)
        if value is not None:
            argv += ["--" + flag.replace("_", "-"), str(value)]
    if args.resume:
        argv.append("--resume")
    return shlex.join(argv)


def cmd_train(args: argparse.Namespace) -> int:
    from llmbook.data.lmdata import encode_corpus, load_ids, save_ids
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.text.tokenizers import CharTokenizer
    from llmbook.training.checkpoint import check_writable, save_checkpoint
    from llmbook.training.distributed import cleanup_distributed, setup_distributed

    rc = load_config(args.config, args.set)
    if args.resume:
        rc.train.resume = True
    if args.out_dir:
        rc.train.out_dir = args.out_dir
    if rc.train.resume and rc.train.out_dir is None:
        raise ConfigError("--resume needs [train] out_dir (or --out-dir): where the checkpoint is")
    # a read-only or full disk is an error before training, not after it (tests/test_faults.py)
    if rc.train.out_dir:
        check_writable(rc.train.out_dir)
    if args.export or rc.export.get("dir"):
        check_writable(Path(args.export or rc.export["dir"]).resolve().parent)
    threads = args.threads or rc.threads
    if threads:
        torch.set_num_threads(threads)
    info = setup_distributed()
    t0 = time.perf_counter()
    train_texts, valid_texts, test_texts = build_corpus(rc.data)
    tok: Any = CharTokenizer.fit(
        [t + "\n" for t in train_texts],
        min_freq=rc.data["min_freq"],
        max_size=rc.data["max_size"],
    )
    train_ids = encode_corpus(train_texts, tok)
    valid_ids = encode_corpus(valid_texts, tok)
    if rc.train.out_dir:  # memory-mapped id arrays, as a long run on a big corpus would use
        out = Path(rc.train.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        train_ids = load_ids(save_ids(out / "train_ids.npy", train_ids))
        valid_ids = load_ids(save_ids(out / "valid_ids.npy", valid_ids))
    mcfg = GPTConfig(vocab_size=tok.vocab_size, **rc.model)
    if rc.train.block_size > mcfg.block_size:
        raise ConfigError(
            f"{rc.source}: [train] block_size {rc.train.block_size} > [model] block_size {mcfg.block_size}"
        )
    model = GPT(mcfg)
    if info.is_main:
        print(
            f"[{rc.name}] {model.num_parameters():,} parameters, vocabulary {tok.vocab_size}, "
            f"{len(train_ids):,} training tokens, {rc.train.max_steps} steps × "
            f"{rc.train.tokens_per_step:,} tokens",
            flush=True,
        )
    from llmbook.training.trainer import train

    def log(rec: dict[str, Any]) -> None:
        if info.is_main and rec["val_loss"] is not None and not rc.train.progress:
            print(
                f"step {rec['step']:>6}  train {rec['train_loss']:.4f}  val {rec['val_loss']:.4f}  "
                f"lr {rec['lr']:.2e}  {rec['tokens_per_s']:.0f} tok/s  {time.perf_counter() - t0:.0f} s",
                flush=True,
            )

    result = train(
        model,
        train_ids,
        valid_ids,
        rc.train,
        tokenizer=tok,
        extra={"config_name": rc.name},
        callback=log,
    )
    wall = time.perf_counter() - t0
    if info.is_main:
        with torch.no_grad():
            vb = bits_per_char(result.model, tok, valid_texts)
            tb = bits_per_char(result.model, tok, test_texts) if test_texts else None
        summary = {
            "config_name": rc.name,
            "config_file": str(args.config),
            "parameters": model.num_parameters(),
            "train_tokens": int(len(train_ids)),
            "steps": result.steps,
            "tokens_seen": result.steps * rc.train.tokens_per_step,
            "final_val_loss": result.final_val_loss,
            "valid_bpc": vb,
            "test_bpc": tb,
            "tokens_per_s": result.tokens_per_s,
            "wall_seconds": wall,
            "hardware": _hardware(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "command": _train_command(args),
            "history": [
                {k: h[k] for k in ("step", "train_loss", "val_loss", "lr")} for h in result.history
            ],
        }
        test = f"test bpc {tb:.4f}" if tb is not None else "no test split"
        print(
            f"[{rc.name}] done in {wall:.0f} s: val loss {result.final_val_loss:.4f}, "
            f"valid bpc {vb:.4f}, {test}, {result.tokens_per_s:.0f} tokens/s",
            flush=True,
        )
        export = args.export or rc.export.get("dir")
        if export:
            save_checkpoint(export, result.model, tok, asdict(rc.train), summary)
            print(f"[{rc.name}] exported to {export}", flush=True)
    cleanup_distributed()
    return 0


def _load(path: str) -> tuple[Any, Any, dict[str, Any]]:
    from llmbook.data.registry import SHIPPED_CHECKPOINTS, shipped_checkpoint
    from llmbook.training.checkpoint import load_checkpoint

    if path in SHIPPED_CHECKPOINTS:
        return load_checkpoint(shipped_checkpoint(path))
    return load_checkpoint(path)


def cmd_generate(args: argparse.Namespace) -> int:
    from llmbook.generation.decoding import generate_text

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok, _ = _load(args.checkpoint)
    if tok is None:
        raise ConfigError(f"{args.checkpoint} has no tokenizer.json; cannot encode a prompt")
    texts = generate_text(
        model,
        tok,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        strategy=args.strategy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        num_beams=args.num_beams,
        num_samples=args.num_samples,
        seed=args.seed,
        stop_at="\n",
    )
    for t in texts:
        print(t)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint_pos is not None:
        if args.checkpoint not in (None, args.checkpoint_pos):
            raise ConfigError(
                f"two checkpoints given ({args.checkpoint_pos!r} and --checkpoint "
                f"{args.checkpoint!r}); give one"
            )
        args.checkpoint = args.checkpoint_pos
    if args.checkpoint is None:
        args.checkpoint = DEFAULT_CHECKPOINT
    if args.mc is not None:
        return _eval_multiple_choice(args)
    from llmbook.data.poetry import poem_lm_texts
    from llmbook.evaluation.lm import bits_per_char

    model, tok, _ = _load(args.checkpoint)
    if tok is None:
        raise ConfigError(f"{args.checkpoint} has no tokenizer.json; cannot evaluate")
    texts = poem_lm_texts(args.split)
    if args.limit:
        texts = texts[: args.limit]
    bpc = bits_per_char(model, tok, texts)
    out = {"split": args.split, "poems": len(texts), "bits_per_char": round(bpc, 4)}
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``export --gguf OUT``: the checkpoint as a GGUF file (:mod:`llmbook.models.gguf`)."""
    from llmbook.models.gguf import to_gguf

    model, tok, _ = _load(args.checkpoint)
    try:
        print(to_gguf(model, tok, args.gguf, name=Path(args.checkpoint).name, dtype=args.dtype))
    except (ImportError, TypeError, ValueError) as e:
        raise ConfigError(f"cannot export {args.checkpoint} to GGUF: {e}") from e
    return 0


def _eval_multiple_choice(args: argparse.Namespace) -> int:
    """``eval --mc TASK``: accuracy with a 95 % bootstrap interval, against chance."""
    from llmbook.data.mcq import MC_TASKS, load_poetry_mc
    from llmbook.evaluation.multiple_choice import evaluate_multiple_choice

    if args.mc not in MC_TASKS:
        listing = "\n".join(f"  {k:<15} {v[1]}" for k, v in MC_TASKS.items())
        raise ConfigError(
            f"unknown multiple-choice task {args.mc!r}; the shipped tasks are:\n{listing}"
        )
    model, tok, _ = _load(args.checkpoint)
    if tok is None:
        raise ConfigError(f"{args.checkpoint} has no tokenizer.json; cannot evaluate")
    items = load_poetry_mc(args.mc)
    if args.limit:
        items = items[: args.limit]
    try:
        result = evaluate_multiple_choice(model, tok, items)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot score {args.checkpoint} on {args.mc}: {e}") from e
    out = {"checkpoint": args.checkpoint, "task": args.mc, **result.to_dict()}
    out["summary"] = result.summary()
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llmbook", description="Train, sample and evaluate the book's Chinese GPT."
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train a GPT from a TOML config",
        description="Train a GPT from a TOML config (configs/cpu-tiny.toml, cpu-small.toml, cpu-modern.toml, gpu-small.toml). Runs under torchrun for multi-GPU.",
    )
    t.add_argument("--config", required=True, help="TOML config file, e.g. configs/cpu-tiny.toml")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.max_steps=100 (repeatable)",
    )
    t.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint in out_dir/last"
    )
    t.add_argument("--out-dir", help="directory for checkpoints (overrides [train] out_dir)")
    t.add_argument("--export", help="export the finished model here (overrides [export] dir)")
    t.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser(
        "generate",
        help="generate poems from a checkpoint",
        description="Generate text from a checkpoint directory (default: the shipped poetry GPT).",
    )
    g.add_argument(
        "--checkpoint",
        default=DEFAULT_CHECKPOINT,
        help=f"checkpoint directory or shipped checkpoint name (default {DEFAULT_CHECKPOINT})",
    )
    g.add_argument(
        "--prompt",
        default="",
        help="beginning of the poem (characters outside the vocabulary become <unk>)",
    )
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="sample")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--num-beams", type=int, default=4)
    g.add_argument("--num-samples", "-n", type=int, default=1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int)
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser(
        "eval",
        help="bits per character on the poem split, or multiple-choice accuracy (--mc)",
        description="Bits per character of a checkpoint on the book's shared poem split; "
        "with --mc TASK, its multiple-choice accuracy on a shipped task (data/eval/"
        "poetry_mc.jsonl: next_line, next_line_seen, fill_char, author) with a 95%% "
        "bootstrap interval and the chance rate.",
    )
    e.add_argument(
        "checkpoint_pos",
        nargs="?",
        metavar="CHECKPOINT",
        help=f"checkpoint directory or shipped checkpoint name (default {DEFAULT_CHECKPOINT})",
    )
    e.add_argument("--checkpoint", default=None, help="the same, as an option")
    e.add_argument("--split", choices=["train", "valid", "test"], default="valid")
    e.add_argument(
        "--mc",
        metavar="TASK",
        default=None,
        help="multiple-choice task instead of bits per character (e.g. next_line)",
    )
    e.add_argument("--limit", type=int, default=None, help="only the first N poems (or items)")
    e.add_argument("--threads", type=int)
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="write a checkpoint as a GGUF file (llama.cpp's format)")
    x.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="directory or shipped name")
    x.add_argument("--gguf", required=True, metavar="OUT.gguf", help="the GGUF file to write")
    x.add_argument("--dtype", choices=["f32", "f16"], default="f32", help="f16: half the size")
    x.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``main(["train", "--config", "configs/cpu-tiny.toml"])``."""
    from llmbook.generation.decoding import GenerationError
    from llmbook.training.checkpoint import CheckpointError

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except (ConfigError, CheckpointError, GenerationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
