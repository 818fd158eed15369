"""Chat formatting: how a conversation becomes the token ids a language model reads.

Two templates share one interface (``prompt_ids``, ``answer_ids``, ``end_id``,
``encode_chat``), which SFT, DPO, GRPO and the evaluation code call:

* :class:`ChatTemplate` marks the turns with ordinary characters (``问…答…⏎``): any
  tokenizer can spell it, and a model that never saw it can still read it as text;
* :class:`RoleTemplate` marks them with **role tokens** (``<|system|>``, ``<|user|>``,
  ``<|assistant|>``, ``<|end|>``), extra entries of the vocabulary that no text can
  produce: :func:`add_role_tokens` adds them to a tokenizer and grows the model's
  embedding.  A user who types ``<|assistant|>`` gets seven ordinary characters, so a
  message cannot forge the start of another turn.

``encode_chat`` returns the ids of a whole conversation with a mask that is True at
the tokens the model must learn to produce: every assistant message and the end
marker that closes it.  SFT computes its loss only there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from llmbook.interfaces import Tokenizer
from llmbook.text.tokenizers import ROLE_TOKENS

if TYPE_CHECKING:
    from torch import nn

    from llmbook.text.tokenizers import VocabTokenizer

__all__ = [
    "ROLES",
    "ROLE_TOKENS",
    "Template",
    "ChatTemplate",
    "CHAT",
    "RoleTemplate",
    "ROLE_CHAT",
    "add_role_tokens",
]

#: the roles of a conversation, as in the OpenAI chat format
ROLES = ("system", "user", "assistant")


def _check_messages(messages: Sequence[tuple[str, str]]) -> None:
    if not messages:
        raise ValueError("a conversation needs at least one message")
    for i, m in enumerate(messages):
        if not (
            isinstance(m, (tuple, list)) and len(m) == 2 and m[0] in ROLES and isinstance(m[1], str)
        ):
            raise ValueError(
                f"messages[{i}] must be a (role, text) pair with role in {ROLES}, got {m!r}"
            )
    if any(role == "system" for role, _ in messages[1:]):
        raise ValueError("only the first message may have the role 'system'")


class Template(Protocol):
    """What the trainers need from a chat template (both templates here satisfy it)."""

    def prompt_ids(
        self, tokenizer: Tokenizer, instruction: str, system: str | None = None
    ) -> list[int]: ...

    def answer_ids(self, tokenizer: Tokenizer, response: str) -> list[int]: ...

    def end_id(self, tokenizer: Tokenizer) -> int: ...

    def encode_chat(
        self, tokenizer: Tokenizer, messages: Sequence[tuple[str, str]]
    ) -> tuple[list[int], list[bool]]: ...


class _Encoder:
    """The conversation layout both templates share; subclasses say how a turn looks."""

    def _open(self, tokenizer: Tokenizer, role: str) -> list[int]:
        raise NotImplementedError

    def _close(self, tokenizer: Tokenizer, role: str) -> list[int]:
        raise NotImplementedError

    def end_id(self, tokenizer: Tokenizer) -> int:
        raise NotImplementedError

    def encode_chat(
        self, tokenizer: Tokenizer, messages: Sequence[tuple[str, str]]
    ) -> tuple[list[int], list[bool]]:
        """``(ids, mask)`` of ``<bos>`` and every turn; ``mask`` marks what the assistant says.

        The mask is True at the tokens of each assistant message and at the end marker
        that closes it (so the model learns to stop), False at ``<bos>``, the system and
        user turns and the markers that open a turn.
        """
        _check_messages(messages)
        ids, mask = [tokenizer.bos_id], [False]
        for role, text in messages:
            opening = self._open(tokenizer, role)
            body = tokenizer.encode(text) + self._close(tokenizer, role)
            ids += opening + body
            mask += [False] * len(opening) + [role == "assistant"] * len(body)
        return ids, mask

    def prompt_ids(
        self, tokenizer: Tokenizer, instruction: str, system: str | None = None
    ) -> list[int]:
        """``<bos>``, the optional system turn, the user turn, then the opening of the answer."""
        turns = ([("system", system)] if system is not None else []) + [("user", instruction)]
        ids, _ = self.encode_chat(tokenizer, turns)
        return ids + self._open(tokenizer, "assistant")

    def answer_ids(self, tokenizer: Tokenizer, response: str) -> list[int]:
        """The response and the end marker: the tokens SFT trains on."""
        return tokenizer.encode(response) + self._close(tokenizer, "assistant")


@dataclass(frozen=True)
class ChatTemplate(_Encoder):
    """Turns marked by ordinary characters: ``问{instruction}答{response}⏎``.

    ``render(instruction)`` is the prompt the model is conditioned on; the response
    follows it and ends with ``end`` (``"\\n"``, the poem GPT's end-of-text marker).
    A system message is written before the first ``user`` marker, unmarked.
    """

    user: str = "问"
    assistant: str = "答"
    end: str = "\n"

    def render(self, instruction: str) -> str:
        return f"{self.user}{instruction}{self.assistant}"

    def full(self, instruction: str, response: str) -> str:
        return self.render(instruction) + response + self.end

    def _open(self, tokenizer: Tokenizer, role: str) -> list[int]:
        marker = {"system": "", "user": self.user, "assistant": self.assistant}[role]
        return tokenizer.encode(marker) if marker else []

    def _close(self, tokenizer: Tokenizer, role: str) -> list[int]:
        return [self.end_id(tokenizer)] if role == "assistant" else []

    def end_id(self, tokenizer: Tokenizer) -> int:
        """The id of ``end`` (it must be one known token), which ends a response."""
        ids = tokenizer.encode(self.end)
        if len(ids) != 1 or ids[0] == tokenizer.unk_id:
            raise ValueError(
                f"the end marker {self.end!r} must be one token of the vocabulary, got {ids}"
            )
        return ids[0]


CHAT = ChatTemplate()


@dataclass(frozen=True)
class RoleTemplate(_Encoder):
    """Turns marked by role tokens: ``<|user|>{text}<|end|><|assistant|>{text}<|end|>``.

    The tokenizer must hold :data:`ROLE_TOKENS` (see :func:`add_role_tokens`);
    ``render`` spells a prompt with the token names, for reading only.
    """

    def _role_id(self, tokenizer: Tokenizer, token: str) -> int:
        from llmbook.text.tokenizers import VocabTokenizer

        if not isinstance(tokenizer, VocabTokenizer) or token not in tokenizer:
            raise ValueError(
                f"the tokenizer has no role token {token!r}; add them with "
                "llmbook.text.chat.add_role_tokens(tokenizer, model)"
            )
        return tokenizer.token_to_id(token)

    def render(self, instruction: str, system: str | None = None) -> str:
        sys_turn = f"<|system|>{system}<|end|>" if system is not None else ""
        return f"{sys_turn}<|user|>{instruction}<|end|><|assistant|>"

    def _open(self, tokenizer: Tokenizer, role: str) -> list[int]:
        return [self._role_id(tokenizer, f"<|{role}|>")]

    def _close(self, tokenizer: Tokenizer, role: str) -> list[int]:
        return [self.end_id(tokenizer)]

    def end_id(self, tokenizer: Tokenizer) -> int:
        """The id of ``<|end|>``, which closes every turn."""
        return self._role_id(tokenizer, "<|end|>")


ROLE_CHAT = RoleTemplate()


def add_role_tokens(tokenizer: VocabTokenizer, model: nn.Module | None = None) -> VocabTokenizer:
    """A copy of ``tokenizer`` with :data:`ROLE_TOKENS` appended; grows ``model`` to match.

    Existing ids keep their meaning, so the model's knowledge survives.  With ``model``
    (the book's :class:`~llmbook.models.gpt.GPT`), its embedding (and tied output
    layer) gains one row per new token, initialised to the mean of the existing rows
    (:meth:`~llmbook.models.gpt.GPT.resize_token_embeddings`).  Tokens already present
    are not added twice.
    """
    from llmbook.text.tokenizers import VocabTokenizer

    if not isinstance(tokenizer, VocabTokenizer):
        raise TypeError(
            "add_role_tokens works with the book's vocabulary tokenizers (CharTokenizer, "
            f"WordTokenizer), got {type(tokenizer).__name__}"
        )
    new = [t for t in ROLE_TOKENS if t not in tokenizer]
    grown = type(tokenizer)(tokenizer.itos + new)
    if model is not None:
        resize = getattr(model, "resize_token_embeddings", None)
        if resize is None:
            raise TypeError(f"{type(model).__name__} has no resize_token_embeddings()")
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if vocab != tokenizer.vocab_size:
            raise ValueError(
                f"the model's vocabulary ({vocab}) does not match the "
                f"tokenizer's ({tokenizer.vocab_size}); pass the tokenizer it was trained with"
            )
        resize(grown.vocab_size)
    return grown
