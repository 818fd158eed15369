"""HTTP API for a trained model: ``python -m llmbook serve --checkpoint DIR [--classifier DIR]``.

Two sets of endpoints share one process and one model:

* **OpenAI-compatible** (:mod:`llmbook.serving.openai_api`): ``GET /v1/models``,
  ``POST /v1/completions``, ``POST /v1/chat/completions``, with streaming; any OpenAI
  client works with ``base_url="http://127.0.0.1:8000/v1"``.  Requests are validated by
  the Pydantic models of :mod:`llmbook.serving.schemas` and decoded together by the
  continuous batcher of :mod:`llmbook.serving.batching`.
* **The book's own** (:mod:`llmbook.serving.legacy_api`): ``GET /health``,
  ``POST /generate``, ``POST /classify`` (needs ``--classifier``).

``GET /`` (also ``/chat``) is a chat page for the browser (:mod:`llmbook.serving.chat_page`),
``GET /docs`` the API reference (an offline page, :mod:`llmbook.serving.docs_page`),
``GET /openapi.json`` its schema.  ``--quantize int8`` serves the model with weight-only
int8 linear layers (:mod:`llmbook.models.quant`).  Every body first passes :class:`~llmbook.serving.guard.BodyGuard`
(size, speed, content type, JSON syntax); errors are described in
:mod:`llmbook.serving.errors`.  The checkpoint paths are fixed when the server starts:
no request can name a file.  The server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch

try:  # the annotations of the endpoints below are resolved from this module's globals
    from fastapi import FastAPI, Request
except ImportError as e:  # pragma: no cover - optional dependency
    raise ImportError(
        "llmbook.serving.server needs FastAPI and uvicorn: pip install 'llmbook[serve]'"
    ) from e

from llmbook.serving.errors import APIError, error_response, validation_error_response
from llmbook.serving.state import QUANTIZE_CHOICES, Served, ServeLimits, load_served

__all__ = ["ServeLimits", "create_app", "main"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def create_app(
    checkpoint_path: str | Path,
    classifier_path: str | Path | None = None,
    *,
    limits: ServeLimits | None = None,
    background: bool = False,
    quantize: str = "none",
) -> Any:
    """Build the FastAPI application; the models are loaded once, from fixed paths.

    With ``background=True`` they load in a thread after the app exists, and requests
    meanwhile get 503 (``code: "model_loading"``); otherwise they are loaded here.
    ``quantize`` is ``"none"`` or ``"int8"`` (see :func:`~llmbook.serving.state.load_served`).
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse
    from starlette.exceptions import HTTPException

    from llmbook.serving.chat_page import add_chat_routes
    from llmbook.serving.docs_page import render_docs
    from llmbook.serving.guard import BodyGuard
    from llmbook.serving.legacy_api import add_legacy_routes
    from llmbook.serving.openai_api import add_openai_routes

    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    lim = limits or ServeLimits()
    holder: dict[str, Any] = {"served": None, "error": None}

    def load() -> None:
        try:
            holder["served"] = load_served(checkpoint_path, classifier_path, lim, quantize)
        except Exception as e:  # reported by every request instead of a hung "loading"
            holder["error"] = f"{type(e).__name__}: {e}"

    def served() -> Served:
        s = holder["served"]
        if s is None:
            msg = holder["error"] or "the model is still loading; retry in a moment"
            raise APIError(503, msg, code="model_loading", headers={"Retry-After": "1"})
        return s

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        if holder["served"] is not None:
            holder["served"].batcher.close()

    app = FastAPI(
        title="llmbook",
        version="2",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        description="The book's model over HTTP: OpenAI-compatible /v1 routes and the "
        "chapter-6 endpoints.",
    )
    app.add_middleware(
        BodyGuard, max_body_bytes=lim.max_body_bytes, body_timeout_s=lim.body_timeout_s
    )

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Any:
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Any:
        return validation_error_response(list(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        if exc.status_code == 404:
            msg = (
                "not found; endpoints are GET / (chat page), GET /docs, GET /health, "
                "POST /generate, POST /classify, /v1/…"
            )
        elif exc.status_code == 405:
            msg = "method not allowed; use GET /health, POST /generate, POST /classify, /v1/…"
        else:
            msg = str(exc.detail)
        return error_response(request.url.path, APIError(exc.status_code, msg))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Any:  # a bug: still JSON
        return error_response(request.url.path, APIError(500, f"internal error: {exc}"))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return HTMLResponse(render_docs(app.openapi()))

    add_chat_routes(app)
    add_legacy_routes(app, served, lim)
    add_openai_routes(app, served, lim)
    app.state.limits = lim
    if background:
        threading.Thread(target=load, name="llmbook-load", daemon=True).start()
    else:
        holder["served"] = load_served(checkpoint_path, classifier_path, lim, quantize)
        app.state.meta = holder["served"].meta
    app.state.holder = holder
    return app


def _base_url(host: str, port: int) -> str:
    """The URL a browser on this machine uses for a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):  # every interface: this machine is one of them
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def startup_warning(host: str) -> str:
    """What ``serve`` prints (to stderr) before it binds an address other than loopback."""
    return (
        f"警告：服务器将绑定 {host}，而不是 127.0.0.1：同一网络里的其他机器也能访问它，"
        "而它没有任何身份验证，谁都可以用它生成文字、占满它的 CPU。只在本机使用时请去掉 "
        f"--host。\nwarning: binding {host}, not 127.0.0.1: other machines can reach this "
        "server, and it has no authentication"
    )


def startup_banner(
    checkpoint: str, classifier: str | None, host: str, port: int, quantize: str
) -> str:
    """The lines ``serve`` prints once the model is loaded: what it serves, and where."""
    base = _base_url(host, port)
    weights = "int8 权重（--quantize int8）" if quantize == "int8" else "float32 权重"
    return "\n".join(
        [
            f"模型：{checkpoint}（{weights}）；分类器：{classifier or '无'}",
            f"  对话页面：      {base}/",
            f"  API 文档：      {base}/docs",
            f"  OpenAI 兼容接口：{base}/v1   （base_url，api_key 随便填）",
            "按 Ctrl+C 停止。",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmbook serve``: load the checkpoint(s) and run uvicorn."""
    p = argparse.ArgumentParser(prog="python -m llmbook serve", description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint",
        default=None,
        help="GPT checkpoint directory (default: data/checkpoints/gpt-modern)",
    )
    p.add_argument(
        "--classifier",
        default=None,
        help="classifier directory for /classify (default: data/checkpoints/sentiment-gpt if present)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default="none",
        help="int8: serve with weight-only int8 linear layers (about 1/4 of the weight memory)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--max-new-tokens", type=int, default=ServeLimits.max_new_tokens)
    p.add_argument(
        "--timeout", type=float, default=ServeLimits.timeout_s, help="seconds per request"
    )
    p.add_argument("--max-body-bytes", type=int, default=ServeLimits.max_body_bytes)
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=ServeLimits.max_batch_size,
        help="sequences decoded together (1: one request at a time)",
    )
    p.add_argument(
        "--max-queue", type=int, default=ServeLimits.max_queue, help="waiting sequences; 429 beyond"
    )
    args = p.parse_args(list(argv) if argv is not None else None)
    from llmbook.data.registry import DataFileError, shipped_checkpoint

    ckpt = args.checkpoint or str(shipped_checkpoint("gpt-modern"))
    clf_dir = args.classifier
    if clf_dir is None:
        try:
            clf_dir = str(shipped_checkpoint("sentiment-gpt"))
        except (FileNotFoundError, DataFileError):
            clf_dir = None  # no shipped classifier: serve /generate only
    try:
        limits = ServeLimits(
            max_new_tokens=args.max_new_tokens,
            default_new_tokens=min(ServeLimits.default_new_tokens, args.max_new_tokens),
            timeout_s=args.timeout,
            max_body_bytes=args.max_body_bytes,
            max_batch_size=args.max_batch_size,
            max_queue=args.max_queue,
        )
    except ValueError as e:
        p.error(str(e))
    if args.host not in LOCAL_HOSTS:
        print(startup_warning(args.host), file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    import uvicorn

    app = create_app(ckpt, clf_dir, limits=limits, quantize=args.quantize)
    print(startup_banner(ckpt, clf_dir, args.host, args.port, args.quantize), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
