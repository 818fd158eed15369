"""Load test of ``llmbook.serving`` with the shipped ``gpt-poetry`` model, and int8 vs fp32.

Two tables, each measured in one run on one machine:

1. **Batched vs one at a time.**  The server runs in a child process on 127.0.0.1 (one
   torch thread), once with continuous batching (``max_batch_size`` 16) and once with
   ``max_batch_size=1`` (requests decoded one after another: the switch
   ``python -m llmbook serve --max-batch-size 1``).  For 1, 4, 16 and 64 concurrent
   clients (``httpx``, asyncio), each level sends at most ``requests`` requests and starts
   none after ``seconds``; every request is ``POST /v1/completions`` with its own seed
   (the same seeds for both servers, so both generate the same tokens).  Reported:
   generated tokens/s (completion tokens of the answered requests / wall time of the
   level), p50 and p99 latency of a request, 5xx answers, and lost requests (no answer:
   a connection error or the client's timeout).
2. **int8 vs fp32** (``--quantize int8``, :mod:`llmbook.models.quant`): weight bytes in
   memory, safetensors file size, the server's resident memory before and after loading
   the model (RSS delta, from ``/proc``; it includes the batcher's KV cache, the same for
   both, and, for int8, float32 weights freed but kept by the allocator until
   ``malloc_trim``), tokens/s at 1 and 16 concurrent clients on the
   batched server, and bits per character on the held-out ``valid`` poems
   (:func:`llmbook.evaluation.lm.bits_per_char`, the first ``bpc_poems`` of them).

The client runs in this process and shares the CPU with the server: on a 2-core machine
the numbers are the server's throughput under that load, not its limit.  The three servers
run side by side and take turns level by level, so that other load on the machine affects
them alike.

Usage: ``python benchmarks/bench_serve.py [--requests N] [--seconds S] [--out FILE]``
(also run by ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmbook.serving.loadtest import PROMPTS, Level, run_level  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)
BATCH = 16  #: max_batch_size of the batched server
MAX_TOKENS = 32  #: per request
SERVER_THREADS = 1


# --------------------------------------------------------------------------- the server


def _child(spec: dict[str, Any]) -> None:
    """The server process: report RSS around loading, then serve on a free port."""
    import socket

    import torch
    import uvicorn

    import llmbook.models.quant
    import llmbook.serving.chat_page
    import llmbook.serving.docs_page
    import llmbook.serving.legacy_api
    import llmbook.serving.openai_api
    import llmbook.training.checkpoint
    import llmbook.training.finetune  # noqa: F401  (imported: not counted as the model's RSS)
    from llmbook.serving.server import ServeLimits, create_app

    torch.set_num_threads(int(spec["threads"]))
    before = _rss_bytes(os.getpid())
    limits = ServeLimits(
        max_new_tokens=MAX_TOKENS,
        default_new_tokens=MAX_TOKENS,
        max_batch_size=int(spec["batch"]),
        max_queue=1024,
        timeout_s=300.0,
    )
    app = create_app(spec["checkpoint"], None, limits=limits, quantize=spec["quantize"])
    after = _rss_bytes(os.getpid())
    _malloc_trim()  # hand freed heap pages (the fp32 weights int8 replaced) back to the OS
    trimmed = _rss_bytes(os.getpid())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    rss = {"rss_before": before, "rss_after": after, "rss_trimmed": trimmed}
    print(json.dumps({"port": port} | rss), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    server.run(sockets=[sock])


def _malloc_trim() -> None:
    """glibc's ``malloc_trim(0)``; nothing elsewhere."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
        if trim is not None:
            trim(0)


def _rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status (not Linux?)")


@dataclass
class Server:
    url: str
    rss_before: int  #: after the imports, before the model is loaded
    rss_after: int  #: with the model loaded (and quantised)
    rss_trimmed: int  #: then after ``malloc_trim(0)``
    process: subprocess.Popen[str]


@contextmanager
def serve(checkpoint: Path, batch: int, quantize: str = "none") -> Iterator[Server]:
    """Start the server as a child process on 127.0.0.1; stop it afterwards."""
    spec = {"checkpoint": str(checkpoint), "batch": batch, "quantize": quantize,
            "threads": SERVER_THREADS}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, __file__, "--server-child", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ | {"OMP_NUM_THREADS": str(SERVER_THREADS)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server process exited ({proc.wait()}) before it started")
        info = json.loads(line)
        url = f"http://127.0.0.1:{info['port']}"
        import httpx

        for _ in range(200):  # uvicorn starts listening right after the line
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"the server at {url} did not answer GET /health within 10 s")
        yield Server(url, info["rss_before"], info["rss_after"], info["rss_trimmed"], proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- the load


async def _level(url: str, model: str, clients: int, requests: int, seconds: float) -> Level:
    """``clients`` concurrent clients (:func:`llmbook.serving.loadtest.run_level`)."""
    return await run_level(url, model, clients, requests, seconds, max_tokens=MAX_TOKENS,
                           prompts=PROMPTS)  # fmt: skip


def load_test(
    servers: dict[str, tuple[Server, tuple[int, ...]]], requests: int, seconds: float
) -> dict[str, list[Level]]:
    """Every concurrency level against every server, the servers taking turns per level.

    ``servers`` maps a name to (server, its levels).  Alternating level by level (rather
    than server by server) lets a change in the machine's load hit all servers alike.
    Each server first gets a warm-up request.
    """
    import httpx

    models = {}
    for name, (server, _) in servers.items():
        models[name] = httpx.get(server.url + "/v1/models", timeout=30).json()["data"][0]["id"]
        asyncio.run(_level(server.url, models[name], 1, 2, 60))  # warm-up
    out: dict[str, list[Level]] = {name: [] for name in servers}
    for c in sorted({c for _, levels in servers.values() for c in levels}):
        for name, (server, levels) in servers.items():
            if c in levels:
                level = _level(server.url, models[name], c, max(requests, c), seconds)
                out[name].append(asyncio.run(level))
    return out


# --------------------------------------------------------------------------- quantisation


def model_sizes(checkpoint: Path, bpc_poems: int) -> dict[str, dict[str, float]]:
    """Weight bytes, file size and bits per character of the fp32 and the int8 model."""
    import torch
    from safetensors.torch import save_model

    from llmbook.data.poetry import poem_lm_texts
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models.quant import quantize_linear_int8, weight_bytes
    from llmbook.training.checkpoint import load_checkpoint

    torch.set_num_threads(SERVER_THREADS)
    model, tok, _ = load_checkpoint(checkpoint)
    assert tok is not None
    texts = poem_lm_texts("valid")[:bpc_poems]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in (("fp32", model), ("int8", quantize_linear_int8(model))):
            path = Path(tmp) / f"{name}.safetensors"
            save_model(m, str(path))  # a tied matrix is stored once
            out[name] = {
                "parameters": float(model.num_parameters()),
                "weight_mb": weight_bytes(m) / 1e6,
                "file_mb": path.stat().st_size / 1e6,
                "bpc": bits_per_char(m, tok, texts),
            }
    out["fp32"]["bpc_poems"] = out["int8"]["bpc_poems"] = float(len(texts))
    return out


# --------------------------------------------------------------------------- tables


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}" if x == x else "–"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else ""


def serving_table(batched: list[Level], single: list[Level]) -> str:
    """Batched and one-at-a-time side by side, one row per concurrency level."""
    rows = [
        "| clients | tokens/s batched | tokens/s one at a time | speed-up | "
        "p50 s batched / one | p99 s batched / one | answered batched / one | "
        "5xx batched / one | lost batched / one |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b, s in zip(batched, single):
        speedup = b.tokens_per_s / s.tokens_per_s if s.tokens_per_s else float("nan")
        rows.append(
            f"| {b.clients} | {b.tokens_per_s:.0f} | {s.tokens_per_s:.0f} | "
            f"**{_f(speedup)}×** | {_f(b.latency(0.5))} / {_f(s.latency(0.5))} | "
            f"{_f(b.latency(0.99))} / {_f(s.latency(0.99))} | {b.ok} / {s.ok} | "
            f"{b.server_errors} / {s.server_errors} | {b.lost} / {s.lost} |"
        )
    return "\n".join(rows)


def quant_table(
    sizes: dict[str, dict[str, float]],
    rss: dict[str, tuple[float, float]],
    tps: dict[str, list[Level]],
) -> str:
    """fp32 and int8 side by side; ``rss`` holds (delta, delta after malloc_trim) in MB."""
    f, q = sizes["fp32"], sizes["int8"]
    n = int(f["bpc_poems"])
    lines = [
        ("parameters", f"{f['parameters']:,.0f}", f"{q['parameters']:,.0f}", ""),
        ("weights in memory (MB)", f"{f['weight_mb']:.2f}", f"{q['weight_mb']:.2f}",
         f"{q['weight_mb'] / f['weight_mb']:.2f}×"),
        ("safetensors file (MB)", f"{f['file_mb']:.2f}", f"{q['file_mb']:.2f}",
         f"{q['file_mb'] / f['file_mb']:.2f}×"),
        ("server RSS delta of loading (MB)", f"{rss['fp32'][0]:.1f}", f"{rss['int8'][0]:.1f}",
         _ratio(rss["int8"][0], rss["fp32"][0])),
        ("… after malloc_trim(0) (MB)", f"{rss['fp32'][1]:.1f}", f"{rss['int8'][1]:.1f}",
         _ratio(rss["int8"][1], rss["fp32"][1])),
    ]  # fmt: skip
    for i, c in enumerate(("1", str(BATCH))):
        a, b = tps["fp32"][i].tokens_per_s, tps["int8"][i].tokens_per_s
        lines.append((f"tokens/s, {c} concurrent client(s)", f"{a:.0f}", f"{b:.0f}",
                      f"{b / a:.2f}×" if a else ""))  # fmt: skip
    lines.append((f"bits per character, valid (first {n} poems)", f"{f['bpc']:.4f}",
                  f"{q['bpc']:.4f}", f"{q['bpc'] - f['bpc']:+.4f}"))  # fmt: skip
    out = ["| | fp32 | int8 | int8 vs fp32 |", "| --- | ---: | ---: | ---: |"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in lines]
    return "\n".join(out)


def run(requests: int = 32, seconds: float = 15.0, bpc_poems: int = 400) -> dict[str, Any]:
    """Both tables; returns the dict ``benchmarks/run_all.py`` renders.

    Each level sends at most ``max(requests, clients)`` requests and starts none after
    ``seconds``; bits per character use the first ``bpc_poems`` valid poems.
    """
    from llmbook.data.registry import shipped_checkpoint

    ckpt = Path(shipped_checkpoint("gpt-poetry"))
    t0 = time.perf_counter()
    with (
        serve(ckpt, BATCH) as batched_server,
        serve(ckpt, 1) as single_server,
        serve(ckpt, BATCH, "int8") as int8_server,
    ):
        levels = load_test(
            {
                "batched": (batched_server, CONCURRENCY),
                "single": (single_server, CONCURRENCY),
                "int8": (int8_server, (1, BATCH)),
            },
            requests,
            seconds,
        )
    batched, single, int8 = levels["batched"], levels["single"], levels["int8"]
    rss_fp32, rss_int8 = (
        ((s.rss_after - s.rss_before) / 1e6, (s.rss_trimmed - s.rss_before) / 1e6)
        for s in (batched_server, int8_server)
    )
    fp32 = [lv for lv in batched if lv.clients in (1, BATCH)]
    sizes = model_sizes(ckpt, bpc_poems)
    serving = serving_table(batched, single)
    quant = quant_table(sizes, {"fp32": rss_fp32, "int8": rss_int8}, {"fp32": fp32, "int8": int8})
    notes = (
        f"Server: `gpt-poetry` in a child process on 127.0.0.1, {SERVER_THREADS} torch "
        f"thread; batched = continuous batching with max_batch_size {BATCH}, one at a time "
        f"= max_batch_size 1. Each request: POST /v1/completions, max_tokens {MAX_TOKENS}, "
        f"temperature 1, its own seed; each level at most max({requests}, clients) "
        f"requests, none started after {seconds:g} s. The client (httpx, asyncio) runs on "
        "the same machine. Latency in seconds.\n\n"
        f"{serving}\n\n"
        "int8 = `--quantize int8` (weight-only, per-channel scales; the tied embedding "
        "stays shared). Its tokens/s are measured on the batched server.\n\n"
        f"{quant}\n\n"
        f"Total {time.perf_counter() - t0:.0f} s."
    )
    return {"title": "Serving gpt-poetry: batching under load, int8 vs fp32 (CPU)",
            "notes": notes}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=32, help="requests per level (at least clients)")
    p.add_argument("--seconds", type=float, default=15.0, help="no request starts after this")
    p.add_argument("--bpc-poems", type=int, default=400, help="valid poems for bits/char")
    p.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    p.add_argument("--server-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.server_child is not None:
        _child(json.loads(args.server_child))
        return 0
    if args.requests < 1 or args.seconds <= 0 or args.bpc_poems < 1:
        p.error("--requests and --bpc-poems must be >= 1 and --seconds > 0")
    import torch

    torch.set_num_threads(1)
    result = run(args.requests, args.seconds, args.bpc_poems)
    text = f"## {result['title']}\n\n{result['notes']}\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
