"""Error answers of the server, in OpenAI's shape for ``/v1`` and the old shape elsewhere.

``/v1`` routes answer ``{"error": {"message", "type", "param", "code"}}`` like the OpenAI
API, so that its clients raise their usual exceptions (``BadRequestError``,
``RateLimitError`` …); the book's original endpoints keep ``{"error": "message"}``.
Status codes: 400 malformed JSON or a prompt longer than the context, 404 unknown model
or route, 408 a body that arrives too slowly, 413 a body over the size limit, 415 not
JSON, 422 a field that fails validation, 429 the queue is full, 503 the model is still
loading (or the server is shutting down), 504 the request passed its time limit.
"""

from __future__ import annotations

from typing import Any

__all__ = ["APIError", "error_body", "error_response", "validation_error_response"]

_TYPES = {
    429: "rate_limit_error",
    503: "server_error",
    504: "timeout_error",
    500: "server_error",
}


class APIError(Exception):
    """A request the server refuses; the handler turns it into a JSON error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error object for ``status``."""
    kind = _TYPES.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(path: str, err: APIError) -> Any:
    """``err`` as a JSON response: OpenAI's shape under ``/v1``, the old one elsewhere."""
    from fastapi.responses import JSONResponse

    if path == "/v1" or path.startswith("/v1/"):
        body = error_body(err.status, err.message, err.param, err.code)
    else:
        body = {"error": err.message}
    return JSONResponse(body, status_code=err.status, headers=err.headers)


def _param(loc: tuple[Any, ...]) -> str | None:
    """``("body", "messages", 0, "content")`` -> ``"messages[0].content"``.

    The names Pydantic gives to members of a union (``str``, ``list[str]``,
    ``function-after[…]``) are dropped: they are not fields the client sent.
    """
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "int", "float", "bool") or "[" in str(part) or "-" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or None


def validation_error_response(errors: list[dict[str, Any]]) -> Any:
    """One 422 answer for a request that failed Pydantic validation, naming the field."""
    from fastapi.responses import JSONResponse

    if not errors:
        return JSONResponse(error_body(422, "invalid request"), status_code=422)
    # a union (``stop``: a string or a list) reports every branch: name the deepest field
    top = tuple(errors[0].get("loc", ()))[:2]
    same = [e for e in errors if tuple(e.get("loc", ()))[:2] == top]
    first = max(same, key=lambda e: len(_param(tuple(e.get("loc", ()))) or ""))
    param = _param(tuple(first.get("loc", ())))
    message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return JSONResponse(error_body(422, message, param, "invalid_value"), status_code=422)
