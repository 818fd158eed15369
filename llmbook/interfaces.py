"""The two interfaces the whole package programs against: a language model and a tokenizer.

Both are :class:`typing.Protocol` classes, so nothing has to inherit from them: a class
*satisfies* one by having the right attributes and methods (mypy checks it statically).

* :class:`LanguageModel` — ``model(idx, targets=None) -> (logits, loss)`` and a ``config``
  with ``vocab_size`` and ``block_size`` (every causal LM in the book:
  :class:`llmbook.models.gpt.GPT`, the RNN and Transformer LMs …).  :func:`block_size`
  reads the context length of any model and raises one clear error when it has none.
* :class:`Tokenizer` — ``encode``/``decode`` and the four special ids (every tokenizer of
  :mod:`llmbook.text.tokenizers`, and the seq2seq tokenizers of
  :mod:`llmbook.applications.seq2seq`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["LanguageModelConfig", "LanguageModel", "Tokenizer", "block_size"]


class LanguageModelConfig(Protocol):
    """What every language model's ``config`` holds (a dataclass in the book)."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def block_size(self) -> int: ...


class LanguageModel(Protocol):
    """A causal language model: next-token logits for every position of ``idx``.

    ``idx`` is ``[B, T]`` token ids with ``T <= config.block_size``; the result is
    ``(logits [B, T, vocab_size], loss)`` where ``loss`` is the mean cross-entropy against
    ``targets`` (``-100`` is ignored), or ``None`` without targets.
    """

    @property
    def config(self) -> LanguageModelConfig: ...

    def __call__(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Any]: ...


@runtime_checkable
class Tokenizer(Protocol):
    """Text ↔ token ids, with the special ids ``pad_id``, ``unk_id``, ``bos_id``, ``eos_id``.

    ``decode`` drops the special tokens; characters (or words) outside the vocabulary are
    encoded as ``unk_id``.  ``isinstance(tok, Tokenizer)`` checks that every member exists.
    """

    @property
    def pad_id(self) -> int: ...

    @property
    def unk_id(self) -> int: ...

    @property
    def bos_id(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


def block_size(model: object) -> int:
    """The context length ``model.config.block_size`` of a :class:`LanguageModel`.

    Raises ``TypeError`` naming the model's class and what it lacks when ``model`` has no
    ``config`` or its config has no positive integer ``block_size``.
    """
    name = type(model).__name__
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(
            f"{name} has no attribute 'config'; a language model needs a config with "
            "vocab_size and block_size (the book's interface: llmbook.interfaces.LanguageModel)"
        )
    block = getattr(config, "block_size", None)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        what = "no attribute 'block_size'" if block is None else f"block_size={block!r}"
        raise TypeError(
            f"{name}.config has {what}; a language model's config needs a positive int "
            "block_size (its context length) — see llmbook.interfaces.LanguageModel"
        )
    return block
