"""Security: no checkpoint loader unpickles, and the HTTP server survives hostile requests.

* A crafted pickle whose ``__reduce__`` would create a marker file is put where every
  loader of llmbook reads (weights, trainer state, tokenizer, classifier head, token ids,
  a bare ``.pt`` path), with the checksums updated so that only the format can stop it.
  Every loader must refuse it with a clear error and the marker must never appear.  The
  payload is first shown to be live (``pickle.loads`` does create the marker), so the test
  would notice a loader that unpickles.
* A ``config.json`` that names a class outside llmbook, or something in an llmbook module
  that is not an llmbook class, is refused.
* The server (:mod:`llmbook.serving.server`): fuzzed JSON and raw bodies never cause a 5xx;
  nesting bombs, oversized bodies and lone surrogates get 4xx; no request can name a file
  or reach one through the URL; generation length and time per request are bounded.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_gpt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbook.data.lmdata import load_ids
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_tokenizer,
    load_trainer_state,
    save_checkpoint,
)

TEXT = "春风又绿江南岸，明月何时照我还。\n"


class Payload:
    """Unpickling this object opens (creates) ``marker`` for writing."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a loader unpickled the payload"


def raw_pickle(marker: Path) -> bytes:
    data = pickle.dumps({"weight": Payload(marker)})
    pickle.loads(data).get("weight").close()  # the payload is live …
    assert marker.exists()
    marker.unlink()  # … and the marker is gone again before the loader runs
    return data


def torch_pickle(marker: Path, path: Path) -> None:
    """Write a ``torch.save`` zip archive holding the payload to ``path``."""
    pt = path.with_name(path.name + ".pt")  # torch.load reads *.safetensors as safetensors
    torch.save({"weight": torch.zeros(2), "evil": Payload(marker)}, pt)
    torch.load(pt, weights_only=False)["evil"].close()
    assert marker.exists()
    marker.unlink()
    pt.replace(path)


def rehash(ckpt: Path) -> None:
    """Update checkpoint.json so that checksum verification passes: the attacker controls
    the whole directory, so only the file format may stop the payload."""
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    manifest["files"] = {
        name: hashlib.sha256((ckpt / name).read_bytes()).hexdigest() for name in manifest["files"]
    }
    (ckpt / "checkpoint.json").write_text(json.dumps(manifest))


def tiny_checkpoint(path: Path, **kw: Any) -> Path:
    model, tok = tiny_gpt(texts=[TEXT], block_size=32)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.tensor([tok.encode("春风又绿")])
    model(x, x)[1].backward()  # type: ignore[union-attr]
    opt.step()
    state = {"optimizer": opt.state_dict(), "tensors": {"rng": torch.get_rng_state()}, "json": {}}
    return save_checkpoint(path, model, tok, {"lr": 1.0}, {"steps": 1}, state, **kw)


REFUSED = (CheckpointError, ValueError)


@pytest.mark.parametrize("kind", ["raw", "torch"])
@pytest.mark.parametrize("target", ["model.safetensors", "trainer_state.safetensors"])
def test_pickled_weights_are_refused(tmp_path: Path, marker: Path, kind: str, target: str) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ck")
    if kind == "raw":
        (ckpt / target).write_bytes(raw_pickle(marker))
    else:
        torch_pickle(marker, ckpt / target)
    rehash(ckpt)
    loaders: list[Any] = [load_trainer_state]
    if target == "model.safetensors":
        loaders += [load_checkpoint, lambda p: load_checkpoint(p, verify=False)]
    for load in loaders:
        with pytest.raises(CheckpointError, match=f"{target} is not a valid safetensors file"):
            load(ckpt)


def test_pickled_tokenizer_is_refused(tmp_path: Path, marker: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ck")
    (ckpt / "tokenizer.json").write_bytes(raw_pickle(marker))
    rehash(ckpt)
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_tokenizer(ckpt / "tokenizer.json")
    from llmbook.text import tokenizers

    for name in ("CharTokenizer", "WordTokenizer", "BPETokenizer"):
        cls = getattr(tokenizers, name, None)
        if cls is not None:
            with pytest.raises(Exception):  # noqa: B017 - any refusal; the marker is the test
                cls.load(ckpt / "tokenizer.json")


def test_bare_pickle_path_is_not_a_checkpoint(tmp_path: Path, marker: Path) -> None:
    pt = tmp_path / "model.pt"
    torch_pickle(marker, pt)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(pt)
    (tmp_path / "model.safetensors").write_bytes(raw_pickle(marker))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "model.safetensors")


def test_pickled_classifier_weights_are_refused(tmp_path: Path, marker: Path) -> None:
    """A classifier's head lives in its model.safetensors: a pickle there is refused."""
    from llmbook.models.classifier import GPTClassifier
    from llmbook.training.checkpoint import load_classifier, save_classifier

    gpt, tok = tiny_gpt(texts=[TEXT], block_size=32)
    clf = GPTClassifier.from_gpt(gpt, ["负面", "正面"], max_len=16)
    path = save_classifier(tmp_path / "clf", clf, tok)
    (path / "model.safetensors").write_bytes(raw_pickle(marker))
    rehash(path)
    with pytest.raises(CheckpointError, match="model.safetensors is not a valid safetensors"):
        load_classifier(path)


def test_pickled_token_ids_are_refused(tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "ids.npy"
    np.save(path, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a valid token-id file"):
        load_ids(path)
    with pytest.raises(ValueError, match="not a valid token-id file"):
        load_ids(path, mmap=False)


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("model_class", "builtins.eval"),
        ("model_class", "os.system"),
        ("model_class", "subprocess.Popen"),
        ("config_class", "pickle.loads"),
        ("model_class", "llmbookevil.Model"),
        # reachable through llmbook modules, but not llmbook classes
        ("model_class", "llmbook.training.checkpoint.shutil"),
        ("model_class", "llmbook.training.checkpoint.save_checkpoint"),
        ("config_class", "llmbook.training.checkpoint.Path"),
        ("model_class", "llmbook.models.gpt.GPTConfig"),
        ("config_class", "llmbook.models.gpt.GPT"),
    ],
)
def test_config_naming_foreign_code_is_refused(tmp_path: Path, field: str, name: str) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ck")
    cfg = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    cfg[field] = name
    (ckpt / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    rehash(ckpt)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(ckpt)


@pytest.mark.parametrize(
    "name", ["os.system", "llmbook.training.checkpoint.torch", "llmbook.data.lmdata.np"]
)
def test_tokenizer_naming_foreign_code_is_refused(tmp_path: Path, name: str) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ck")
    data = json.loads((ckpt / "tokenizer.json").read_text(encoding="utf-8"))
    data["class"] = name
    (ckpt / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    rehash(ckpt)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_checkpoint(ckpt)


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def serve_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("serve") / "gpt")


@pytest.fixture(scope="module")
def limits() -> Any:
    serve = pytest.importorskip("llmbook.serving.server")
    return serve.ServeLimits(
        max_body_bytes=2048,
        max_prompt_chars=40,
        max_new_tokens=12,
        default_new_tokens=6,
        timeout_s=20,
        max_concurrency=2,
    )


@pytest.fixture(scope="module")
def client(serve_ckpt: Path, limits: Any) -> Iterator[Any]:
    """The app in-process (Starlette's TestClient: no socket at all)."""
    from fastapi.testclient import TestClient

    from llmbook.serving.server import create_app

    with TestClient(
        create_app(serve_ckpt, None, limits=limits), raise_server_exceptions=False
    ) as c:
        yield c


JSON_HDR = {"Content-Type": "application/json"}
SURVIVABLE = {200, 400, 404, 405, 413, 415, 422}


def _check_answer(r: Any, limits: Any) -> None:
    assert r.status_code in SURVIVABLE, (r.status_code, r.text[:500])
    body = r.json()  # always JSON, even for errors
    if r.status_code == 200:
        assert len(body["completion"]) <= limits.max_new_tokens  # one character per token
    else:
        assert isinstance(body["error"], str) and body["error"]


JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    ["prompt", "max_new_tokens", "strategy", "temperature", "top_k", "top_p", "seed", "text"]
)
INTERESTING = st.sampled_from(
    [0, 1, -1, 2**63, 2**64, -(2**63) - 1, 1e-300, 1e300, 5e-324, 0.5, "sample", "greedy",
     "beam", "", "春风", "\ud800", "春\udfff风", "<eos>", "\x00", "a" * 41]
)  # fmt: skip
FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(body=st.dictionaries(FIELDS, INTERESTING | JSON_VALUE, max_size=5))
def test_fuzzed_generate_requests_never_crash_the_server(
    client: Any, limits: Any, body: dict
) -> None:
    raw = json.dumps(body)  # lone surrogates travel as \\udXXX escapes, as a client may send
    r = client.post("/generate", content=raw.encode(), headers=JSON_HDR)
    _check_answer(r, limits)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzzed_raw_bodies_never_crash_the_server(client: Any, limits: Any, raw: bytes) -> None:
    for path in ("/generate", "/classify"):
        _check_answer(client.post(path, content=raw, headers=JSON_HDR), limits)


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 1000 + "]" * 1000,  # within the size limit, but deeper than the parser's recursion
        '{"prompt": ' + "[" * 1020 + "]" * 1020 + "}",
        '{"prompt": "a", "prompt": "b", "seed": 1e999}',
        '{"prompt": "\\ud800\\udc00\\ud800"}',
        '{"prompt": "春", "seed": 1180591620717411303424}',
        '{"prompt": "春", "seed": -1180591620717411303424}',
    ],
)
def test_json_bombs_and_invalid_unicode_are_client_errors(
    client: Any, limits: Any, raw: str
) -> None:
    r = client.post("/generate", content=raw.encode(), headers=JSON_HDR)
    assert 400 <= r.status_code < 500, r.text[:300]
    _check_answer(r, limits)


def test_oversized_requests_are_rejected(client: Any, limits: Any) -> None:
    big = json.dumps({"prompt": "春" * 10_000}).encode()
    r = client.post("/generate", content=big, headers=JSON_HDR)
    assert r.status_code == 413 and str(limits.max_body_bytes) in r.json()["error"]
    r = client.post(
        "/generate", content=b"{}", headers={**JSON_HDR, "Content-Length": "99999999999"}
    )
    assert r.status_code in (400, 413)


@pytest.mark.parametrize("field", ["checkpoint", "path", "file", "classifier", "model", "dir"])
def test_no_request_field_can_name_a_file(client: Any, field: str) -> None:
    r = client.post("/generate", json={"prompt": "春", field: "/etc/passwd"})
    assert r.status_code == 422 and "unknown field" in r.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/generate/..%2f..%2f..%2fetc%2fpasswd",
        "/static/../../etc/passwd",
        "//etc/passwd",
        "/health/../model.safetensors",
        "/docs/../../model.safetensors",
        "/v1/models/..%2f..%2fmodel.safetensors",
    ],
)
def test_urls_never_reach_files(client: Any, url: str) -> None:
    r = client.get(url)
    assert r.status_code in (404, 405), (url, r.status_code)
    assert "root:" not in r.text and "safetensors" not in r.text


def test_only_the_known_endpoints_exist(client: Any) -> None:
    from starlette.routing import Mount

    routes = client.app.routes
    assert not [r for r in routes if isinstance(r, Mount)], "a mounted (static file) route"
    paths = {getattr(r, "path", None) for r in routes}
    assert paths <= {
        "/",
        "/chat",
        "/health",
        "/generate",
        "/classify",
        "/openapi.json",
        "/docs",
    } | {
        "/v1/models",
        "/v1/models/{model}",
        "/v1/completions",
        "/v1/chat/completions",
    }
    docs = client.get("/docs")  # the offline reference: no script or stylesheet from a CDN
    assert docs.status_code == 200 and "/v1/chat/completions" in docs.text
    assert "<script" not in docs.text and "https://" not in docs.text


def test_generation_length_is_bounded(client: Any, limits: Any) -> None:
    r = client.post("/generate", json={"prompt": "春", "max_new_tokens": limits.max_new_tokens + 1})
    assert r.status_code == 422 and "max_new_tokens" in r.json()["error"]
    for n in (None, limits.max_new_tokens):
        body = {"prompt": "春", "seed": 3, "temperature": 5.0}
        if n is not None:
            body["max_new_tokens"] = n
        r = client.post("/generate", json=body)
        assert r.status_code == 200, r.text
        assert len(r.json()["completion"]) <= (n or limits.default_new_tokens)


def test_generation_time_is_bounded(serve_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generation that would take 30 s is answered with 504 after the time limit."""
    from fastapi.testclient import TestClient

    import llmbook.generation.decoding
    from llmbook.serving.server import ServeLimits, create_app

    def slow(*args: Any, **kwargs: Any) -> list[str]:
        time.sleep(30)
        return ["never"]

    monkeypatch.setattr(llmbook.generation.decoding, "generate_text", slow)
    app = create_app(serve_ckpt, None, limits=ServeLimits(timeout_s=0.5))
    with TestClient(app, raise_server_exceptions=False) as c:
        t0 = time.monotonic()
        r = c.post("/generate", json={"prompt": "春"})
        took = time.monotonic() - t0
        assert r.status_code == 504 and "longer than 0.5 s" in r.json()["error"]
        assert took < 5
        assert c.get("/health").status_code == 200  # the server still answers


def test_timed_out_generation_stops_computing(
    serve_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a 504 the worker stops too: no more forward passes, and its slot is free."""
    from fastapi.testclient import TestClient

    import llmbook.generation.decoding as g
    from llmbook.serving.server import ServeLimits, create_app

    calls: list[float] = []
    original = g._Stepper.__call__
    spring = CharTokenizer.fit([TEXT]).encode("春")[0]

    def slow(self: Any, seqs: Any) -> Any:
        calls.append(time.monotonic())
        time.sleep(0.05)  # 200 tokens would take > 10 s
        logits = original(self, seqs)
        forced = torch.full_like(logits, -1e4)
        forced[..., spring] = 0.0  # always 春, never the "\n" that ends a poem
        return forced

    monkeypatch.setattr(g._Stepper, "__call__", slow)
    limits = ServeLimits(timeout_s=0.5, max_concurrency=1)
    app = create_app(serve_ckpt, None, limits=limits)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/generate", json={"prompt": "春", "max_new_tokens": 200, "strategy": "greedy"})
        assert r.status_code == 504 and "longer than 0.5 s" in r.json()["error"]
        n = len(calls)
        assert n < 40
        time.sleep(0.5)
        assert len(calls) <= n + 1  # at most the step that was running when it timed out
        t0 = time.monotonic()
        ok = c.post("/generate", json={"prompt": "春", "max_new_tokens": 2, "seed": 1})
        assert ok.status_code == 200, ok.text  # the single slot was released
        assert time.monotonic() - t0 < 0.5
