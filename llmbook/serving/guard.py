"""The first thing every request meets: limits on the body, checked before any parsing.

:class:`BodyGuard` is plain ASGI middleware (so that streamed answers and client
disconnects pass through untouched).  For a POST it rejects, in this order: a declared
``Content-Length`` over the limit (413, before reading anything), a body that arrives
more slowly than ``body_timeout_s`` per chunk (408), a body that grows over the limit
while it is read (413: a chunked upload has no ``Content-Length``), a content type other
than JSON (415), and bytes that are not JSON or nest deeper than Python's parser allows
(400).  The parsed object is left in ``request.state.body``; the body is then handed on
unchanged, so that FastAPI validates it against the route's Pydantic model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llmbook.serving.errors import APIError, error_response

__all__ = ["BodyGuard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyGuard:
    def __init__(self, app: Any, *, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
            parsed = _parse(scope, body)
        except APIError as err:
            await error_response(scope["path"], err)(scope, receive, send)
            return
        if body is None:  # the client went away while sending
            return
        scope.setdefault("state", {})["body"] = parsed
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        limit = self.max_body_bytes
        too_big = APIError(413, f"request body larger than {limit} bytes", code="body_too_large")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise too_big
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                raise APIError(
                    408,
                    f"the request body arrived too slowly (no data for {self.body_timeout_s:g} s)",
                    code="body_timeout",
                ) from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _parse(scope: Scope, body: bytes | None) -> Any:
    if body is None:
        return None
    headers = dict(scope.get("headers") or [])
    ctype = headers.get(b"content-type", b"").decode("latin-1")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise APIError(
            415, "send the request body as JSON (Content-Type: application/json)", code="not_json"
        )
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise APIError(400, f"malformed JSON: {e}", code="malformed_json") from None
    except RecursionError:  # "[[[[…" within the size limit (found by test_security)
        raise APIError(400, "malformed JSON: nested too deeply", code="malformed_json") from None
    if not isinstance(parsed, dict):
        raise APIError(
            422, 'the JSON body must be an object like {"prompt": "…"}', code="invalid_value"
        )
    return parsed
