"""Command line: help, config errors, and a short train → generate → eval round trip."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

from llmbook.__main__ import main as llmbook_main
from llmbook.cli import ConfigError, load_config, main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["cpu-tiny", "cpu-small", "cpu-modern", "gpu-small"]


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_parse(name: str) -> None:
    rc = load_config(ROOT / "configs" / f"{name}.toml")
    assert rc.name == name
    assert rc.train.block_size <= rc.model.get("block_size", 128)


def test_cpu_modern_reproduces_the_shipped_gpt_modern_settings() -> None:
    from dataclasses import asdict

    rc = load_config("cpu-modern")
    shipped = json.loads(
        (ROOT / "data" / "checkpoints" / "gpt-modern" / "config.json").read_text(encoding="utf-8")
    )
    train = {k: v for k, v in asdict(rc.train).items() if k != "deterministic"}
    assert train == shipped["train_config"]
    model = {k: v for k, v in shipped["model_config"].items() if k in rc.model}
    assert rc.model == model and rc.data["max_size"] == shipped["model_config"]["vocab_size"]
    assert rc.data["corpus"] == "modern" and rc.export["dir"] == "data/checkpoints/gpt-modern"


def test_train_on_the_modern_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "modern"
    overrides = ["data.limit=40", "data.max_size=300", "train.max_steps=2", "train.eval_batches=1"]
    overrides += ["model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=32"]
    overrides += ["train.block_size=32", "train.batch_size=4"]
    args = ["train", "--config", "cpu-modern", "--export", str(export)]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    out = capsys.readouterr().out
    assert "no test split" in out and "exported to" in out
    meta = json.loads((export / "meta.json").read_text(encoding="utf-8"))
    assert meta["steps"] == 2 and meta["valid_bpc"] > 0 and meta["test_bpc"] is None
    tok = json.loads((export / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(tok["tokens"]) == 300  # data.max_size caps the vocabulary
    bad = [*args, "--set", "data.corpus='novels'"]
    assert main(bad) == 2
    assert "corpus must be one of ('poems', 'modern')" in capsys.readouterr().err


def test_gpu_small_has_tens_of_millions_of_parameters() -> None:
    from llmbook.models.gpt import GPT, GPTConfig

    rc = load_config(ROOT / "configs" / "gpu-small.toml")
    with torch.device("meta"):
        n = GPT(GPTConfig(vocab_size=6551, **rc.model)).num_parameters()
    assert 10_000_000 <= n <= 100_000_000
    assert rc.train.dtype == "bfloat16" and rc.train.compile


@pytest.mark.parametrize("cmd", ["train", "generate", "eval", "export"])
def test_help_is_clear(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and ("--config" in out or "--checkpoint" in out)


def test_unknown_config_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nn_layers = 2\n[train]\nmax_steps = 1\n", encoding="utf-8")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['n_layers'] in [model]" in err and "n_layer" in err
    bad.write_text("[train]\nlearning_rate = 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\['learning_rate'\] in \[train\]"):
        load_config(bad)
    bad.write_text("epochs = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['epochs'\]"):
        load_config(bad)


def test_bad_values_and_files_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "config file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('[train]\noptimizer = "lion"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        load_config(bad)
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        load_config(ROOT / "configs" / "cpu-tiny.toml", ["train.max_steps"])
    assert main(["generate", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_dispatch_from_python_m_llmbook(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        llmbook_main(["eval", "--help"])
    assert "--split" in capsys.readouterr().out


@pytest.mark.slow
def test_train_generate_eval_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "model"
    overrides = [
        "data.limit=200",
        "train.max_steps=4",
        "train.eval_interval=2",
        "train.eval_batches=1",
        "train.progress=false",
        f"train.out_dir='{tmp_path / 'run'}'",
        "train.ckpt_interval=2",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.n_head=2",
    ]
    args = ["train", "--config", str(ROOT / "configs" / "cpu-tiny.toml"), "--export", str(export)]
    assert main(args + [a for o in overrides for a in ("--set", o)]) == 0
    out = capsys.readouterr().out
    assert "valid bpc" in out and "exported to" in out
    meta = json.loads((export / "meta.json").read_text(encoding="utf-8"))
    assert meta["steps"] == 4 and meta["valid_bpc"] > 0 and len(meta["history"]) == 4
    # the recorded command reproduces the run: every override is in it
    recorded = shlex.split(meta["command"])
    assert recorded[:4] == ["python", "-m", "llmbook", "train"]
    pairs = set(zip(recorded[4::2], recorded[5::2]))
    assert pairs == {("--config", args[2]), ("--export", str(export))} | {
        ("--set", o) for o in overrides
    }
    assert (tmp_path / "run" / "train_ids.npy").is_file()  # memory-mapped ids

    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(export),
                "--prompt",
                "春",
                "-n",
                "2",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("春") for line in lines)
    assert (
        main(
            ["generate", "--checkpoint", str(export), "--strategy", "beam", "--max-new-tokens", "4"]
        )
        == 0
    )
    assert main(["generate", "--checkpoint", str(export), "--temperature", "0"]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err

    assert main(["eval", "--checkpoint", str(export), "--limit", "20"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["poems"] == 20 and res["bits_per_char"] > 0
