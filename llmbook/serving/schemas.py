"""Pydantic models of the OpenAI-compatible requests (``/v1/completions``, ``/v1/chat/completions``).

Every model forbids unknown fields (a request cannot name a file or switch on anything
the server does not offer) and is *strict*: ``"5"`` is not a number and ``true`` is not
an int.  Numbers are bounded and finite (``NaN`` and ``Infinity`` are rejected); strings
are bounded in length and may not hold lone UTF-16 surrogates or control characters other
than tab and newline.  Bounds that depend on the server (the largest ``max_tokens``, the
model's context) are checked by the routes, with the same error shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "SamplingFields",
    "StreamOptions",
]

#: Longest string field the schema accepts (the body-size limit is usually tighter).
MAX_TEXT = 16_384
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _clean(value: str) -> str:
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        ch = bad.group()
        what = "a lone UTF-16 surrogate" if "\ud800" <= ch <= "\udfff" else "a control character"
        raise ValueError(
            f"contains {what} (U+{ord(ch):04X}) at position {bad.start()}; send valid text"
        )
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_clean)]
StopText = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_clean)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    include_usage: bool = False  #: a last chunk with the ``usage`` counts


class SamplingFields(_Strict):
    """The fields both endpoints share (OpenAI's names and defaults)."""

    model: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
    max_tokens: int | None = Field(None, ge=1, le=100_000)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=16)
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Annotated[str, Field(max_length=256), AfterValidator(_clean)] | None = None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: continue ``prompt`` (a string, or up to 8 of them)."""

    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=8)]
    echo: bool = False  #: put the prompt in front of each completion

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: Text


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``: answer the last user message of ``messages``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    #: the newer name of ``max_tokens`` for chat (either may be sent, not both)
    max_completion_tokens: int | None = Field(None, ge=1, le=100_000)
