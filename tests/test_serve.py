"""The HTTP API, exercised with a real client against uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import tiny_gpt

from llmbook.models.classifier import GPTClassifier
from llmbook.serving.server import ServeLimits, create_app, main
from llmbook.training.checkpoint import save_checkpoint, save_classifier

LIMITS = ServeLimits(
    max_body_bytes=2048,
    max_prompt_chars=50,
    max_text_chars=100,
    max_new_tokens=20,
    default_new_tokens=8,
    timeout_s=20,
    max_concurrency=2,
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serve")
    texts = ["春风又绿江南岸，明月何时照我还。\n", "质量很好，非常满意", "太差了"]
    gpt, tok = tiny_gpt(texts=texts, block_size=64)
    save_checkpoint(root / "gpt", gpt, tok, None, {"note": "test"})
    clf = GPTClassifier.from_gpt(gpt, ["负面", "正面"], max_len=32).eval()
    save_classifier(root / "clf", clf, tok)
    return root / "gpt", root / "clf"


def _serve(app: object) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def url(checkpoints: tuple[Path, Path]) -> Iterator[str]:
    yield from _serve(create_app(checkpoints[0], checkpoints[1], limits=LIMITS))


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    d = r.json()
    assert d["status"] == "ok" and d["classifier"] == ["负面", "正面"]
    assert d["limits"]["max_new_tokens"] == 20


def test_generate_ok_and_deterministic(client: httpx.Client) -> None:
    body = {"prompt": "春风", "max_new_tokens": 10, "temperature": 0.8, "top_p": 0.9, "seed": 3}
    a = client.post("/generate", json=body)
    b = client.post("/generate", json=body)
    assert a.status_code == 200, a.text
    assert a.json()["text"].startswith("春风")
    assert a.json()["text"] == b.json()["text"]  # same seed, same text
    assert len(a.json()["completion"]) <= 10
    g = client.post("/generate", json={"prompt": "明月", "strategy": "greedy"})
    assert g.status_code == 200


def test_classify_ok(client: httpx.Client) -> None:
    r = client.post("/classify", json={"text": "质量很好"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["label"] in ("负面", "正面") and d["label_id"] in (0, 1)
    assert sum(d["probs"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/generate", {"prompt": "春", "temperature": -1}, 422, "temperature"),
        ("/generate", {"prompt": "春", "temperature": 0}, 422, "temperature"),
        ("/generate", {"prompt": "春", "top_p": 0}, 422, "top_p"),
        ("/generate", {"prompt": "春", "top_p": 1.5}, 422, "top_p"),
        ("/generate", {"prompt": "春", "top_k": 0}, 422, "top_k"),
        ("/generate", {"prompt": "春", "max_new_tokens": 0}, 422, "max_new_tokens"),
        ("/generate", {"prompt": "春", "max_new_tokens": 10_000}, 422, "max_new_tokens"),
        ("/generate", {"prompt": "春", "max_new_tokens": "5"}, 422, "must be int"),
        ("/generate", {"prompt": "春", "max_new_tokens": True}, 422, "must be int"),
        ("/generate", {"prompt": "春", "strategy": "beam"}, 422, "strategy"),
        ("/generate", {"prompt": 5}, 422, "must be a string"),
        ("/generate", {}, 422, "missing field 'prompt'"),
        ("/generate", {"prompt": "春" * 51}, 422, "limit is 50"),
        ("/generate", {"prompt": "春", "checkpoint": "/etc/passwd"}, 422, "unknown field"),
        ("/classify", {"text": ""}, 422, "empty"),
        ("/classify", {"text": "   "}, 422, "empty"),
        ("/classify", {"text": "好" * 101}, 422, "limit is 100"),
        ("/classify", {"text": ["好"]}, 422, "must be a string"),
        ("/classify", {"text": "好", "model": "x"}, 422, "unknown field"),
    ],
)
def test_bad_parameters(
    client: httpx.Client, path: str, body: dict, status: int, message: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_malformed_and_oversized_requests(client: httpx.Client) -> None:
    hdr = {"Content-Type": "application/json"}
    r = client.post("/generate", content='{"prompt": "春'.encode(), headers=hdr)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = client.post("/generate", content=b"\xff\xfe", headers=hdr)
    assert r.status_code == 400
    r = client.post("/generate", content='["春"]'.encode(), headers=hdr)
    assert r.status_code == 422 and "object" in r.json()["error"]
    r = client.post("/generate", content=b"prompt=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    big = json.dumps({"prompt": "春" * 3000}).encode()
    r = client.post("/generate", content=big, headers=hdr)
    assert r.status_code == 413 and "2048" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still applies
        for _ in range(10):
            yield b" " * 500

    r = client.post("/generate", content=chunks(), headers=hdr)
    assert r.status_code == 413
    assert client.get("/nope").status_code == 404
    assert "endpoints" in client.get("/nope").json()["error"]
    assert client.get("/generate").status_code == 405


def test_concurrent_requests(client: httpx.Client, url: str) -> None:
    def one(i: int) -> tuple[int, str]:
        with httpx.Client(base_url=url, timeout=60) as c:
            path, body = (
                ("/generate", {"prompt": "春", "max_new_tokens": 8, "seed": i})
                if i % 2
                else ("/classify", {"text": "质量很好" * (i + 1)})
            )
            r = c.post(path, json=body)
            return r.status_code, r.text

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert all(code == 200 for code, _ in results), results
    assert client.get("/health").status_code == 200


def test_timeout_and_missing_classifier(checkpoints: tuple[Path, Path]) -> None:
    tight = ServeLimits(timeout_s=1e-9, max_new_tokens=20, default_new_tokens=8)
    for base in _serve(create_app(checkpoints[0], None, limits=tight)):
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post("/generate", json={"prompt": "春"})
            assert r.status_code in (503, 504), r.text
            r = c.post("/classify", json={"text": "好"})
            assert r.status_code == 404 and "--classifier" in r.json()["error"]


def test_limits_and_cli_validation(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        ServeLimits(timeout_s=0)
    with pytest.raises(SystemExit):
        main(["--max-new-tokens", "0"])
    assert "must be > 0" in capsys.readouterr().err
