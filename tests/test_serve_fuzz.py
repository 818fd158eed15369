"""Abuse of the OpenAI-compatible routes: fuzzed bodies never give a 5xx, and every
rejection is an OpenAI-shaped error that names the field (in-process, no socket)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import tiny_gpt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbook.serving.server import ServeLimits, create_app
from llmbook.training.checkpoint import save_checkpoint

LIMITS = ServeLimits(max_body_bytes=4096, max_new_tokens=12, default_new_tokens=6, timeout_s=20)
HDR = {"Content-Type": "application/json"}
OK = {200, 400, 404, 413, 415, 422, 429}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    gpt, tok = tiny_gpt(texts=["春风又绿江南岸，明月何时照我还。\n"], block_size=32)
    path = tmp_path_factory.mktemp("fuzz") / "poet"
    save_checkpoint(path, gpt, tok, None, {})
    with TestClient(create_app(path, None, limits=LIMITS), raise_server_exceptions=False) as c:
        yield c


SEEN: list[int] = []


def _check(r: Any) -> None:
    SEEN.append(r.status_code)
    assert r.status_code in OK, (r.status_code, r.text[:400])
    if r.headers["content-type"].startswith("text/event-stream"):
        assert r.text.rstrip().endswith("data: [DONE]")
        return
    body = r.json()
    if r.status_code == 200:
        for choice in body["choices"]:
            text = choice["text"] if "text" in choice else choice["message"]["content"]
            assert len(text) <= LIMITS.max_new_tokens + 200  # echo adds the prompt
        return
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if r.status_code == 422 and err["param"] is not None:  # the field, in the message too
        assert err["param"].split("[")[0].split(".")[0] in err["message"]


JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
INTERESTING = st.sampled_from(
    [0, 1, -1, 2, 2**63, -(2**63), 1e-300, 1e300, 5e-324, 0.5, 2.0000001, "", "poet", "春风",
     "\ud800", "春\udfff风", "\x00", "\x1b[2J", "a" * 40, ["春", "风"], [], [""], ["\n"] * 5,
     [{"role": "user", "content": "春"}], [{"role": "assistant", "content": "x"}],
     {"include_usage": True}, True, False, None]
)  # fmt: skip
FIELDS = st.sampled_from(
    ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature",
     "top_p", "n", "stop", "seed", "stream", "stream_options", "echo", "user", "logprobs"]
)  # fmt: skip
FUZZ = settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(
    path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]),
    fields=st.dictionaries(FIELDS, INTERESTING | JSON_VALUE, max_size=6),
    base=st.booleans(),
)
def test_fuzzed_requests_never_crash(client: Any, path: str, fields: dict, base: bool) -> None:
    body: dict[str, Any] = {}
    if base:  # a valid request, then the fuzzed fields over it
        body = {"model": "poet"} | (
            {"messages": [{"role": "user", "content": "春"}]}
            if "chat" in path
            else {"prompt": "春"}
        )
    body |= fields
    SEEN.append(0)
    raw = json.dumps(body, allow_nan=True)  # NaN/Infinity as Python's json writes them
    _check(client.post(path, content=raw.encode(), headers=HDR))


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_raw_bodies_never_crash(client: Any, raw: bytes) -> None:
    for path in ("/v1/completions", "/v1/chat/completions"):
        _check(client.post(path, content=raw, headers=HDR))


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        ('{"model": "poet", "prompt": ' + "[" * 1000 + "]" * 1000 + "}", 400, None),
        ("[" * 3000 + "]" * 3000, 413, None),
        ('{"model": "poet", "prompt": "春", "temperature": NaN}', 422, "temperature"),
        ('{"model": "poet", "prompt": "春", "top_p": Infinity}', 422, "top_p"),
        ('{"model": "poet", "prompt": "春", "temperature": 1e999}', 422, "temperature"),
        ('{"model": "poet", "prompt": "春", "seed": 1180591620717411303424}', 422, "seed"),
        ('{"model": "poet", "prompt": "\\ud800"}', 422, "prompt"),
        ('{"model": "poet", "prompt": ["a", "\\u0000"]}', 422, "prompt[1]"),
        ('{"model": "poet", "prompt": "a", "max_tokens": 1e3}', 422, "max_tokens"),
        ('{"model": "poet", "prompt": "a", "n": 3, "max_tokens": -1}', 422, "max_tokens"),
        ('{"model": "poet", "prompt": "a", "stream": "yes"}', 422, "stream"),
        ('{"model": "poet", "prompt": "' + "春" * 40 + '"}', 400, "prompt"),
        ('{"model": "poet", "messages": [{"role": "user"}]}', 422, "messages[0].content"),
        ('{"model": "poet", "messages": [{"role": "user", "content": "a", "x": 1}]}', 422,
         "messages[0].x"),
    ],
)  # fmt: skip
def test_hostile_bodies_are_named_client_errors(
    client: Any, raw: str, status: int, param: str | None
) -> None:
    path = "/v1/chat/completions" if "messages" in raw else "/v1/completions"
    r = client.post(path, content=raw.encode(), headers=HDR)
    assert r.status_code == status, r.text[:300]
    assert r.json()["error"]["param"] == param
    _check(r)


def test_size_and_content_type_limits(client: Any) -> None:
    r = client.post("/v1/completions", content=b"{}", headers=HDR | {"Content-Length": "10**9"})
    assert r.status_code in (400, 413)
    big = {"Content-Length": "999999999999"}
    r = client.post("/v1/completions", content=b"{}", headers=HDR | big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = client.post(
        "/v1/completions", content=b"model=poet", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "not_json"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b" " * 500

    r = client.post("/v1/completions", content=chunks(), headers=HDR)
    assert r.status_code == 413
    r = client.get("/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["message"]


def test_streams_always_end_with_done(client: Any) -> None:
    for extra in ({}, {"stop": ["风", "月"]}, {"n": 3, "stream_options": {"include_usage": True}}):
        body = {"model": "poet", "prompt": "春", "max_tokens": 10, "stream": True} | extra
        with client.stream("POST", "/v1/completions", json=body) as r:
            text = "".join(r.iter_text())
        assert r.status_code == 200 and text.endswith("data: [DONE]\n\n")
        for line in text.split("\n\n")[:-2]:
            chunk = json.loads(line.removeprefix("data: "))
            assert chunk["object"] == "text_completion"
            if extra.get("stop"):
                assert all(
                    "风" not in c["text"] and "月" not in c["text"] for c in chunk["choices"]
                )


def test_zz_debug() -> None:
    from collections import Counter

    print(Counter(SEEN))
