"""The project's one artifact-build command: every shipped checkpoint and result file, from a config.

``python -m llmbook.experiments build NAME`` (or ``all``; ``make artifacts``) reads
``configs/artifacts/NAME.toml``, runs the builder its ``kind`` names, and writes the
artifact with a card (``card.json`` and ``CARD.md``: data and split, command, hardware,
wall time, metrics, date) into the config's ``output`` directory under ``data/``, then
rewrites ``data/MANIFEST.sha256``.  ``--resume`` continues an interrupted build from its
state in ``runs/artifacts/NAME/`` (checkpoints, learning curve, time spent so far), so an
artifact may take several sessions of CPU time in total.

Kinds:

``charlm``
    A character-level LM of chapter 3 (``RNNLM`` or ``TransformerLM``) trained on the poem
    split by the book's trainer, with the validation bpc measured every ``curve.every``
    steps under the book's protocol and the 7-gram Kneser–Ney baseline on the same split.
``command``
    A list of commands (phases) that already build an artifact (``products`` lists files
    they write outside ``output``, which then holds only the card), such as
    ``python -m llmbook train --config configs/cpu-small.toml``; finished phases are
    skipped on ``--resume`` and the phase that was interrupted gets its ``resume_flag``.

Other kinds live next to the experiment they build: a config with
``module = "llmbook.experiments.wordvec"`` imports that module, whose ``@builder("kind")``
functions register themselves.  A builder returns ``{"metrics": {...}, "data": "..."}``
and writes its files into ``art.output``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "Artifact",
    "BuildContext",
    "artifact_names",
    "build",
    "load_artifact",
    "main",
    "read_card",
]

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "artifacts"
RUNS_DIR = ROOT / "runs" / "artifacts"


@dataclass
class Artifact:
    """One entry of ``configs/artifacts/``: what to build, how, and where it goes."""

    name: str
    kind: str
    output: Path  #: directory under data/ that receives the artifact and its card
    title: str
    chapter: str
    config: dict[str, Any]
    config_path: Path


@dataclass
class BuildContext:
    """What a builder gets besides its config: where its state lives and whether to resume."""

    run_dir: Path
    resume: bool
    threads: int
    log: Callable[[str], None] = field(default=lambda msg: print(msg, flush=True))
    notes: list[str] = field(default_factory=list)

    def load_state(self, name: str, default: Any) -> Any:
        path = self.run_dir / name
        if not path.exists():
            return default
        return json.loads(path.read_text(encoding="utf-8"))

    def save_state(self, name: str, value: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / (name + ".part")
        tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(self.run_dir / name)


Builder = Callable[[Artifact, BuildContext], dict[str, Any]]
BUILDERS: dict[str, Builder] = {}


def builder(kind: str) -> Callable[[Builder], Builder]:
    """Register a builder for artifacts of ``kind``."""

    def deco(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        return fn

    return deco


def artifact_names() -> list[str]:
    """Names of every artifact the project builds (one per ``configs/artifacts/*.toml``)."""
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(
            f"{CONFIG_DIR} not found: artifacts are built from a clone of the repository "
            "(the configs are not part of the installed package)"
        )
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_artifact(name: str) -> Artifact:
    """Read ``configs/artifacts/<name>.toml``; unknown names list the known ones."""
    path = CONFIG_DIR / f"{name}.toml"
    if not path.exists():
        raise ValueError(f"unknown artifact {name!r}; choose one of {artifact_names()} or 'all'")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from e
    missing = [k for k in ("kind", "output", "title", "chapter") if k not in raw]
    if missing:
        raise ValueError(f"{path} lacks {missing}; every artifact config names them")
    if raw.get("module"):  # a builder defined in another module registers on import
        importlib.import_module(raw["module"])
    if raw["kind"] not in BUILDERS:
        raise ValueError(f"{path}: unknown kind {raw['kind']!r}; known: {sorted(BUILDERS)}")
    output = (ROOT / raw["output"]).resolve()
    if not output.is_relative_to(ROOT / "data"):
        raise ValueError(f"{path}: output {raw['output']!r} must be a folder under data/")
    return Artifact(
        name=name,
        kind=raw["kind"],
        output=output,
        title=raw["title"],
        chapter=str(raw["chapter"]),
        config=raw,
        config_path=path,
    )


def hardware() -> dict[str, Any]:
    """The machine a build ran on, for its card."""
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def read_card(output: str | Path) -> dict[str, Any]:
    """The ``card.json`` of a built artifact, checked against ``data/MANIFEST.sha256``.

    ``output`` is the artifact's folder relative to ``data/`` (``"checkpoints/ch3-lstm"``)
    or an absolute path (read without the manifest check, e.g. a fresh local build).
    """
    from llmbook.data.registry import data_path

    path = Path(output)
    if path.is_absolute():
        card = path / "card.json"
        if not card.exists():
            raise FileNotFoundError(f"{card} not found: build the artifact first")
    else:
        card = data_path(f"{path.as_posix().rstrip('/')}/card.json")
    return json.loads(card.read_text(encoding="utf-8"))


def _render_card(card: dict[str, Any]) -> str:
    def row(k: str, v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4g}"
        return f"| {k} | {v} |"

    metrics = {k: v for k, v in card["metrics"].items() if not isinstance(v, list | dict)}
    lines = [
        f"# 成果卡：{card['name']}",
        "",
        card["title"] + f"（第 {card['chapter']} 节使用）。本文件由 `{card['command']}` 生成。",
        "",
        "## 数据与划分",
        "",
        card.get("data", "（见配置）"),
        "",
        "## 命令与配置",
        "",
        f"- 命令：`{card['command']}`（续训：加 `--resume`）",
        f"- 配置：`{card['config']}`",
        "",
        "## 硬件与用时",
        "",
        "- 硬件：" + ", ".join(f"{k} {v}" for k, v in card["hardware"].items()),
        f"- 墙钟时间：{card['wall_seconds']:.0f} 秒，分 {len(card['sessions'])} 次运行",
        f"- 日期：{card['date']}",
        "",
        "## 指标",
        "",
        "| 指标 | 值 |",
        "| --- | ---: |",
        *(row(k, v) for k, v in metrics.items()),
        "",
    ]
    if card.get("notes"):
        lines += ["## 说明", "", *(f"- {n}" for n in card["notes"]), ""]
    lines += ["## 文件", "", *(f"- `{f}`" for f in card["files"]), ""]
    return "\n".join(lines)


def build(name: str, resume: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Build one artifact and write its card; returns the card."""
    from llmbook.data.registry import write_manifest

    art = load_artifact(name)
    threads = threads or int(art.config.get("threads", 2))
    torch.set_num_threads(threads)
    run_dir = RUNS_DIR / name
    if run_dir.exists() and not resume and any(run_dir.iterdir()):
        raise FileExistsError(
            f"{run_dir} holds an earlier, unfinished or finished build of {name!r}; "
            f"continue it with --resume, or delete the folder to start over"
        )
    ctx = BuildContext(run_dir=run_dir, resume=resume, threads=threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    sessions = ctx.load_state("sessions.json", [])
    start = time.perf_counter()
    sessions.append(
        {
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "seconds": 0.0,
            "hardware": hardware(),
            "resume": resume,
        }
    )

    def tick() -> None:
        sessions[-1]["seconds"] = time.perf_counter() - start
        ctx.save_state("sessions.json", sessions)

    tick()
    art.output.mkdir(parents=True, exist_ok=True)
    try:
        result = BUILDERS[art.kind](art, ctx)
    finally:
        tick()
    products = [ROOT / f for f in art.config.get("products", [])]
    missing = [p for p in products if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: the build did not produce {missing}")
    files = sorted(
        p.relative_to(ROOT / "data").as_posix()
        for p in [*art.output.rglob("*"), *products]
        if p.is_file() and p.name not in ("card.json", "CARD.md")
    )
    card = {
        "name": name,
        "title": art.title,
        "chapter": art.chapter,
        "kind": art.kind,
        "command": f"python -m llmbook.experiments build {name}",
        "config": art.config_path.relative_to(ROOT).as_posix(),
        "data": result.get("data", ""),
        "hardware": sessions[-1]["hardware"],
        "sessions": sessions,
        "wall_seconds": sum(s["seconds"] for s in sessions),
        "date": _dt.date.today().isoformat(),
        "metrics": result.get("metrics", {}),
        "notes": ctx.notes + list(art.config.get("notes", [])),
        "files": files,
    }
    (art.output / "card.json").write_text(
        json.dumps(card, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    (art.output / "CARD.md").write_text(_render_card(card), encoding="utf-8")
    write_manifest()
    ctx.log(f"built {name} in {sessions[-1]['seconds']:.0f} s -> {art.output.relative_to(ROOT)}")
    return card


# ---------------------------------------------------------------------------------------
# kind = "charlm": the chapter-3 language models, trained long


def poem_char_data() -> tuple[Any, Any, Any, dict[str, list[str]]]:
    """The chapter-3 data: ``(tokenizer, train ids, valid ids, texts by split)``.

    The char tokenizer is fitted on the poem train split (each poem plus its newline).
    """
    from llmbook.data.lmdata import encode_corpus
    from llmbook.data.poetry import poem_lm_texts
    from llmbook.text.tokenizers import CharTokenizer

    texts = {s: poem_lm_texts(s) for s in ("train", "valid", "test")}
    tok = CharTokenizer.fit(t + "\n" for t in texts["train"])
    return tok, encode_corpus(texts["train"], tok), encode_corpus(texts["valid"], tok), texts


def ngram_baseline(
    texts: dict[str, list[str]], order: int = 7, discount: float = 0.9
) -> dict[str, float]:
    """Valid and test bpc of chapter 1's best n-gram (interpolated Kneser–Ney) on the poem split."""
    from llmbook.models.ngram import NGramLM

    lm = NGramLM(order, "kn", discount=discount).fit(texts["train"])
    return {s: lm.bits_per_char(texts[s]) for s in ("valid", "test")}


@builder("charlm")
def build_charlm(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models import RNNLM, RNNLMConfig, TransformerLM, TransformerLMConfig
    from llmbook.training.checkpoint import save_checkpoint
    from llmbook.training.trainer import TrainConfig, train
    from llmbook.utils import count_parameters

    cfg = art.config
    tok, train_ids, valid_ids, texts = poem_char_data()
    mconf = dict(cfg["model"])
    arch = mconf.pop("arch")
    seed = int(cfg["train"].get("seed", 0))
    torch.manual_seed(seed)
    model: torch.nn.Module
    if arch == "rnnlm":
        model = RNNLM(RNNLMConfig(vocab_size=tok.vocab_size, **mconf))
    elif arch == "transformer":
        model = TransformerLM(TransformerLMConfig(vocab_size=tok.vocab_size, **mconf))
    else:
        raise ValueError(f"{art.config_path}: model.arch must be 'rnnlm' or 'transformer'")
    tcfg = TrainConfig.from_dict(
        {**cfg["train"], "out_dir": str(ctx.run_dir / "train"), "resume": ctx.resume}
    )
    every = int(cfg.get("curve", {}).get("every", tcfg.ckpt_interval or 250))
    points = {int(p) for p in cfg.get("curve", {}).get("points", [])}  # extra early points
    curve: list[dict[str, Any]] = ctx.load_state("curve.json", [])
    first = True

    def on_step(rec: dict[str, Any]) -> None:
        nonlocal first, curve
        step = int(rec["step"])
        if first:  # a resumed run restarts after its checkpoint: drop later points
            curve = [c for c in curve if c["step"] < step]
            first = False
        if step % every == 0 or step in points or step == tcfg.max_steps:
            bpc = bits_per_char(model, tok, texts["valid"])
            curve.append(
                {
                    "step": step,
                    "tokens": step * tcfg.tokens_per_step,
                    "valid_bpc": bpc,
                    "train_loss": float(rec["train_loss"]),
                }
            )
            ctx.save_state("curve.json", curve)
            ctx.log(f"{art.name} step {step}: valid bpc {bpc:.3f}")

    if not curve:  # the untrained model: where every curve starts
        curve = [
            {
                "step": 0,
                "tokens": 0,
                "valid_bpc": bits_per_char(model, tok, texts["valid"]),
                "train_loss": None,
            }
        ]
        ctx.save_state("curve.json", curve)
    result = train(model, train_ids, valid_ids, tcfg, callback=on_step, tokenizer=tok)
    model = result.model
    metrics: dict[str, Any] = {
        "parameters": count_parameters(model),
        "steps": result.steps,
        "tokens_seen": result.steps * tcfg.tokens_per_step,
        "tokens_per_s": result.tokens_per_s,
        "valid_bpc": bits_per_char(model, tok, texts["valid"]),
        "test_bpc": bits_per_char(model, tok, texts["test"]),
    }
    base = ngram_baseline(texts)
    metrics["ngram7_valid_bpc"], metrics["ngram7_test_bpc"] = base["valid"], base["test"]
    metrics["curve"] = curve
    save_checkpoint(
        art.output, model, tok, tcfg, {k: v for k, v in metrics.items() if k != "curve"}
    )
    data = (
        f"唐诗语料 `llmbook.data.poetry.poem_lm_texts`：训练集 {len(texts['train']):,} 首、"
        f"验证集 {len(texts['valid']):,} 首、测试集 {len(texts['test']):,} 首（按诗文哈希固定划分）；"
        f"字级分词器建在训练集上，{tok.vocab_size:,} 个符号。bpc 为全书统一协议。"
    )
    return {"metrics": metrics, "data": data}


# ---------------------------------------------------------------------------------------
# kind = "command": artifacts built by an existing command, phase by phase


@builder("command")
def build_command(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    phases: list[dict[str, Any]] = art.config.get("phases", [])
    if not phases:
        raise ValueError(f"{art.config_path}: a command artifact needs [[phases]] with cmd = [...]")
    done: list[int] = ctx.load_state("phases_done.json", []) if ctx.resume else []
    started: list[int] = ctx.load_state("phases_started.json", []) if ctx.resume else []
    for i, phase in enumerate(phases):
        if i in done:
            ctx.log(f"{art.name}: phase {i + 1} already done, skipped")
            continue
        cmd = [sys.executable if c == "python" else c for c in phase["cmd"]]
        if i in started and phase.get("resume_flag"):
            cmd.append(phase["resume_flag"])
        ctx.save_state("phases_started.json", sorted(set(started) | {i}))
        started = sorted(set(started) | {i})
        ctx.log(f"{art.name}: phase {i + 1}/{len(phases)}: {shlex.join(cmd)}")
        env = {**os.environ, "LLMBOOK_THREADS": str(ctx.threads)}
        subprocess.run(cmd, cwd=ROOT, check=True, env=env)
        done.append(i)
        ctx.save_state("phases_done.json", done)
    metrics: dict[str, Any] = {}
    mfile = art.config.get("metrics_file")
    if mfile:
        values = json.loads((ROOT / mfile).read_text(encoding="utf-8"))
        for key in art.config.get("metrics_keys", []):
            node: Any = values
            for part in key.split("."):
                node = node[part]
            metrics[key] = node
    return {"metrics": metrics, "data": art.config.get("data", "")}


# ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m llmbook.experiments",
        description="Build the book's artifacts from configs/artifacts/*.toml.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build one artifact, or all of them")
    b.add_argument("name", help="artifact name (configs/artifacts/NAME.toml) or 'all'")
    b.add_argument("--resume", action="store_true", help="continue an interrupted build")
    b.add_argument("--threads", type=int, default=None, help="CPU threads (default: config)")
    sub.add_parser("list", help="list the artifacts and whether each is built")
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.cmd == "list":
        for n in artifact_names():
            art = load_artifact(n)
            built = (art.output / "card.json").exists()
            print(f"{n:24s} {art.kind:8s} {'built' if built else 'not built':10s} {art.title}")
        return 0
    names = artifact_names() if args.name == "all" else [args.name]
    for n in names:
        load_artifact(n)  # fail on a bad name before anything runs
    for n in names:
        build(n, resume=args.resume, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
