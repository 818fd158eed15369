"""``GET /docs``: the API reference as one self-contained HTML page, built from the OpenAPI schema.

FastAPI's interactive pages load Swagger UI or ReDoc from a CDN, which an offline
machine cannot reach, and no installed package ships those assets; so the server turns
them off and renders this plain page instead: every route with its summary, and the
JSON schema of each request body.  The machine-readable schema stays at
``/openapi.json`` (for code generators and the interactive viewers run elsewhere).
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["render_docs"]


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        return spec.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], schema)
    return schema


def render_docs(spec: dict[str, Any]) -> str:
    """The HTML page for the OpenAPI document ``spec``."""
    esc = html.escape
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(str(info.get('title', 'API')))} — API</title>",
        "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "pre{background:#f5f5f5;padding:.6rem;overflow:auto;font-size:.85rem}"
        "code.m{font-weight:bold;color:#05a}</style></head><body>",
        f"<h1>{esc(str(info.get('title', 'API')))} {esc(str(info.get('version', '')))}</h1>",
        "<p>Machine-readable schema: <a href='/openapi.json'>/openapi.json</a>. "
        "OpenAI clients use the base URL <code>/v1</code>.</p>",
    ]
    for path, ops in sorted(spec.get("paths", {}).items()):
        for method, op in ops.items():
            parts.append(
                f"<h2><code class='m'>{esc(method.upper())}</code> <code>{esc(path)}</code></h2>"
            )
            if op.get("summary"):
                parts.append(f"<p>{esc(str(op['summary']))}</p>")
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "schema" in content:
                body = _resolve(content["schema"], spec)
                text = json.dumps(body, indent=1, ensure_ascii=False)
                parts.append(
                    f"<details><summary>request body</summary><pre>{esc(text)}</pre></details>"
                )
    parts.append("</body></html>")
    return "\n".join(parts)
