"""The chat page, ``--quantize int8`` and what ``python -m llmbook serve`` prints.

The page is checked as served (no external URL, a CSP that allows only its own script and
this server) and, with the ``browser`` marker, in headless Chromium against a live server
on 127.0.0.1: a prompt typed into the page streams its answer in, piece by piece, and the
text that arrives is the model's greedy answer.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from conftest import tiny_gpt
from test_serve import _serve

from llmbook.generation.decoding import generate
from llmbook.models.quant import Int8Linear, quantize_linear_int8
from llmbook.serving import batching, server
from llmbook.serving.chat_page import CHAT_PATHS, chat_html, content_security_policy
from llmbook.serving.server import ServeLimits, create_app
from llmbook.text.chat import CHAT
from llmbook.training.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["春风又绿江南岸，明月何时照我还。\n", "问春风答明月\n", "abcdefg"]
LIMITS = ServeLimits(max_new_tokens=40, default_new_tokens=16, timeout_s=20)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gpt, tok = tiny_gpt(texts=TEXTS, block_size=64, scale=3.0)
    path = tmp_path_factory.mktemp("chat") / "poet"
    save_checkpoint(path, gpt, tok, None, {"note": "test"})
    return path


@pytest.fixture(scope="module")
def client(ckpt: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(create_app(ckpt, None, limits=LIMITS), raise_server_exceptions=False) as c:
        yield c


# --------------------------------------------------------------------------- the page


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_chat_page_is_served_without_external_urls(client: Any, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert page == chat_html()
    assert '<html lang="zh-CN">' in page and "新对话" in page and "温度" in page
    assert "/v1/chat/completions" in page and "stream: true" in page
    assert "getReader()" in page  # streamed with fetch + ReadableStream, not EventSource
    # nothing loaded from elsewhere: no absolute or protocol-relative URL, no @import
    assert not re.search(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", page, re.I), re.findall(
        r"""(?:https?:)?//[^\s"'<>]+""", page
    )
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
    links = re.findall(r"""\b(?:href|src|action)=["']([^"']*)""", page)
    assert links and all(u.startswith("/") or u == "data:," for u in links), links


def test_chat_page_csp_allows_its_own_script_only(client: Any) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert csp == content_security_policy(chat_html())
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    # a changed script no longer matches the hash: the browser would refuse to run it
    other = chat_html().replace('"use strict";', '"use strict"; alert(1);')
    assert content_security_policy(other) != csp
    with pytest.raises(ValueError, match="no inline <script>"):
        content_security_policy("<html></html>")


def test_unknown_paths_still_answer_json_404(client: Any) -> None:
    r = client.get("/chat.html")
    assert r.status_code == 404 and "GET / (chat page)" in r.json()["error"]
    assert client.post("/", json={}).status_code == 405


# --------------------------------------------------------------------------- --quantize int8


def test_int8_server_answers_with_the_quantized_models_greedy_tokens(ckpt: Path) -> None:
    from fastapi.testclient import TestClient

    model, tok, _ = load_checkpoint(ckpt)
    prompt = [tok.bos_id, *tok.encode("江南")]  # int8 and float32 differ at token 24

    def greedy(m: torch.nn.Module) -> list[int]:
        return generate(m, torch.tensor([prompt]), 24, strategy="greedy")[0, len(prompt) :].tolist()

    want_q, want_f = greedy(quantize_linear_int8(model)), greedy(model)
    assert want_q != want_f and tok.eos_id not in want_q + want_f
    body = {"model": "poet", "prompt": "江南", "max_tokens": 24, "temperature": 0}
    answers = {}
    for quantize in ("int8", "none"):
        app = create_app(ckpt, None, limits=LIMITS, quantize=quantize)
        with TestClient(app) as c:
            served = app.state.holder["served"]
            r = c.post("/v1/completions", json=body)
            assert r.status_code == 200, r.text
            answers[quantize] = (r.json()["choices"][0]["text"], c.get("/health").json())
        linears = [type(m) for m in served.model.modules() if "Linear" in type(m).__name__]
        assert set(linears) == ({Int8Linear} if quantize == "int8" else {torch.nn.Linear})
    (text_q, health_q), (text_f, health_f) = answers["int8"], answers["none"]
    assert text_q == tok.decode(want_q) and text_f == tok.decode(want_f)
    assert health_q["quantize"] == "int8" and health_f["quantize"] == "none"
    assert health_q["parameters"] == health_f["parameters"] == model.num_parameters()
    assert health_f["weight_bytes"] > 2 * health_q["weight_bytes"]  # LayerNorms stay float


def test_quantize_must_be_known(ckpt: Path) -> None:
    with pytest.raises(ValueError, match="quantize must be one of"):
        create_app(ckpt, None, limits=LIMITS, quantize="int4")
    with pytest.raises(SystemExit):
        server.main(["--checkpoint", str(ckpt), "--quantize", "int4"])


# --------------------------------------------------------------------------- startup


def _run_main(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, Any]:
    """``serve.main(argv)`` with uvicorn.run replaced by a recorder."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, host: str, port: int, **_: Any) -> None:
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep the test's thread count
    assert server.main(argv) == 0
    return seen


def test_serve_prints_the_chat_page_and_docs_and_binds_loopback(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _run_main(monkeypatch, ["--checkpoint", str(ckpt), "--port", "8123"])
    out, err = capsys.readouterr()
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert "对话页面：      http://127.0.0.1:8123/\n" in out
    assert "http://127.0.0.1:8123/docs" in out and "http://127.0.0.1:8123/v1" in out
    assert "警告" not in err and "warning" not in err
    seen["app"].state.holder["served"].batcher.close()


def test_serve_int8_and_a_public_address_warns(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--checkpoint", str(ckpt), "--host", "0.0.0.0", "--quantize", "int8"]
    seen = _run_main(monkeypatch, argv)
    out, err = capsys.readouterr()
    assert seen["host"] == "0.0.0.0"
    assert "警告" in err and "0.0.0.0" in err and "没有任何身份验证" in err
    assert "int8" in out and "http://127.0.0.1:8000/" in out  # where a local browser goes
    served = seen["app"].state.holder["served"]
    assert served.quantize == "int8"
    served.batcher.close()


# --------------------------------------------------------------------------- in a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def page() -> Iterator[Any]:
    """A headless Chromium page (Debian's chromium through Playwright)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("LLMBOOK_BROWSER_TESTS"):
            pytest.fail("Debian chromium is not installed: apt-get install chromium")
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def slow_url(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A live server whose decode steps take 40 ms, so that streaming can be watched."""
    step = batching.ragged_decode_step

    def slow_step(*args: Any) -> Any:
        time.sleep(0.04)
        return step(*args)

    monkeypatch.setattr(batching, "ragged_decode_step", slow_step)
    yield from _serve(create_app(ckpt, None, limits=LIMITS))


@pytest.mark.browser
def test_chat_page_streams_an_answer_in_chromium(page: Any, slow_url: str) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(slow_url + "/")
    page.wait_for_selector("body[data-ready='true']", timeout=15_000)
    assert page.text_content("#model") == "poet"
    assert page.get_attribute("#max-tokens", "max") == str(LIMITS.max_new_tokens)
    page.fill("#temperature", "0")  # greedy: the answer can be checked
    page.dispatch_event("#temperature", "input")
    page.fill("#max-tokens", "30")
    page.fill("#input", "春风")
    page.keyboard.press("Enter")
    # streaming: the answer is visible while the page still waits for more
    page.wait_for_function(
        """() => { const m = document.querySelector('.msg.assistant');
                   return m && m.dataset.state === 'streaming'
                          && m.querySelector('.text').textContent.length >= 2; }""",
        timeout=15_000,
    )
    partial = page.text_content(".msg.assistant .text")
    page.wait_for_selector(".msg.assistant[data-state='done']", timeout=30_000)
    final = page.text_content(".msg.assistant .text")
    assert page.text_content(".msg.user .text") == "春风"
    body = {"model": "poet", "messages": [{"role": "user", "content": "春风"}],
            "max_tokens": 30, "temperature": 0}  # fmt: skip
    want = httpx.post(slow_url + "/v1/chat/completions", json=body, timeout=30).json()
    want_text = want["choices"][0]["message"]["content"]
    assert final == want_text and CHAT.end not in final
    assert len(partial) < len(final) and final.startswith(partial)
    # a second turn sends the history; "新对话" clears the conversation
    page.fill("#input", "明月")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelectorAll(\".msg.assistant[data-state='done']\").length == 2",
        timeout=30_000,
    )
    assert page.locator(".msg").count() == 4
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    assert problems == []
    assert all(u.startswith(slow_url) for u in requests), requests
