"""What a running server holds: its limits and, once loaded, its models and batcher."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from llmbook.interfaces import Tokenizer, block_size
from llmbook.serving.batching import Batcher

__all__ = ["QUANTIZE_CHOICES", "ServeLimits", "Served", "load_served"]

QUANTIZE_CHOICES = ("none", "int8")  #: ``--quantize``: the weights as saved, or int8


@dataclass(frozen=True)
class ServeLimits:
    """Bounds that keep one request (or many) from monopolising the server."""

    max_body_bytes: int = 16_384  #: larger request bodies get 413
    max_prompt_chars: int = 200  #: /generate prompt length
    max_text_chars: int = 2_000  #: /classify text length
    max_new_tokens: int = 200  #: upper bound a request may ask for
    default_new_tokens: int = 64
    timeout_s: float = 20.0  #: per request, checked between tokens; 504 after that
    max_concurrency: int = 2  #: /generate and /classify requests computing at once
    max_batch_size: int = 8  #: /v1 sequences decoded together (1: one at a time)
    max_queue: int = 64  #: /v1 sequences waiting for a slot; 429 beyond
    batch_wait_ms: float = 5.0  #: an idle batcher waits this long for more requests
    max_choices: int = 8  #: prompts × n of one /v1 request
    body_timeout_s: float = 10.0  #: 408 when a request body stalls this long

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ValueError(f"ServeLimits.{name} must be > 0, got {value!r}")
        if self.default_new_tokens > self.max_new_tokens:
            raise ValueError("ServeLimits.default_new_tokens must be <= max_new_tokens")


@dataclass
class Served:
    """The loaded models; ``None`` in the app's state while they are still loading."""

    model: nn.Module
    tokenizer: Tokenizer
    meta: dict[str, Any]
    model_id: str
    batcher: Batcher
    classifier: Any = None
    classifier_tokenizer: Any = None
    classifier_info: dict[str, Any] | None = None
    quantize: str = "none"  #: one of :data:`QUANTIZE_CHOICES`
    parameters: int = 0  #: the language model's parameters, counted before quantisation

    @property
    def block_size(self) -> int:
        return block_size(self.model)


def load_served(
    checkpoint_path: str | Path,
    classifier_path: str | Path | None,
    limits: ServeLimits,
    quantize: str = "none",
) -> Served:
    """Load the checkpoint(s) from their fixed paths and start the batcher.

    ``quantize="int8"`` replaces the language model's linear layers by weight-only int8
    ones (:func:`llmbook.models.quant.quantize_linear_int8`, the tied embedding stays
    shared) before serving; the classifier is served as saved.
    """
    from llmbook.training.checkpoint import load_checkpoint

    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    model, tokenizer, meta = load_checkpoint(checkpoint_path)
    if tokenizer is None:
        raise ValueError(f"checkpoint {checkpoint_path} has no tokenizer; the server needs one")
    parameters = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if quantize == "int8":
        from llmbook.models.quant import quantize_linear_int8

        model = quantize_linear_int8(model, inplace=True)
    clf = clf_tok = clf_info = None
    if classifier_path is not None:
        from llmbook.training.checkpoint import load_classifier

        clf, clf_tok, clf_info = load_classifier(classifier_path)
        if clf_tok is None:
            raise ValueError(f"classifier {classifier_path} has no tokenizer; /classify needs one")
    batcher = Batcher(
        model,
        tokenizer,
        max_batch_size=limits.max_batch_size,
        max_queue=limits.max_queue,
        batch_wait_s=limits.batch_wait_ms / 1000,
    )
    name = Path(checkpoint_path).name
    return Served(
        model, tokenizer, meta, name, batcher, clf, clf_tok, clf_info, quantize, parameters
    )
