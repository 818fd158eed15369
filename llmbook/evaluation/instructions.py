"""Evaluating instruction following: generate for held-out instructions and check the answers.

* :func:`respond`: a model's answers to instructions, in any chat template;
* :func:`evaluate_instructions`: form and topic of poems written to order;
* :func:`evaluate_tasks`: the four tasks of :mod:`llmbook.evaluation.poem_tasks`,
  scored by :func:`~llmbook.evaluation.poem_tasks.score_response` task by task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from llmbook.evaluation.poem_tasks import TASKS, PoemTask, TaskScore, score_response
from llmbook.evaluation.poems import form_compliance
from llmbook.interfaces import Tokenizer
from llmbook.text.chat import CHAT, Template

__all__ = ["respond", "InstructionEval", "evaluate_instructions", "TaskEval", "evaluate_tasks"]


def respond(
    model: nn.Module,
    tokenizer: Tokenizer,
    instructions: Sequence[str],
    *,
    template: Template = CHAT,
    system: str | None = None,
    max_new_tokens: int = 40,
    strategy: str = "greedy",
    seed: int = 0,
    **generate_kwargs: Any,
) -> list[str]:
    """The model's answer to each instruction: the text up to its end marker.

    The model reads ``template.prompt_ids`` (with the optional ``system`` message);
    instructions whose prompts have the same length are generated as one batch.
    ``generate_kwargs`` (``temperature``, ``top_k``, ``top_p``,
    ``repetition_penalty``) go to :func:`llmbook.generation.decoding.generate`;
    ``seed`` makes sampling reproducible.
    """
    from llmbook.generation.decoding import generate

    end = template.end_id(tokenizer)
    prompts = [template.prompt_ids(tokenizer, ins, system) for ins in instructions]
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        groups.setdefault(len(ids), []).append(i)
    answers: dict[int, str] = {}
    for length, members in groups.items():
        idx = torch.tensor([prompts[i] for i in members], device=device)
        rows = generate(
            model,
            idx,
            max_new_tokens,
            strategy=strategy,
            eos_id=end,
            generator=gen,
            **generate_kwargs,
        )[:, length:].tolist()
        for i, row in zip(members, rows):
            answers[i] = tokenizer.decode(row[: row.index(end)] if end in row else row)
    return [answers[i] for i in range(len(prompts))]


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
    template: Template = CHAT,
    max_new_tokens: int = 40,
    seed: int = 0,
    strategy: str = "greedy",
    **generate_kwargs: Any,
) -> InstructionEval:
    """Generate a response for each ``(instruction, form, title)`` and score it.

    Decoding is greedy unless ``strategy="sample"`` (:func:`respond`).

    ``lines_ok``/``chars_ok``/``both_ok`` are shares of :func:`form_compliance`;
    ``title_char_share`` is the share of responses that use at least one character of
    the title (a crude relevance check).
    """
    outs = respond(
        model,
        tokenizer,
        [ins for ins, _, _ in items],
        template=template,
        max_new_tokens=max_new_tokens,
        strategy=strategy,
        seed=seed,
        **generate_kwargs,
    )
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


def _share(values: list[bool | None]) -> float | None:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None


@dataclass
class TaskEval:
    """Answers to :class:`PoemTask` instructions and their scores, with shares per task.

    ``rates[task]`` maps ``"format"``, ``"on_topic"`` and ``"exact"`` to the share of
    that task's answers that pass (``None`` where the task has no such check).
    """

    tasks: list[PoemTask]
    outputs: list[str]
    scores: list[TaskScore]
    rates: dict[str, dict[str, float | None]] = field(default_factory=dict)


def evaluate_tasks(
    model: nn.Module,
    tokenizer: Tokenizer,
    tasks: Sequence[PoemTask],
    *,
    template: Template = CHAT,
    authors: frozenset[str] = frozenset(),
    max_new_tokens: int = 40,
    **respond_kwargs: Any,
) -> TaskEval:
    """Answer every task (:func:`respond`) and score it (:func:`score_response`).

    ``authors`` (the poets of the training split) makes the 作者 task's format check
    "names a known poet".
    """
    if not tasks:
        raise ValueError("no task to evaluate")
    outs = respond(
        model,
        tokenizer,
        [t.instruction for t in tasks],
        template=template,
        max_new_tokens=max_new_tokens,
        **respond_kwargs,
    )
    scores = [score_response(t, o, authors) for t, o in zip(tasks, outs)]
    rates = {}
    for name in TASKS:
        mine = [s for t, s in zip(tasks, scores) if t.task == name]
        if mine:
            rates[name] = {
                "format": _share([s.format_ok for s in mine]),
                "on_topic": _share([s.on_topic for s in mine]),
                "exact": _share([s.exact for s in mine]),
            }
    return TaskEval(list(tasks), outs, scores, rates)
