"""A small load generator for the OpenAI-compatible server (``benchmarks/bench_serve.py``, § 6.10).

:func:`run_level` lets ``clients`` concurrent clients (``httpx``, asyncio) send
``POST /v1/completions`` requests, each with its own seed, until ``requests`` have been
sent or ``seconds`` have passed; :class:`Level` holds what that measured: generated
tokens per second (completion tokens of the answered requests / wall time), latency
quantiles, status codes, and lost requests (no answer at all).  :func:`measure_level` is
the same from synchronous code, including a notebook whose event loop is already running.

:func:`offline_tables` reads the tables that ``bench_serve.py`` wrote into
``benchmarks/RESULTS.md``, so that a chapter can quote the full, offline measurement.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROMPTS", "Level", "measure_level", "offline_tables", "run_level"]

PROMPTS = ("春风", "明月", "白日依山尽", "床前", "江南", "孤帆", "山中", "故人")


@dataclass
class Level:
    """What one concurrency level measured."""

    clients: int
    wall_s: float = 0.0
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    lost: int = 0

    @property
    def ok(self) -> int:
        return self.status.get(200, 0)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.status.items() if s >= 500)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    def latency(self, q: float) -> float:
        """The ``q`` quantile (0 … 1) of the answered requests' latency, in seconds."""
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q * 100) - 1]


async def run_level(
    url: str,
    model: str,
    clients: int,
    requests: int,
    seconds: float,
    *,
    max_tokens: int = 32,
    prompts: tuple[str, ...] = PROMPTS,
) -> Level:
    """``clients`` concurrent clients; at most ``requests`` in all, none started after ``seconds``.

    Request ``i`` continues ``prompts[i % len(prompts)]`` with ``max_tokens`` tokens at
    temperature 1 and seed ``i`` (so two servers given the same load generate the same
    tokens).  ``url`` is the server's base URL (without ``/v1``).
    """
    import httpx

    if clients < 1 or requests < 1 or seconds <= 0:
        raise ValueError(
            f"need clients >= 1, requests >= 1 and seconds > 0, got {clients}, {requests}, "
            f"{seconds}"
        )
    out = Level(clients)
    numbers = itertools.count()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()

        async def worker() -> None:
            while True:
                i = next(numbers)
                if i >= requests or time.perf_counter() - start > seconds:
                    return
                body = {"model": model, "prompt": prompts[i % len(prompts)],
                        "max_tokens": max_tokens, "temperature": 1.0, "seed": i}  # fmt: skip
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/completions", json=body)
                except httpx.HTTPError:
                    out.lost += 1
                    continue
                out.status[r.status_code] = out.status.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    out.latencies.append(time.perf_counter() - t0)
                    out.tokens += r.json()["usage"]["completion_tokens"]

        await asyncio.gather(*(worker() for _ in range(clients)))
        out.wall_s = time.perf_counter() - start
    return out


def measure_level(
    url: str,
    model: str,
    clients: int,
    requests: int,
    seconds: float,
    *,
    max_tokens: int = 32,
    prompts: tuple[str, ...] = PROMPTS,
) -> Level:
    """:func:`run_level` from synchronous code.

    It runs in a fresh event loop on a worker thread, so it also works where a loop is
    already running (a Jupyter kernel), where ``asyncio.run`` would refuse.
    """
    coro = run_level(url, model, clients, requests, seconds, max_tokens=max_tokens,
                     prompts=prompts)  # fmt: skip
    with ThreadPoolExecutor(1, thread_name_prefix="llmbook-load") as pool:
        return pool.submit(asyncio.run, coro).result()


_ROW = re.compile(r"^\|(.*)\|\s*$")


def offline_tables(path: str | Path, title: str) -> list[list[dict[str, str]]]:
    """The Markdown tables of section ``## title…`` of ``path`` (e.g. ``benchmarks/RESULTS.md``).

    Each table is a list of rows, each row a dict from the header's cells to the row's
    (stripped, ``**bold**`` marks removed).  Raises :class:`KeyError` if no ``##`` heading
    starts with ``title``.
    """
    text = Path(path).read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    found = [s for s in sections[1:] if s.startswith(title)]
    if not found:
        raise KeyError(f"no section '## {title}…' in {path}; run the benchmark that writes it")
    tables: list[list[dict[str, str]]] = []
    block: list[list[str]] = []
    for line in [*found[0].splitlines(), ""]:
        m = _ROW.match(line.strip())
        if m:
            block.append([c.strip().replace("**", "") for c in m.group(1).split("|")])
            continue
        if len(block) >= 2:  # header, separator, rows
            header = block[0]
            tables.append([dict(zip(header, row)) for row in block[2:]])
        block = []
    return tables
