"""The artifact-build command: configs, cards, resume, the manifest, and the shipped configs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from llmbook.experiments import artifacts as A

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A fake repository: configs/artifacts/, data/, runs/ under tmp_path; no real manifest."""
    (tmp_path / "configs" / "artifacts").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(A, "ROOT", tmp_path)
    monkeypatch.setattr(A, "CONFIG_DIR", tmp_path / "configs" / "artifacts")
    monkeypatch.setattr(A, "RUNS_DIR", tmp_path / "runs" / "artifacts")
    written = []
    monkeypatch.setattr("llmbook.data.registry.write_manifest", lambda: written.append(1) or 0)
    calls: list[tuple[str, bool]] = []

    @A.builder("fake")
    def fake(art, ctx):
        calls.append((art.name, ctx.resume))
        seen = ctx.load_state("seen.json", 0) + 1
        ctx.save_state("seen.json", seen)
        (art.output / "result.json").write_text(json.dumps({"x": art.config["x"]}))
        ctx.notes.append("built by the fake builder")
        return {"metrics": {"x": art.config["x"], "curve": [1, 2]}, "data": "假数据"}

    def write(name: str, text: str) -> None:
        (tmp_path / "configs" / "artifacts" / f"{name}.toml").write_text(text, encoding="utf-8")

    yield tmp_path, write, calls, written
    A.BUILDERS.pop("fake", None)


FAKE = 'kind = "fake"\ntitle = "测试"\nchapter = "0.1"\noutput = "data/results/{name}"\nx = 3\n'


def test_build_writes_card_and_manifest(sandbox):
    root, write, calls, written = sandbox
    write("demo", FAKE.format(name="demo"))
    card = A.build("demo", threads=1)
    out = root / "data" / "results" / "demo"
    assert json.loads((out / "card.json").read_text()) == card
    for key in (
        "data",
        "command",
        "hardware",
        "wall_seconds",
        "metrics",
        "date",
        "files",
        "config",
    ):
        assert key in card
    assert card["command"] == "python -m llmbook.experiments build demo"
    assert card["files"] == ["results/demo/result.json"]
    assert card["notes"] == ["built by the fake builder"]
    md = (out / "CARD.md").read_text(encoding="utf-8")
    assert "假数据" in md and "| x | 3 |" in md and "curve" not in md  # lists stay in card.json
    assert written == [1] and calls == [("demo", False)]


def test_rebuild_needs_resume_and_resume_accumulates_time(sandbox):
    root, write, calls, _ = sandbox
    write("demo", FAKE.format(name="demo"))
    A.build("demo", threads=1)
    with pytest.raises(FileExistsError, match="--resume"):
        A.build("demo", threads=1)
    card = A.build("demo", resume=True, threads=1)
    assert len(card["sessions"]) == 2 and card["sessions"][1]["resume"] is True
    assert card["wall_seconds"] == pytest.approx(sum(s["seconds"] for s in card["sessions"]))
    assert json.loads((root / "runs" / "artifacts" / "demo" / "seen.json").read_text()) == 2


def test_bad_configs_are_named(sandbox):
    _, write, _, _ = sandbox
    write("ok", FAKE.format(name="ok"))
    with pytest.raises(ValueError, match=r"unknown artifact 'nope'.*\['ok'\]"):
        A.load_artifact("nope")
    write("outside", FAKE.format(name="x").replace('"data/results/x"', '"../elsewhere"'))
    with pytest.raises(ValueError, match="under data/"):
        A.load_artifact("outside")
    write("nokind", 'title = "t"\nchapter = "1"\noutput = "data/x"\n')
    with pytest.raises(ValueError, match=r"lacks \['kind'\]"):
        A.load_artifact("nokind")
    write("weird", FAKE.format(name="w").replace('"fake"', '"nosuch"'))
    with pytest.raises(ValueError, match="unknown kind 'nosuch'"):
        A.load_artifact("weird")
    write("broken", "kind = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        A.load_artifact("broken")


def test_main_rejects_unknown_name_before_building(sandbox, capsys):
    _, write, calls, _ = sandbox
    write("demo", FAKE.format(name="demo"))
    with pytest.raises(ValueError, match="unknown artifact"):
        A.main(["build", "nope"])
    assert calls == []
    assert A.main(["list"]) == 0
    assert "demo" in capsys.readouterr().out


def test_command_phases_skip_done_and_resume_the_interrupted_one(sandbox):
    root, write, _, _ = sandbox
    log = root / "log.txt"
    py = sys.executable.replace("\\", "/")
    write(
        "cmd",
        f'''kind = "command"
title = "命令"
chapter = "5.4"
output = "data/results/cmd"
metrics_file = "data/results/cmd/m.json"
metrics_keys = ["a.b"]

[[phases]]
cmd = ["{py}", "-c", "open('{log}', 'a').write('one\\\\n')"]

[[phases]]
cmd = ["{py}", "-c", "import sys, json; open('{log}', 'a').write(' '.join(sys.argv[1:]) + '\\\\n'); json.dump({{'a': {{'b': 7}}}}, open('{root}/data/results/cmd/m.json', 'w')); sys.exit(0 if sys.argv[1:] else 3)"]
resume_flag = "--resume"
''',
    )
    with pytest.raises(subprocess.CalledProcessError):  # phase 2 fails without --resume
        A.build("cmd", threads=1)
    card = A.build("cmd", resume=True, threads=1)
    assert log.read_text().splitlines() == ["one", "", "--resume"]
    assert card["metrics"] == {"a.b": 7}


def test_shipped_artifact_configs_load():
    """Every config in the repository names a known kind and an output under data/."""
    names = A.artifact_names()
    assert {"ch3-rnn", "ch3-lstm", "ch3-transformer"} <= set(names)
    for name in names:
        art = A.load_artifact(name)
        raw = tomllib.loads(art.config_path.read_text(encoding="utf-8"))
        assert raw["kind"] == art.kind and art.output.is_relative_to(REPO / "data")


def test_built_artifacts_have_cards_in_the_manifest():
    """A built artifact's files and card are covered by data/MANIFEST.sha256."""
    from llmbook.data.registry import read_manifest

    manifest = read_manifest()
    for name in A.artifact_names():
        art = A.load_artifact(name)
        card_path = art.output / "card.json"
        if not card_path.exists():
            continue
        card = json.loads(card_path.read_text(encoding="utf-8"))
        rel = art.output.relative_to(REPO / "data").as_posix()
        assert f"{rel}/card.json" in manifest and f"{rel}/CARD.md" in manifest
        for f in card["files"]:
            assert f in manifest, f"{f} of artifact {name} is not in data/MANIFEST.sha256"
        assert card["wall_seconds"] > 0 and card["metrics"]
