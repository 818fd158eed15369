"""``GET /`` and ``GET /chat``: a chat page in the browser, served by the same app.

The page (``llmbook/serving/static/chat.html``) is one self-contained file, with no
external script, style sheet or font, so it works on a machine without internet.  It
sends the conversation to ``POST /v1/chat/completions`` with ``stream: true`` and
reads the server-sent events with ``fetch`` and a ``ReadableStream`` reader, so the
answer appears token by token.  Temperature and the maximum number of new tokens are
set on the page; "新对话" starts over.  The model's context is short (80 tokens for
``gpt-poetry``): when a conversation no longer fits, the page drops its oldest turns
and sends the request again.

The response carries a Content-Security-Policy that allows the page's own inline
script (by its SHA-256 hash) and requests to this server only: even a bug in the page
cannot load anything from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from importlib.resources import files
from typing import Any

__all__ = ["CHAT_PATHS", "add_chat_routes", "chat_html", "content_security_policy"]

CHAT_PATHS = ("/", "/chat")  #: where the page is served


@lru_cache(maxsize=1)
def chat_html() -> str:
    """The page's HTML, read from the package data."""
    resource = files("llmbook.serving").joinpath("static", "chat.html")
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError as e:  # pragma: no cover - a broken installation
        raise FileNotFoundError(
            "llmbook/serving/static/chat.html is missing from the installed package; "
            "reinstall llmbook (pip install -e '.[serve]')"
        ) from e


def content_security_policy(page: str) -> str:
    """A CSP header for ``page``: its inline scripts (by hash) and this origin, nothing else."""
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    if not scripts:
        raise ValueError("the chat page has no inline <script>; nothing to allow in its CSP")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    return (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def add_chat_routes(app: Any) -> None:
    """Register ``GET /`` and ``GET /chat`` (the page) on the FastAPI ``app``."""
    from fastapi.responses import HTMLResponse

    page = chat_html()
    headers = {
        "Content-Security-Policy": content_security_policy(page),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }

    async def chat() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    for path in CHAT_PATHS:
        app.add_api_route(path, chat, methods=["GET"], include_in_schema=False)
