"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

Any OpenAI client can talk to the server (``OpenAI(base_url="http://127.0.0.1:8000/v1",
api_key="none")``).  Supported: ``max_tokens`` (``max_completion_tokens`` for chat),
``temperature`` (0: greedy), ``top_p``, ``stop`` (up to 4 strings), ``n``, ``seed``
(the same seeded request gives the same text, whatever else the server is doing),
``stream`` (server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``;
``stream_options.include_usage`` adds a last chunk with the counts) and ``usage``.
Token counts are the model's tokens (characters for the book's character tokenizer),
not counting the ``<bos>`` the model sees first.

**Chat** uses the package's :class:`llmbook.text.chat.ChatTemplate` (the post-training
format ``问…答…``): a system message is put first as it is, every user message becomes
``template.render(content)``, every earlier assistant message its content followed by
``template.end``, and the answer stops at ``template.end``.  The last message must come
from the user.

**Context**: a prompt must leave room for at least one new token in the model's context
(else 400, ``code: "context_length_exceeded"``); generation stops with
``finish_reason: "length"`` when the context is full.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from llmbook.serving.batching import (
    EngineClosed,
    Event,
    QueueFull,
    SamplingParams,
    Sequence,
    choice_seed,
)
from llmbook.serving.errors import APIError, error_body
from llmbook.serving.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from llmbook.serving.state import Served, ServeLimits
from llmbook.text.chat import CHAT, ChatTemplate

__all__ = ["add_openai_routes", "render_chat"]


def render_chat(messages: list[ChatMessage], template: ChatTemplate = CHAT) -> str:
    """The prompt for ``messages`` (see the module docstring)."""
    if messages[-1].role != "user":
        where = f"messages[{len(messages) - 1}].role"
        raise APIError(
            422,
            f"{where}: the last message must have role 'user', not {messages[-1].role!r}",
            param=where,
            code="invalid_value",
        )
    parts = []
    for m in messages:
        if m.role == "system":
            parts.append(m.content)
        elif m.role == "user":
            parts.append(template.render(m.content))
        else:
            parts.append(m.content + template.end)
    return "".join(parts)


class _Job:
    """One request's sequences, seen from the event loop."""

    def __init__(self, served: Served, prompts: list[list[int]], params: list[SamplingParams],
                 deadline: float) -> None:  # fmt: skip
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.deadline = deadline

        def emitter(i: int) -> Callable[[Event], None]:
            def emit(event: Event) -> None:
                try:
                    loop.call_soon_threadsafe(self.queue.put_nowait, (i, event))
                except RuntimeError:  # the event loop has closed: nobody is listening
                    pass

            return emit

        self.seqs = [
            Sequence(ids, p, deadline, emitter(i))
            for i, (ids, p) in enumerate(zip(prompts, params))
        ]
        try:
            served.batcher.submit(self.seqs)
        except QueueFull:
            raise APIError(
                429, "too many requests are waiting; retry in a moment", code="queue_full",
                headers={"Retry-After": "1"},
            ) from None  # fmt: skip
        except EngineClosed:
            raise APIError(503, "the server is shutting down", code="unavailable") from None

    def cancel(self) -> None:
        for seq in self.seqs:
            seq.cancelled = True

    async def events(self, request: Request | None = None) -> AsyncIterator[tuple[int, Event]]:
        """Every sequence's events until each is done; 504 past the deadline."""
        left = len(self.seqs)
        while left:
            wait = self.deadline + 1.0 - time.monotonic()  # the worker reports it first
            if wait <= 0:
                raise APIError(504, "the request passed its time limit", code="timeout")
            try:
                i, event = await asyncio.wait_for(self.queue.get(), min(wait, 0.5))
            except TimeoutError:
                if request is not None and await request.is_disconnected():
                    self.cancel()
                    return
                continue
            if event.kind == "error":
                status = 504 if event.finish_reason == "timeout" else 503
                raise APIError(status, event.text, code=event.finish_reason)
            if event.kind == "done":
                left -= 1
            yield i, event


def add_openai_routes(app: FastAPI, served: Callable[[], Served], limits: ServeLimits) -> None:
    """Register the ``/v1`` routes on ``app``; ``served()`` returns the loaded models (or 503)."""

    def model_ok(s: Served, name: str) -> None:
        if name != s.model_id:
            raise APIError(
                404,
                f"the model {name!r} does not exist; this server has {s.model_id!r} "
                "(see GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    def encode(s: Served, text: str, param: str) -> list[int]:
        ids = [s.tokenizer.bos_id, *s.tokenizer.encode(text)]
        if len(ids) >= s.block_size:
            raise APIError(
                400,
                f"{param} has {len(ids) - 1} tokens; this model's context is {s.block_size} "
                f"tokens, so a prompt may have at most {s.block_size - 2}",
                param=param,
                code="context_length_exceeded",
            )
        return ids

    def sampling(s: Served, body: Any, max_tokens: int | None, default: int,
                 extra_stop: tuple[str, ...] = ()) -> list[SamplingParams]:  # fmt: skip
        n = max_tokens if max_tokens is not None else default
        if n > limits.max_new_tokens:
            raise APIError(
                422, f"max_tokens must be at most {limits.max_new_tokens}, got {n}",
                param="max_tokens", code="invalid_value",
            )  # fmt: skip
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:7])
        stop = tuple(body.stops()) + extra_stop
        return [
            SamplingParams(n, body.temperature, body.top_p, choice_seed(seed, j), stop)
            for j in range(body.n)
        ]

    def start(s: Served, prompts: list[list[int]], params: list[SamplingParams]) -> _Job:
        if len(prompts) * len(params) > limits.max_choices:
            raise APIError(
                422, f"prompts × n must be at most {limits.max_choices}, got "
                f"{len(prompts)} × {len(params)}", param="n", code="invalid_value",
            )  # fmt: skip
        rows = [ids for ids in prompts for _ in params]
        return _Job(s, rows, [p for _ in prompts for p in params],
                    time.monotonic() + limits.timeout_s)  # fmt: skip

    @app.get("/v1/models", summary="The model this server answers with")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(served())]}

    @app.get("/v1/models/{model}", summary="One model, by id")
    async def get_model(model: str) -> dict[str, Any]:
        s = served()
        model_ok(s, model)
        return _model_card(s)

    @app.post("/v1/completions", response_model=None, summary="Continue a prompt")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        s = served()
        model_ok(s, body.model)
        texts = body.prompts()
        prompts = [
            encode(s, t, "prompt" if len(texts) == 1 else f"prompt[{i}]")
            for i, t in enumerate(texts)
        ]
        job = start(s, prompts, sampling(s, body, body.max_tokens, min(16, limits.max_new_tokens)))
        heads = [t if body.echo else "" for t in texts for _ in range(body.n)]
        usage0 = sum(len(p) - 1 for p in prompts)
        meta = _meta("cmpl", "text_completion", s.model_id)

        def choice(i: int, text: str, reason: str | None) -> dict[str, Any]:
            return {"index": i, "text": text, "logprobs": None, "finish_reason": reason}

        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(job, meta, usage0, include, choice, heads)
        out, reasons, used = await _collect(job, request)
        return meta | {
            "choices": [choice(i, heads[i] + out[i], reasons[i]) for i in range(len(out))],
            "usage": _usage(usage0, used),
        }

    @app.post("/v1/chat/completions", response_model=None, summary="Answer a conversation")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        s = served()
        model_ok(s, body.model)
        if body.max_tokens is not None and body.max_completion_tokens is not None:
            raise APIError(
                422, "send max_tokens or max_completion_tokens, not both",
                param="max_completion_tokens", code="invalid_value",
            )  # fmt: skip
        prompt = encode(s, render_chat(body.messages), "messages")
        wanted = body.max_completion_tokens or body.max_tokens
        params = sampling(s, body, wanted, limits.default_new_tokens, (CHAT.end,))
        job = start(s, [prompt], params)
        meta = _meta("chatcmpl", "chat.completion", s.model_id)

        def message(i: int, text: str, reason: str | None) -> dict[str, Any]:
            msg = {"role": "assistant", "content": text}
            return {"index": i, "message": msg, "logprobs": None, "finish_reason": reason}

        def delta(i: int, text: str, reason: str | None) -> dict[str, Any]:
            d = {"content": text} if reason is None else {}
            return {"index": i, "delta": d, "logprobs": None, "finish_reason": reason}

        if body.stream:
            include = bool(body.stream_options and body.stream_options.include_usage)
            chunk = meta | {"object": "chat.completion.chunk"}
            return _sse(job, chunk, len(prompt) - 1, include, delta, None)
        out, reasons, used = await _collect(job, request)
        return meta | {
            "choices": [message(i, out[i], reasons[i]) for i in range(len(out))],
            "usage": _usage(len(prompt) - 1, used),
        }


def _model_card(s: Served) -> dict[str, Any]:
    return {"id": s.model_id, "object": "model", "created": 0, "owned_by": "llmbook"}


def _meta(prefix: str, kind: str, model: str) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _collect(job: _Job, request: Request) -> tuple[list[str], list[str | None], int]:
    out = [""] * len(job.seqs)
    reasons: list[str | None] = [None] * len(job.seqs)
    used = 0
    try:
        async for i, event in job.events(request):
            out[i] += event.text
            if event.kind == "done":
                reasons[i] = event.finish_reason
                used += event.tokens
    finally:
        job.cancel()  # a no-op for finished sequences; frees the others on any error
    return out, reasons, used


def _sse(
    job: _Job,
    meta: dict[str, Any],
    prompt_tokens: int,
    include_usage: bool,
    choice: Callable[[int, str, str | None], dict[str, Any]],
    heads: list[str] | None,
) -> StreamingResponse:
    """Server-sent events: one chunk per piece of text, a last chunk per choice, [DONE]."""
    base = meta | ({"object": "text_completion"} if heads is not None else {})

    def data(obj: Any) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    async def chunks() -> AsyncIterator[str]:
        used = 0
        try:
            for i in range(len(job.seqs)):  # chat: the role first; completions: any echo
                if heads is None:
                    first = {"index": i, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}  # fmt: skip
                    yield data(base | {"choices": [first]})
                elif heads[i]:
                    yield data(base | {"choices": [choice(i, heads[i], None)]})
            async for i, event in job.events():
                if event.kind == "done":
                    used += event.tokens
                    yield data(base | {"choices": [choice(i, "", event.finish_reason)]})
                elif event.text:
                    yield data(base | {"choices": [choice(i, event.text, None)]})
            if include_usage:
                yield data(base | {"choices": [], "usage": _usage(prompt_tokens, used)})
        except APIError as err:  # the status line is gone: report it in the stream
            yield data(error_body(err.status, err.message, err.param, err.code))
        finally:
            job.cancel()  # a client that went away frees its slots at the next step
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")
