"""Evaluating instruction following: generate for held-out instructions and check form and topic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from llmbook.evaluation.poems import form_compliance
from llmbook.interfaces import Tokenizer
from llmbook.text.chat import CHAT, ChatTemplate


@dataclass
class InstructionEval:
    """Generated responses and the share that follow the requested form."""

    outputs: list[str]
    lines_ok: float
    chars_ok: float
    both_ok: float
    title_char_share: float


def evaluate_instructions(
    model: nn.Module,
    tokenizer: Tokenizer,
    items: Sequence[tuple[str, str, str]],
    *,
    template: ChatTemplate = CHAT,
    max_new_tokens: int = 40,
    seed: int = 0,
    strategy: str = "greedy",
    **generate_kwargs: Any,
) -> InstructionEval:
    """Generate a response for each ``(instruction, form, title)`` and score it.

    Decoding is greedy unless ``strategy="sample"``; ``generate_kwargs`` (temperature,
    ``top_k``, ``top_p``, ``repetition_penalty``) go to
    :func:`llmbook.generation.decoding.generate_text`, and ``seed`` makes sampling
    reproducible.

    ``lines_ok``/``chars_ok``/``both_ok`` are shares of :func:`form_compliance`;
    ``title_char_share`` is the share of responses that use at least one character of
    the title (a crude relevance check).
    """
    from llmbook.generation.decoding import generate_text

    prompts = [template.render(ins) for ins, _, _ in items]
    outs = [
        o[len(p) :]
        for o, p in zip(
            generate_text(
                model,
                tokenizer,
                prompts,
                max_new_tokens,
                strategy=strategy,
                seed=seed,
                **generate_kwargs,
            ),
            prompts,
        )
    ]
    checks = [form_compliance(o, form) for o, (_, form, _) in zip(outs, items)]
    n = len(items)
    title_hits = sum(any(c in o for c in title) for o, (_, _, title) in zip(outs, items))
    return InstructionEval(
        outs,
        sum(c["lines"] for c in checks) / n,
        sum(c["chars"] for c in checks) / n,
        sum(c["both"] for c in checks) / n,
        title_hits / n,
    )
