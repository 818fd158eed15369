"""HTTP API for a trained model: ``python -m llmbook serve --checkpoint DIR [--classifier DIR]``.

Endpoints (JSON in, JSON out):

* ``GET /health`` — ``{"status": "ok", ...}`` with the model's size and what is loaded.
* ``POST /generate`` — ``{"prompt": "春风", "max_new_tokens": 32, "strategy": "sample",
  "temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 0}`` →
  ``{"text": …, "completion": …}``.
* ``POST /classify`` — ``{"text": "质量很好"}`` → ``{"label": "正面", "label_id": 1,
  "probs": {…}}`` (needs ``--classifier``).

Safety rules, each answered with a JSON error ``{"error": message}`` and a 4xx status:
malformed JSON (400), a body that is not a JSON object or has unknown fields, wrong types,
empty or over-long text, bad parameters such as a negative temperature or ``top_p``
outside (0, 1] (422), a wrong content type (415), a body larger than the limit (413).
``max_new_tokens`` is bounded and each request has a time limit (504 when exceeded);
at most ``max_concurrency`` requests compute at once.  The checkpoint paths are fixed
when the server starts: no request can name a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from llmbook.interfaces import block_size

try:  # the annotations of the endpoints below are resolved from this module's globals
    from fastapi import Request
except ImportError as e:  # pragma: no cover - optional dependency
    raise ImportError(
        "llmbook.serving.server needs FastAPI and uvicorn: pip install 'llmbook[serve]'"
    ) from e

__all__ = ["ServeLimits", "create_app", "main"]


@dataclass(frozen=True)
class ServeLimits:
    """Bounds that keep one request from monopolising the server."""

    max_body_bytes: int = 16_384  #: larger request bodies get 413
    max_prompt_chars: int = 200  #: /generate prompt length
    max_text_chars: int = 2_000  #: /classify text length
    max_new_tokens: int = 200  #: upper bound a request may ask for
    default_new_tokens: int = 64
    timeout_s: float = 20.0  #: per request; 504 after that
    max_concurrency: int = 2  #: requests computing at the same time

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"ServeLimits.{name} must be > 0, got {value!r}")
        if self.default_new_tokens > self.max_new_tokens:
            raise ValueError("ServeLimits.default_new_tokens must be <= max_new_tokens")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    if name not in body or body[name] is None:
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise _BadRequest(422, f"field {name!r} must be {wanted}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _BadRequest(422, f"field {name!r} must be a finite number")
    return value


def _text(body: dict[str, Any], name: str, limit: int, *, allow_empty: bool = False) -> str:
    if name not in body:
        raise _BadRequest(422, f"missing field {name!r}")
    value = body[name]
    if not isinstance(value, str):
        raise _BadRequest(422, f"field {name!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise _BadRequest(422, f"field {name!r} is empty; send some text")
    if len(value) > limit:
        raise _BadRequest(422, f"field {name!r} has {len(value)} characters; the limit is {limit}")
    if any("\ud800" <= ch <= "\udfff" for ch in value):  # JSON "\ud800": not encodable, 500
        raise _BadRequest(
            422, f"field {name!r} contains a lone UTF-16 surrogate; send valid Unicode"
        )
    return value


def _check_keys(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _BadRequest(422, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def create_app(
    checkpoint_path: str | Path,
    classifier_path: str | Path | None = None,
    *,
    limits: ServeLimits | None = None,
) -> Any:
    """Build the FastAPI application; models are loaded here, once, from fixed paths."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from llmbook.generation.decoding import GenerationError, GenerationTimeout, generate_text
    from llmbook.training.checkpoint import load_checkpoint

    lim = limits or ServeLimits()
    model, tokenizer, meta = load_checkpoint(checkpoint_path)
    if tokenizer is None:
        raise ValueError(f"checkpoint {checkpoint_path} has no tokenizer; /generate needs one")
    clf = clf_tok = clf_info = None
    if classifier_path is not None:
        from llmbook.training.checkpoint import load_classifier
        from llmbook.training.finetune import predict

        clf, clf_tok, clf_info = load_classifier(classifier_path)
        if clf_tok is None:
            raise ValueError(f"classifier {classifier_path} has no tokenizer; /classify needs one")
    gate = threading.BoundedSemaphore(lim.max_concurrency)

    app = FastAPI(title="llmbook", version="1", docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > lim.max_body_bytes):
                return error(413, f"request body larger than {lim.max_body_bytes} bytes")
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > lim.max_body_bytes:
                    return error(413, f"request body larger than {lim.max_body_bytes} bytes")
            ctype = request.headers.get("content-type", "")
            if not ctype.split(";")[0].strip().lower() == "application/json":
                return error(415, "send the request body as JSON (Content-Type: application/json)")
            try:
                parsed = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                return error(400, f"malformed JSON: {e}")
            except RecursionError:  # "[[[[…" within the size limit (found by test_security)
                return error(400, "malformed JSON: nested too deeply")
            if not isinstance(parsed, dict):
                return error(422, 'the JSON body must be an object like {"prompt": "…"}')
            request.state.body = parsed
        return await call_next(request)

    async def compute(fn: Callable[[float], Any]) -> Any:
        """Run ``fn(deadline)`` in a worker thread, at most ``max_concurrency`` at a time.

        The deadline goes to the generation loop itself, which stops between two tokens
        once it has passed, so a timed-out request frees its slot and its CPU instead of
        computing on in the background after the client got its 504.
        """
        deadline = time.monotonic() + lim.timeout_s
        too_long = _BadRequest(504, f"the request took longer than {lim.timeout_s:g} s")

        def locked() -> Any:
            # wait for a free slot only as long as the request may still take
            if not gate.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise _BadRequest(503, "the server is busy; retry in a moment")
            try:
                with torch.no_grad():
                    return fn(deadline)
            except GenerationTimeout:
                raise too_long from None
            finally:
                gate.release()

        try:
            # a little grace: the worker itself reports the timeout between two tokens
            return await asyncio.wait_for(run_in_threadpool(locked), timeout=lim.timeout_s + 1.0)
        except TimeoutError:
            raise too_long from None

    @app.exception_handler(_BadRequest)
    async def bad_request(_: Request, exc: _BadRequest) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(404)
    async def not_found(_: Request, __: Exception) -> JSONResponse:
        return error(404, "not found; endpoints are GET /health, POST /generate, POST /classify")

    @app.exception_handler(405)
    async def not_allowed(_: Request, __: Exception) -> JSONResponse:
        return error(405, "method not allowed; use GET /health, POST /generate, POST /classify")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "parameters": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
            "vocab_size": tokenizer.vocab_size,
            "block_size": block_size(model),
            "classifier": None if clf_info is None else clf_info["labels"],
            "limits": asdict(lim),
        }

    @app.post("/generate")
    async def generate(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = request.state.body
        _check_keys(
            body, {"prompt", "max_new_tokens", "strategy", "temperature", "top_k", "top_p", "seed"}
        )
        prompt = _text(body, "prompt", lim.max_prompt_chars, allow_empty=True)
        n = _field(body, "max_new_tokens", int, lim.default_new_tokens)
        if not 1 <= n <= lim.max_new_tokens:
            raise _BadRequest(
                422, f"max_new_tokens must be between 1 and {lim.max_new_tokens}, got {n}"
            )
        strategy = _field(body, "strategy", str, "sample")
        if strategy not in ("sample", "greedy"):
            raise _BadRequest(422, f"strategy must be 'sample' or 'greedy', got {strategy!r}")
        temperature = float(_field(body, "temperature", (int, float), 1.0))
        if not temperature > 0:
            raise _BadRequest(422, f"temperature must be > 0, got {temperature}")
        top_k = _field(body, "top_k", int, None)
        if top_k is not None and top_k < 1:
            raise _BadRequest(422, f"top_k must be >= 1, got {top_k}")
        top_p = _field(body, "top_p", (int, float), None)
        if top_p is not None and not 0 < top_p <= 1:
            raise _BadRequest(422, f"top_p must be in (0, 1], got {top_p}")
        seed = _field(body, "seed", int, 0)
        if not 0 <= seed < 2**63:  # torch.Generator.manual_seed overflows beyond (test_security)
            raise _BadRequest(422, f"seed must be an int in [0, 2**63), got {seed}")
        kwargs: dict[str, Any] = {}
        if strategy == "sample":
            kwargs = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        t0 = time.perf_counter()
        try:
            text = await compute(
                lambda deadline: generate_text(
                    model,
                    tokenizer,
                    prompt,
                    n,
                    strategy=strategy,
                    seed=seed,
                    deadline=deadline,
                    **kwargs,
                )[0]
            )
        except GenerationError as e:
            raise _BadRequest(422, str(e)) from None
        return {
            "text": text,
            "completion": text[len(prompt) :],
            "seconds": round(time.perf_counter() - t0, 4),
        }

    @app.post("/classify")
    async def classify(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = request.state.body
        if clf is None or clf_tok is None or clf_info is None:
            raise _BadRequest(404, "no classifier loaded; start the server with --classifier DIR")
        _check_keys(body, {"text"})
        text = _text(body, "text", lim.max_text_chars)
        labels_, probs = await compute(
            lambda _deadline: predict(clf, clf_tok, [text], max_len=clf_info["max_len"])
        )
        names = clf_info["labels"]
        return {
            "label": names[labels_[0]],
            "label_id": labels_[0],
            "probs": {name: round(float(p), 6) for name, p in zip(names, probs[0])},
        }

    app.state.limits = lim
    app.state.meta = meta
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmbook serve``: load the checkpoint(s) and run uvicorn."""
    p = argparse.ArgumentParser(prog="python -m llmbook serve", description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint",
        default=None,
        help="GPT checkpoint directory for /generate (default: data/checkpoints/gpt-modern)",
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
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--max-new-tokens", type=int, default=ServeLimits.max_new_tokens)
    p.add_argument(
        "--timeout", type=float, default=ServeLimits.timeout_s, help="seconds per request"
    )
    p.add_argument("--max-body-bytes", type=int, default=ServeLimits.max_body_bytes)
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
        )
    except ValueError as e:
        p.error(str(e))
    torch.set_num_threads(args.threads)
    import uvicorn

    app = create_app(ckpt, clf_dir, limits=limits)
    print(f"serving {ckpt} (classifier: {clf_dir}) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
