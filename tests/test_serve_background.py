"""BackgroundServer (uvicorn in a thread on 127.0.0.1) and the load generator of § 6.10."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from conftest import tiny_gpt

from llmbook.serving.background import BackgroundServer
from llmbook.serving.loadtest import Level, measure_level, offline_tables
from llmbook.serving.server import ServeLimits, create_app
from llmbook.training.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gpt, tok = tiny_gpt(texts=["春风又绿江南岸，明月何时照我还。\n"], block_size=32)
    path = tmp_path_factory.mktemp("bg") / "poet"
    save_checkpoint(path, gpt, tok, None, {"note": "test"})
    return path


@pytest.fixture
def app(ckpt: Path) -> object:
    """A fresh app per test: stopping a server shuts its app's batcher down."""
    limits = ServeLimits(max_new_tokens=8, default_new_tokens=8, max_batch_size=4)
    return create_app(ckpt, None, limits=limits)


def test_start_serve_stop(app: object) -> None:
    server = BackgroundServer(app)
    with pytest.raises(RuntimeError, match="call start"):
        _ = server.url
    assert server.start() is server and server.running
    assert server.start() is server  # idempotent
    url = server.url
    assert url.startswith("http://127.0.0.1:") and server.port > 0
    r = httpx.get(url + "/v1/models", timeout=10)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "poet"
    level = measure_level(url, "poet", clients=2, requests=4, seconds=30, max_tokens=4)
    assert level.ok == 4 and level.lost == 0 and level.server_errors == 0
    assert 4 <= level.tokens <= 16 and level.tokens_per_s > 0
    assert len(level.latencies) == 4 and level.latency(0.5) <= level.latency(0.99)
    server.stop()
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/v1/models", timeout=2)


def test_measure_level_inside_a_running_loop(app: object) -> None:
    async def inside() -> Level:  # like a Jupyter cell: a loop is running
        with BackgroundServer(app) as server:
            return measure_level(server.url, "poet", 1, 2, 30, max_tokens=2)

    assert asyncio.run(inside()).ok == 2


def test_bad_arguments(app: object) -> None:
    with pytest.raises(ValueError, match="loopback addresses only"):
        BackgroundServer(app, host="0.0.0.0")
    with pytest.raises(ValueError, match="port must be"):
        BackgroundServer(app, port=70000)
    with pytest.raises(ValueError, match="clients >= 1"):
        measure_level("http://127.0.0.1:1", "poet", 0, 1, 1)


def test_level_statistics() -> None:
    level = Level(3, wall_s=2.0, tokens=10, latencies=[1.0, 2.0, 3.0], status={200: 3, 503: 1})
    assert level.tokens_per_s == 5.0 and level.ok == 3 and level.server_errors == 1
    assert level.latency(0.5) == 2.0
    assert Level(1).tokens_per_s == 0.0


def test_offline_tables(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text(
        "## Other\n\n| a |\n| - |\n| 0 |\n\n## Serving x (CPU)\n\ntext\n\n"
        "| clients | speed-up |\n| ---: | ---: |\n| 1 | **0.9×** |\n| 16 | **3.9×** |\n\n"
        "| | fp32 |\n| --- | ---: |\n| size | 6.5 |\n## Next\n",
        encoding="utf-8",
    )
    first, second = offline_tables(md, "Serving x")
    assert first == [{"clients": "1", "speed-up": "0.9×"}, {"clients": "16", "speed-up": "3.9×"}]
    assert second == [{"": "size", "fp32": "6.5"}]
    with pytest.raises(KeyError, match="no section"):
        offline_tables(md, "Missing")
