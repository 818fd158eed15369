"""Shared runner for the chapters' longer experiments (``benchmarks/chN_experiments.py``).

Each script defines its parts as functions returning a JSON-able dict; :func:`run_parts`
runs the named ones on ``$LLMBOOK_THREADS`` threads (default 1) and writes
``data/results/chN_<part>.json`` with the total time.  :func:`run_meta` is the
provenance every result records.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "results"


def run_meta(script: str, part: str) -> dict[str, object]:
    """How to reproduce a part, and the software and machine it ran on."""
    return {
        "reproduce": f"python benchmarks/{script} {part} && make manifest",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def run_parts(
    chapter: str, parts: dict[str, Callable[[], dict[str, object]]], argv: list[str]
) -> None:
    """Run the parts named in ``argv`` (all if empty); write data/results/{chapter}_{part}.json."""
    torch.set_num_threads(int(os.environ.get("LLMBOOK_THREADS", "1")))
    names = argv or list(parts)
    unknown = [n for n in names if n not in parts]
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {list(parts)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.perf_counter()
        result = parts[name]()
        result["total_seconds"] = time.perf_counter() - t0
        path = OUT / f"{chapter}_{name}.json"
        path.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} in {result['total_seconds']:.0f} s", flush=True)
