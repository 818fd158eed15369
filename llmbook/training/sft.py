"""Supervised instruction tuning (SFT): a prompt template and a loss on the response tokens only."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from llmbook.data.lmdata import right_pad
from llmbook.interfaces import Tokenizer, block_size
from llmbook.text.chat import CHAT, ChatTemplate, Template
from llmbook.text.tokenizers import VocabTokenizer
from llmbook.training.policy import LORA_TARGETS, prepare_trainable

__all__ = [
    "ChatTemplate",
    "CHAT",
    "sft_example",
    "sft_chat_example",
    "collate_sft",
    "poem_instructions",
    "train_sft",
    "SFTLosses",
]


def sft_chat_example(
    tokenizer: Tokenizer,
    messages: Sequence[tuple[str, str]],
    block_size: int,
    template: Template = CHAT,
) -> tuple[list[int], list[int]]:
    """Input ids and targets of a conversation; only the assistant's tokens have targets.

    ``messages`` are ``(role, text)`` pairs (:meth:`Template.encode_chat`).  The inputs
    are the ids without the last one; ``targets[t]`` is the id at ``t + 1`` where the
    assistant speaks there (its messages and the end markers that close them) and
    ``-100``, which the loss ignores, everywhere else.  Raises ``ValueError`` when the
    conversation does not fit in ``block_size``.
    """
    ids, mask = template.encode_chat(tokenizer, messages)
    if len(ids) - 1 > block_size:
        raise ValueError(
            f"SFT example of {len(ids) - 1} tokens exceeds block_size {block_size}; "
            "shorten the instruction/response or use a model with a longer context"
        )
    targets = [t if m else -100 for t, m in zip(ids[1:], mask[1:])]
    return ids[:-1], targets


def sft_example(
    tokenizer: Tokenizer,
    instruction: str,
    response: str,
    block_size: int,
    template: Template = CHAT,
    system: str | None = None,
) -> tuple[list[int], list[int]]:
    """Input ids and targets of one instruction and its response (:func:`sft_chat_example`).

    The sequence is ``<bos> [system] prompt response end``; prompt targets are ``-100``.
    """
    turns = [("system", system)] if system is not None else []
    turns += [("user", instruction), ("assistant", response)]
    return sft_chat_example(tokenizer, turns, block_size, template)


def collate_sft(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad SFT examples: inputs with ``pad_id``, targets with ``-100``."""
    x, _ = right_pad([a for a, _ in batch], pad_id)
    y, _ = right_pad([b for _, b in batch], -100)
    return x, y


_INSTRUCTIONS = {
    "五言绝句": "写一首五言绝句，题为{title}",
    "七言绝句": "写一首七言绝句，题为{title}",
}


def poem_instructions(
    poems: Sequence[Any],
    forms: Sequence[str] = ("五言绝句", "七言绝句"),
    tokenizer: VocabTokenizer | None = None,
) -> list[tuple[str, str]]:
    """``(instruction, poem text)`` pairs, e.g. 「写一首五言绝句，题为静夜思」 → the poem.

    With ``tokenizer``, pairs containing a character outside its vocabulary are skipped
    (titles with spaces or rare characters), so no ``<unk>`` enters the training data.
    """
    out = []
    for p in poems:
        if p.form in forms and p.form in _INSTRUCTIONS and p.title:
            pair = (_INSTRUCTIONS[p.form].format(title=p.title), p.text)
            if tokenizer is not None and not all(c in tokenizer for c in "".join(pair)):
                continue
            out.append(pair)
    return out


class SFTLosses(list[float]):
    """The loss per step of :func:`train_sft` (a list), with the parameter counts.

    ``trainable`` and ``total`` are the numbers of trained and of all parameters.
    """

    trainable: int = 0
    total: int = 0


def train_sft(
    model: nn.Module,
    tokenizer: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    steps: int = 100,
    batch_size: int = 16,
    lr: float = 1e-3,
    template: Template = CHAT,
    system: str | None = None,
    seed: int = 0,
    progress: bool = True,
    lora_rank: int = 0,
    lora_alpha: float | None = None,
    lora_targets: Sequence[str] = LORA_TARGETS,
) -> SFTLosses:
    """Instruction-tune a language model on ``pairs`` with the prompt masked out of the loss.

    Trains the parameters that require grad (AdamW, cosine decay to 0 without warm-up,
    :func:`llmbook.optim.warmup_cosine`; gradient norm clipped to 1); returns the loss per
    step as :class:`SFTLosses`.  ``system`` is a system message put before every
    instruction.  ``lora_rank > 0`` first adds LoRA of that rank to
    ``lora_targets`` and freezes the rest (:func:`llmbook.training.policy.prepare_trainable`).
    """
    from llmbook.optim import optimizer_step, warmup_cosine
    from llmbook.utils import progress_bar

    block = block_size(model)
    examples = []
    for ins, res in pairs:
        try:
            examples.append(sft_example(tokenizer, ins, res, block, template, system))
        except ValueError:
            continue  # too long for the context: skipped
    if not examples:
        raise ValueError("no SFT example fits in the model's block_size; give shorter pairs")
    losses = SFTLosses()
    losses.trainable, losses.total = prepare_trainable(model, lora_rank, lora_alpha, lora_targets)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model.train()
    for s in progress_bar(range(steps), disable=not progress, desc="SFT"):
        x, y = collate_sft([rng.choice(examples) for _ in range(batch_size)], tokenizer.pad_id)
        _, loss = model(x, y)
        optimizer_step(params, opt, loss, lr=warmup_cosine(s, lr=lr, total_steps=steps), clip=1.0)
        losses.append(loss.item())
    model.eval()
    return losses
