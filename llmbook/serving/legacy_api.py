"""The book's first endpoints: ``GET /health``, ``POST /generate``, ``POST /classify``.

They answer in their own JSON shape (errors: ``{"error": "message"}``) and are validated
by hand, field by field, as chapter 6 shows; the OpenAI-compatible routes of
:mod:`llmbook.serving.openai_api` use Pydantic models instead.  ``/generate`` runs
:func:`llmbook.generation.decoding.generate_text` in a worker thread, at most
``max_concurrency`` at a time, with the request's deadline checked between tokens.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from fastapi import FastAPI, Request

from llmbook.serving.errors import APIError
from llmbook.serving.state import Served, ServeLimits

__all__ = ["add_legacy_routes"]


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    if name not in body or body[name] is None:
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise APIError(422, f"field {name!r} must be {wanted}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise APIError(422, f"field {name!r} must be a finite number")
    return value


def _text(body: dict[str, Any], name: str, limit: int, *, allow_empty: bool = False) -> str:
    if name not in body:
        raise APIError(422, f"missing field {name!r}")
    value = body[name]
    if not isinstance(value, str):
        raise APIError(422, f"field {name!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise APIError(422, f"field {name!r} is empty; send some text")
    if len(value) > limit:
        raise APIError(422, f"field {name!r} has {len(value)} characters; the limit is {limit}")
    if any("\ud800" <= ch <= "\udfff" for ch in value):  # JSON "\ud800": not encodable, 500
        raise APIError(422, f"field {name!r} contains a lone UTF-16 surrogate; send valid Unicode")
    return value


def _check_keys(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise APIError(422, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def add_legacy_routes(app: FastAPI, served: Callable[[], Served], lim: ServeLimits) -> None:
    """Register ``/health``, ``/generate`` and ``/classify`` on ``app``."""
    from starlette.concurrency import run_in_threadpool

    from llmbook.generation.decoding import GenerationError, GenerationTimeout, generate_text
    from llmbook.models.quant import weight_bytes
    from llmbook.training.finetune import predict

    gate = threading.BoundedSemaphore(lim.max_concurrency)

    async def compute(fn: Callable[[float], Any]) -> Any:
        """Run ``fn(deadline)`` in a worker thread, at most ``max_concurrency`` at a time.

        The deadline goes to the generation loop itself, which stops between two tokens
        once it has passed, so a timed-out request frees its slot and its CPU instead of
        computing on in the background after the client got its 504.
        """
        deadline = time.monotonic() + lim.timeout_s
        too_long = APIError(504, f"the request took longer than {lim.timeout_s:g} s")

        def locked() -> Any:
            # wait for a free slot only as long as the request may still take
            if not gate.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise APIError(503, "the server is busy; retry in a moment")
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

    @app.get("/health", summary="Status, model size and limits")
    async def health() -> dict[str, Any]:
        s = served()
        model = s.model
        return {
            "status": "ok",
            "model": s.model_id,
            "parameters": s.parameters,
            "quantize": s.quantize,
            "weight_bytes": weight_bytes(model),
            "vocab_size": s.tokenizer.vocab_size,
            "block_size": s.block_size,
            "classifier": None if s.classifier_info is None else s.classifier_info["labels"],
            "limits": asdict(lim),
            "batcher": s.batcher.load,
        }

    @app.post("/generate", summary="The book's generation endpoint (chapter 6)")
    async def generate(request: Request) -> dict[str, Any]:
        s = served()
        body: dict[str, Any] = request.state.body
        _check_keys(
            body, {"prompt", "max_new_tokens", "strategy", "temperature", "top_k", "top_p", "seed"}
        )
        prompt = _text(body, "prompt", lim.max_prompt_chars, allow_empty=True)
        n = _field(body, "max_new_tokens", int, lim.default_new_tokens)
        if not 1 <= n <= lim.max_new_tokens:
            raise APIError(
                422, f"max_new_tokens must be between 1 and {lim.max_new_tokens}, got {n}"
            )
        strategy = _field(body, "strategy", str, "sample")
        if strategy not in ("sample", "greedy"):
            raise APIError(422, f"strategy must be 'sample' or 'greedy', got {strategy!r}")
        temperature = float(_field(body, "temperature", (int, float), 1.0))
        if not temperature > 0:
            raise APIError(422, f"temperature must be > 0, got {temperature}")
        top_k = _field(body, "top_k", int, None)
        if top_k is not None and top_k < 1:
            raise APIError(422, f"top_k must be >= 1, got {top_k}")
        top_p = _field(body, "top_p", (int, float), None)
        if top_p is not None and not 0 < top_p <= 1:
            raise APIError(422, f"top_p must be in (0, 1], got {top_p}")
        seed = _field(body, "seed", int, 0)
        if not 0 <= seed < 2**63:  # torch.Generator.manual_seed overflows beyond (test_security)
            raise APIError(422, f"seed must be an int in [0, 2**63), got {seed}")
        kwargs: dict[str, Any] = {}
        if strategy == "sample":
            kwargs = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        t0 = time.perf_counter()
        try:
            text = await compute(
                lambda deadline: generate_text(
                    s.model,
                    s.tokenizer,
                    prompt,
                    n,
                    strategy=strategy,
                    seed=seed,
                    deadline=deadline,
                    **kwargs,
                )[0]
            )
        except GenerationError as e:
            raise APIError(422, str(e)) from None
        return {
            "text": text,
            "completion": text[len(prompt) :],
            "seconds": round(time.perf_counter() - t0, 4),
        }

    @app.post("/classify", summary="The book's sentiment classifier (chapter 6)")
    async def classify(request: Request) -> dict[str, Any]:
        s = served()
        body: dict[str, Any] = request.state.body
        clf, clf_tok, info = s.classifier, s.classifier_tokenizer, s.classifier_info
        if clf is None or clf_tok is None or info is None:
            raise APIError(404, "no classifier loaded; start the server with --classifier DIR")
        _check_keys(body, {"text"})
        text = _text(body, "text", lim.max_text_chars)
        labels_, probs = await compute(
            lambda _deadline: predict(clf, clf_tok, [text], max_len=info["max_len"])
        )
        names = info["labels"]
        return {
            "label": names[labels_[0]],
            "label_id": labels_[0],
            "probs": {name: round(float(p), 6) for name, p in zip(names, probs[0])},
        }
