"""Chat formatting: how an instruction and a response become one string for the model."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChatTemplate", "CHAT"]


@dataclass(frozen=True)
class ChatTemplate:
    """How an instruction and a response become one string.

    ``render(instruction)`` is the prompt the model is conditioned on; the response
    follows it and ends with ``end`` (``"\\n"``, the poem GPT's end-of-text marker).
    """

    user: str = "问"
    assistant: str = "答"
    end: str = "\n"

    def render(self, instruction: str) -> str:
        return f"{self.user}{instruction}{self.assistant}"

    def full(self, instruction: str, response: str) -> str:
        return self.render(instruction) + response + self.end


CHAT = ChatTemplate()
