"""What preference tuning and RL share: LoRA set-up, a frozen reference, sampled responses, log-probabilities.

A *response* lives in a token row ``ids`` (``<bos> prompt response end``, right-padded)
with a boolean ``mask`` of the same shape that is True exactly at the response tokens
(the end marker included, padding and prompt excluded).  ``mask[:, 0]`` is always False:
the first token is never predicted.  :func:`token_logprobs` gives, for every position
``t >= 1``, the log-probability the model assigns to ``ids[:, t]`` given the tokens
before it; :func:`sequence_logprobs` sums it over the response.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.data.lmdata import right_pad
from llmbook.interfaces import Tokenizer
from llmbook.text.chat import CHAT, Template

__all__ = [
    "LORA_TARGETS",
    "prepare_trainable",
    "frozen_reference",
    "end_id",
    "encode_response",
    "collate_responses",
    "TrainLog",
    "Samples",
    "sample_responses",
    "score_samples",
    "logprobs_of",
    "token_logprobs",
    "sequence_logprobs",
    "next_token_kl",
]

#: the linear layers LoRA adapts by default: attention in/out, MLP in (and gate)/out —
#: every linear layer of :class:`llmbook.models.gpt.GPT` except the tied output layer
LORA_TARGETS = ("c_attn", "c_proj", "c_fc", "c_gate")


def prepare_trainable(
    model: nn.Module,
    lora_rank: int = 0,
    lora_alpha: float | None = None,
    lora_targets: Sequence[str] = LORA_TARGETS,
) -> tuple[int, int]:
    """Make ``model`` ready to train; returns ``(trainable, total)`` parameter counts.

    ``lora_rank > 0``: LoRA of that rank on ``lora_targets`` (scaling ``alpha / r`` with
    ``alpha = 2 r`` unless given), everything else frozen; a model that already has LoRA
    layers keeps them.  ``lora_rank = 0``: full fine-tuning of every parameter that
    requires grad (the model is left as it is).
    """
    from llmbook.models.lora import LoRALinear, apply_lora, trainable_share

    if not isinstance(lora_rank, int) or lora_rank < 0:
        raise ValueError(f"lora_rank must be an int >= 0 (0: full fine-tuning), got {lora_rank!r}")
    if lora_rank > 0 and not any(isinstance(m, LoRALinear) for m in model.modules()):
        alpha = 2.0 * lora_rank if lora_alpha is None else lora_alpha
        apply_lora(model, list(lora_targets), r=lora_rank, alpha=alpha)
    trainable, total, _ = trainable_share(model)
    if trainable == 0:
        raise ValueError("the model has no trainable parameter; unfreeze some or use lora_rank > 0")
    return trainable, total


def frozen_reference(policy: nn.Module, reference: nn.Module | None) -> nn.Module:
    """The reference model: ``reference`` (or a copy of ``policy``), frozen, in eval mode."""
    if reference is policy:
        raise ValueError("reference must be a separate model (e.g. copy.deepcopy(policy))")
    ref = copy.deepcopy(policy) if reference is None else reference
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref.eval()


@dataclass
class TrainLog:
    """What every trainer here returns: per-step ``losses`` and ``kl``, parameter counts.

    ``trainable`` and ``total`` count the trained and all parameters (LoRA: a small share).
    """

    losses: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    trainable: int = 0
    total: int = 0


def end_id(tokenizer: Tokenizer, template: Template = CHAT) -> int:
    """The id of the template's end marker (one known token), which ends a response."""
    return template.end_id(tokenizer)


def _prompt_ids(tokenizer: Tokenizer, instruction: str, template: Template) -> list[int]:
    return template.prompt_ids(tokenizer, instruction)


def encode_response(
    tokenizer: Tokenizer, instruction: str, response: str, template: Template = CHAT
) -> tuple[list[int], list[bool]]:
    """``(ids, mask)`` of ``<bos> prompt response end`` (the layout of SFT examples)."""
    prompt = _prompt_ids(tokenizer, instruction, template)
    answer = template.answer_ids(tokenizer, response)
    return prompt + answer, [False] * len(prompt) + [True] * len(answer)


def collate_responses(
    rows: Sequence[tuple[list[int], list[bool]]], pad_id: int
) -> tuple[Tensor, Tensor]:
    """Right-pad ``(ids, mask)`` rows into ``ids [B, T]`` and a boolean ``mask [B, T]``."""
    ids, _ = right_pad([r[0] for r in rows], pad_id)
    mask, _ = right_pad([[int(m) for m in r[1]] for r in rows], 0)
    return ids, mask.bool()


@dataclass
class Samples:
    """Sampled responses: token rows ``ids``, response ``mask`` and the decoded ``texts``."""

    ids: Tensor
    mask: Tensor
    texts: list[str]


@torch.no_grad()
def sample_responses(
    model: nn.Module,
    tokenizer: Tokenizer,
    instruction: str,
    n: int,
    *,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int | None = None,
    template: Template = CHAT,
    generator: torch.Generator | None = None,
) -> Samples:
    """Sample ``n`` responses to ``instruction``; each stops at the end marker (kept in it).

    A response that reaches ``max_new_tokens`` without the marker is kept as it is;
    ``max_new_tokens`` is lowered so that prompt and response fit the model's context.
    """
    from llmbook.generation.decoding import generate
    from llmbook.interfaces import block_size

    end = end_id(tokenizer, template)
    prompt = _prompt_ids(tokenizer, instruction, template)
    room = block_size(model) + 1 - len(prompt)  # the last token is never an input
    if room < 1:
        raise ValueError(f"the prompt of {instruction!r} leaves no room in the model's context")
    max_new_tokens = min(max_new_tokens, room)
    device = next(model.parameters()).device
    idx = torch.tensor([prompt] * n, device=device)
    seqs = generate(
        model,
        idx,
        max_new_tokens,
        strategy="sample",
        temperature=temperature,
        top_k=top_k,
        eos_id=end,
        generator=generator,
    )
    new = seqs[:, len(prompt) :]
    # a response runs up to and including its first end marker
    after_end = (new == end).long().cumsum(1) - (new == end).long() > 0
    mask = torch.cat([torch.zeros_like(idx, dtype=torch.bool), ~after_end], dim=1)
    texts = []
    for row, keep in zip(new.tolist(), (~after_end).tolist()):
        toks = [t for t, k in zip(row, keep) if k and t != end]
        texts.append(tokenizer.decode(toks))
    return Samples(seqs, mask, texts)


_Score = TypeVar("_Score")


def score_samples(
    model: nn.Module,
    tokenizer: Tokenizer,
    instructions: Sequence[str],
    score_fn: Callable[[str, str], _Score],
    *,
    n: int = 4,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int | None = None,
    template: Template = CHAT,
    seed: int = 0,
) -> list[tuple[str, str, _Score]]:
    """Sample ``n`` responses to each instruction and score them: ``(instruction, response, score)``.

    ``score_fn(instruction, response)`` may return anything (a reward, a dataclass of
    parts).  Seeded by ``seed``, so two models compared with the same seed and
    instructions are judged on the same random numbers.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 samples per instruction, got {n}")
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    out = []
    for ins in instructions:
        s = sample_responses(
            model,
            tokenizer,
            ins,
            n,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            template=template,
            generator=g,
        )
        out += [(ins, t, score_fn(ins, t)) for t in s.texts]
    return out


def logprobs_of(logits: Tensor, ids: Tensor) -> Tensor:
    """``[B, T - 1]`` log-probabilities of ``ids[:, 1:]`` from ``logits`` computed on ``ids[:, :-1]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def token_logprobs(model: nn.Module, ids: Tensor) -> Tensor:
    """``[B, T - 1]``: log-probability of ``ids[:, t]`` given ``ids[:, :t]``, for ``t >= 1``."""
    logits, _ = model(ids[:, :-1])
    return logprobs_of(logits, ids)


def sequence_logprobs(model: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:
    """``[B]``: the sum of the log-probabilities of the response tokens (``mask``) only."""
    return (token_logprobs(model, ids) * mask[:, 1:].float()).sum(-1)


def next_token_kl(policy_logits: Tensor, ref_logits: Tensor, mask: Tensor) -> Tensor:
    r"""``[B]``: :math:`\sum_t \mathrm{KL}(\pi(\cdot|y_{<t}) \,\|\, \pi_\text{ref}(\cdot|y_{<t}))` over response positions.

    ``*_logits`` are ``[B, T - 1, V]`` (the model's output on ``ids[:, :-1]``), ``mask``
    the ``[B, T]`` response mask.  The KL of the two full next-token distributions at
    every prefix of the response, summed.  Averaged over responses sampled from the
    policy it is the KL of the two sequence distributions (chain rule); on other
    responses (DPO's fixed pairs) it measures the two models' drift on those prefixes.
    """
    lp, lr = F.log_softmax(policy_logits, -1), F.log_softmax(ref_logits, -1)
    kl = (lp.exp() * (lp - lr)).sum(-1)  # [B, T - 1]
    return (kl * mask[:, 1:].float()).sum(-1)
