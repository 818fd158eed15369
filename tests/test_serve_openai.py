"""The OpenAI-compatible API (/v1): the official ``openai`` client against uvicorn on 127.0.0.1.

Also: errors in OpenAI's shape (httpx), continuous batching (batched tokens equal
``generate``'s; a seeded request gives the same text alone and in a full batch), the
bounded queue (429), loading (503), deadlines (504) and a streaming client that goes away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from conftest import tiny_gpt
from test_serve import _serve

from llmbook.generation.decoding import generate
from llmbook.serving import batching
from llmbook.serving.batching import Batcher, SamplingParams, Sequence
from llmbook.serving.server import ServeLimits, create_app
from llmbook.training.checkpoint import save_checkpoint

openai = pytest.importorskip("openai")

TEXTS = ["春风又绿江南岸，明月何时照我还。\n", "问春风答明月\n", "abcdefg"]
LIMITS = ServeLimits(
    max_new_tokens=40, default_new_tokens=16, max_batch_size=8, max_queue=32, timeout_s=20
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gpt, tok = tiny_gpt(texts=TEXTS, block_size=64, scale=3.0)
    path = tmp_path_factory.mktemp("v1") / "poet"
    save_checkpoint(path, gpt, tok, None, {"note": "test"})
    return path


@pytest.fixture(scope="module")
def app(ckpt: Path) -> Any:
    return create_app(ckpt, None, limits=LIMITS)


@pytest.fixture(scope="module")
def url(app: Any) -> Iterator[str]:
    yield from _serve(app)


@pytest.fixture(scope="module")
def client(url: str) -> Any:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30)


def test_models_completions_and_chat(client: Any) -> None:
    assert [m.id for m in client.models.list().data] == ["poet"]
    c = client.completions.create(model="poet", prompt="春风", max_tokens=8, seed=1)
    assert c.object == "text_completion" and len(c.choices) == 1
    assert c.choices[0].finish_reason in ("stop", "length")
    assert 1 <= c.usage.completion_tokens <= 8 and c.usage.prompt_tokens == 2
    assert len(c.choices[0].text) <= 8  # one character per token
    again = client.completions.create(model="poet", prompt="春风", max_tokens=8, seed=1)
    assert again.choices[0].text == c.choices[0].text  # same seed, same text
    echo = client.completions.create(
        model="poet", prompt=["春", "明月"], max_tokens=4, n=2, echo=True, temperature=0
    )
    assert [ch.index for ch in echo.choices] == [0, 1, 2, 3]
    assert echo.choices[0].text.startswith("春") and echo.choices[2].text.startswith("明月")
    assert echo.choices[0].text == echo.choices[1].text  # temperature 0: greedy
    chat = client.chat.completions.create(
        model="poet",
        messages=[{"role": "system", "content": "诗"}, {"role": "user", "content": "春风"}],
        max_tokens=10,
        seed=2,
        stop=["。"],
    )
    msg = chat.choices[0].message
    assert msg.role == "assistant" and "。" not in msg.content and "\n" not in msg.content
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens


def test_streaming_matches_the_whole_answer(client: Any) -> None:
    body = dict(model="poet", max_tokens=12, seed=5, temperature=0.9, top_p=0.95)
    messages = [{"role": "user", "content": "明月"}]
    whole = client.chat.completions.create(messages=messages, **body)
    stream = client.chat.completions.create(
        messages=messages, stream=True, stream_options={"include_usage": True}, **body
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    comp = client.completions.create(prompt="春", stream=True, **body)
    pieces = list(comp)
    full = client.completions.create(prompt="春", **body).choices[0].text
    assert "".join(p.choices[0].text for p in pieces) == full


def test_raw_sse_format(url: str) -> None:
    body = {"model": "poet", "prompt": "春", "max_tokens": 3, "stream": True, "seed": 0}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", {"model": "other", "prompt": "春"}, 404, "model"),
        ("/v1/completions", {"prompt": "春"}, 422, "model"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "temperature": 2.5}, 422, "temperature"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "top_p": 0}, 422, "top_p"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "max_tokens": "5"}, 422, "max_tokens"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "max_tokens": 41}, 422, "max_tokens"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "n": True}, 422, "n"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "n": 9}, 422, "n"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "seed": -1}, 422, "seed"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "stop": [""]}, 422, "stop[0]"),
        ("/v1/completions", {"model": "poet", "prompt": "春", "file": "/etc/passwd"}, 422, "file"),
        ("/v1/completions", {"model": "poet", "prompt": "春" * 63}, 400, "prompt"),
        ("/v1/completions", {"model": "poet", "prompt": "a\x01"}, 422, "prompt"),
        ("/v1/chat/completions", {"model": "poet", "messages": []}, 422, "messages"),
        (
            "/v1/chat/completions",
            {"model": "poet", "messages": [{"role": "tool", "content": "x"}]},
            422,
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            {"model": "poet", "messages": [{"role": "assistant", "content": "x"}]},
            422,
            "messages[0].role",
        ),
    ],
)  # fmt: skip
def test_errors_have_the_openai_shape(
    url: str, path: str, body: dict, status: int, param: str
) -> None:
    r = httpx.post(url + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and param.split("[")[0] in err["message"]


def test_openai_client_raises_its_own_errors(client: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="春")
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model="poet", prompt="春", temperature=-1)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="poet", prompt="春" * 100)


def test_malformed_and_huge_bodies(url: str) -> None:
    hdr = {"Content-Type": "application/json"}
    r = httpx.post(f"{url}/v1/completions", content=b'{"model": ', headers=hdr)
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    big = b'{"model": "poet", "prompt": "' + b"a" * 20_000 + b'"}'
    r = httpx.post(f"{url}/v1/completions", content=big, headers=hdr)
    assert r.status_code == 413 and "16384" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/nope", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_ragged_batch_decodes_like_generate() -> None:
    for cfg in ({}, {"pos": "rope", "n_kv_head": 1, "qk_norm": True, "mlp": "swiglu"}):
        gpt, tok = tiny_gpt(texts=TEXTS, block_size=64, scale=3.0, **cfg)
        b = Batcher(gpt, tok, max_batch_size=4)
        prompts = [[tok.bos_id, *tok.encode(p)] for p in ("春风", "明月何时", "a", "江南岸江南")]
        seqs = [Sequence(p, SamplingParams(20, 0.0), time.monotonic() + 30, lambda e: None)
                for p in prompts]  # fmt: skip
        b.submit(seqs)
        for _ in range(200):
            if b.load["running"] == b.load["waiting"] == 0 and b.steps:
                break
            time.sleep(0.01)
        b.close()
        assert b.rows > b.steps  # several sequences per decode step
        for p, seq in zip(prompts, seqs):
            ref = generate(gpt, torch.tensor([p]), 20, strategy="greedy")[0, len(p) :].tolist()
            assert seq.new_ids and seq.new_ids == ref[: len(seq.new_ids)]


def test_seeded_output_does_not_depend_on_the_batch(url: str, app: Any) -> None:
    body = {"model": "poet", "prompt": "春风", "max_tokens": 30, "seed": 7, "temperature": 1.2}
    alone = httpx.post(f"{url}/v1/completions", json=body, timeout=30).json()
    batcher = app.state.holder["served"].batcher
    rows0, steps0 = batcher.rows, batcher.steps

    def one(i: int) -> str:
        b = body if i == 5 else body | {"seed": 100 + i, "prompt": "明月何时" * (i % 3 + 1)}
        return httpx.post(f"{url}/v1/completions", json=b, timeout=30).json()["choices"][0]["text"]

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, range(8)))
    assert texts[5] == alone["choices"][0]["text"]
    assert batcher.rows - rows0 > batcher.steps - steps0  # they did share decode steps


def _forced(monkeypatch: pytest.MonkeyPatch, delay: float, token: int) -> list[int]:
    """Make every decode step slow and always pick ``token``; returns the batch sizes."""
    original = batching.ragged_decode_step
    sizes: list[int] = []

    def slow(model: Any, cache: Any, slots: Any, pos: Any, toks: Any) -> torch.Tensor:
        sizes.append(int(slots.numel()))
        time.sleep(delay)
        logits = original(model, cache, slots, pos, toks)
        forced = torch.full_like(logits, -1e4)
        forced[:, token] = 0.0
        return forced

    monkeypatch.setattr(batching, "ragged_decode_step", slow)
    return sizes


def test_queue_full_loading_timeout_and_disconnect(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmbook.text.tokenizers import CharTokenizer

    spring = CharTokenizer.fit(TEXTS).encode("春")[0]
    sizes = _forced(monkeypatch, 0.02, spring)
    lim = ServeLimits(
        max_new_tokens=60, default_new_tokens=16, max_batch_size=1, max_queue=1, timeout_s=0.6
    )
    for base in _serve(create_app(ckpt, None, limits=lim)):
        body = {"model": "poet", "prompt": "春", "max_tokens": 60, "temperature": 0}
        r = httpx.post(f"{base}/v1/completions", json=body | {"n": 2}, timeout=30)
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        r = httpx.post(f"{base}/v1/completions", json=body, timeout=30)  # 60 × 20 ms > 0.6 s
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        n_timeout = len(sizes)
        assert n_timeout < 40  # it stopped at the deadline, between two tokens
        with httpx.stream("POST", f"{base}/v1/completions", json=body | {"stream": True}) as s:
            next(s.iter_lines())  # the first chunk arrived: now go away
        time.sleep(0.3)
        after = len(sizes)
        time.sleep(0.3)
        assert len(sizes) == after < n_timeout + 25  # no more steps for the gone client
        ok = httpx.post(f"{base}/v1/completions", json=body | {"max_tokens": 3}, timeout=30)
        assert ok.status_code == 200  # the slot is free again
        assert ok.json()["choices"][0]["text"][1:] == "春春"  # (the prefill is not forced)

    gate = threading.Event()
    real = batching.Batcher.__init__

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        gate.wait(10)
        real(self, *args, **kwargs)

    monkeypatch.setattr(batching.Batcher, "__init__", slow_init)
    app = create_app(ckpt, None, limits=lim, background=True)
    for base in _serve(app):
        r = httpx.post(f"{base}/v1/completions", json={"model": "poet", "prompt": "春"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
        assert httpx.get(f"{base}/v1/models").status_code == 503
        gate.set()
        for _ in range(100):
            if httpx.get(f"{base}/v1/models").status_code == 200:
                break
            time.sleep(0.05)
        assert httpx.get(f"{base}/v1/models").json()["data"][0]["id"] == "poet"


def test_many_connections_at_once(url: str) -> None:
    """64 clients at once, queue of 32 sequences: every answer is a 200 or a 429, no 5xx."""
    body = {"model": "poet", "prompt": "春", "max_tokens": 8, "temperature": 0.7}

    def one(i: int) -> int:
        return httpx.post(f"{url}/v1/completions", json=body | {"seed": i}, timeout=60).status_code

    with ThreadPoolExecutor(64) as pool:
        codes = list(pool.map(one, range(64)))
    assert set(codes) <= {200, 429} and codes.count(200) >= 32, codes
