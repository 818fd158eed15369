r"""Direct preference optimisation (DPO, Rafailov et al., 2023), from scratch.

Given a prompt :math:`x`, a preferred response :math:`y_w` and a dispreferred one
:math:`y_l`, DPO trains the policy :math:`\pi_\theta` against a frozen reference
:math:`\pi_\text{ref}` with

.. math:: \mathcal{L} = -\log\sigma(\beta\,\Delta),\qquad
          \Delta = \bigl[\log\pi_\theta(y_w|x) - \log\pi_\text{ref}(y_w|x)\bigr]
                 - \bigl[\log\pi_\theta(y_l|x) - \log\pi_\text{ref}(y_l|x)\bigr]

where :math:`\beta\,(\log\pi_\theta - \log\pi_\text{ref})` is the *implicit reward* of a
response.  The gradient with respect to the policy's log-probabilities is

.. math:: \frac{\partial\mathcal{L}}{\partial\log\pi_\theta(y_w|x)}
          = -\beta\,\sigma(-\beta\Delta)
          = -\frac{\partial\mathcal{L}}{\partial\log\pi_\theta(y_l|x)}

(from :math:`\frac{d}{dz}\bigl[-\log\sigma(z)\bigr] = -\sigma(-z)`): a pair the policy
already ranks well (:math:`\Delta \gg 0`) barely moves it, a misranked pair pulls with
weight up to :math:`\beta`.  As :math:`\beta\to 0` the loss tends to :math:`\log 2` and
the gradient to 0; for large :math:`\beta` the loss approaches the hinge
:math:`\beta\max(0, -\Delta)`.

The preference pairs here need no human: :func:`build_preference_pairs` samples several
responses per prompt and ranks them with a verifiable reward (e.g.
:func:`llmbook.evaluation.poem_rewards.instruction_reward`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.interfaces import Tokenizer
from llmbook.text.chat import CHAT, Template
from llmbook.training.policy import (
    LORA_TARGETS,
    TrainLog,
    collate_responses,
    encode_response,
    frozen_reference,
    logprobs_of,
    next_token_kl,
    prepare_trainable,
    score_samples,
    sequence_logprobs,
)

__all__ = [
    "sequence_logprobs",
    "dpo_loss",
    "PreferencePair",
    "build_preference_pairs",
    "DPOResult",
    "train_dpo",
]


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float = 0.1,
) -> tuple[Tensor, dict[str, float]]:
    """The mean DPO loss over a batch of pairs, and diagnostics.

    Arguments are ``[N]`` sequence log-probabilities (:func:`sequence_logprobs`).  The
    diagnostics: ``chosen_reward`` and ``rejected_reward`` (mean implicit rewards
    ``β (log π − log π_ref)``), ``margin`` (their difference, ``β Δ`` averaged) and
    ``accuracy`` (share of pairs whose chosen response has the larger implicit reward).
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    loss = F.softplus(-(chosen - rejected)).mean()  # -log σ(βΔ), computed stably
    with torch.no_grad():
        stats = {
            "chosen_reward": chosen.mean().item(),
            "rejected_reward": rejected.mean().item(),
            "margin": (chosen - rejected).mean().item(),
            "accuracy": (chosen > rejected).float().mean().item(),
        }
    return loss, stats


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred and a dispreferred response, and their rewards."""

    instruction: str
    chosen: str
    rejected: str
    chosen_reward: float = float("nan")
    rejected_reward: float = float("nan")


def build_preference_pairs(
    model: nn.Module,
    tokenizer: Tokenizer,
    instructions: Sequence[str],
    reward_fn: Callable[[str, str], float],
    *,
    samples_per_prompt: int = 4,
    min_gap: float = 0.0,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int | None = None,
    template: Template = CHAT,
    seed: int = 0,
) -> list[PreferencePair]:
    """One pair per instruction: the best of ``samples_per_prompt`` samples against the worst.

    ``reward_fn(instruction, response)`` scores a response.  An instruction whose best
    and worst rewards differ by no more than ``min_gap`` (e.g. all samples equally good)
    gives no pair.
    """
    if samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt must be >= 2, got {samples_per_prompt}")
    scored = score_samples(
        model,
        tokenizer,
        instructions,
        reward_fn,
        n=samples_per_prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        template=template,
        seed=seed,
    )
    pairs = []
    for k, ins in enumerate(instructions):
        group = scored[k * samples_per_prompt : (k + 1) * samples_per_prompt]
        ranked = sorted(((r, t) for _, t, r in group), key=lambda rt: rt[0])
        (lo, worst), (hi, best) = ranked[0], ranked[-1]
        if hi - lo > min_gap:
            pairs.append(PreferencePair(ins, best, worst, hi, lo))
    return pairs


@dataclass
class DPOResult(TrainLog):
    """Per-step logs of :func:`train_dpo` (:class:`~llmbook.training.policy.TrainLog`).

    Each entry is measured on the step's batch before its update: ``losses`` the DPO
    loss, ``margins`` the mean implicit-reward margin ``β Δ``, ``accuracies`` the share
    of pairs with ``Δ > 0``, ``kl`` :func:`llmbook.training.policy.next_token_kl` on the
    chosen and rejected responses, averaged over them (the policy's drift from the
    reference on those responses).
    """

    margins: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def train_dpo(
    policy: nn.Module,
    reference: nn.Module | None,
    pairs: Sequence[PreferencePair | tuple[str, str, str]],
    *,
    tokenizer: Tokenizer,
    steps: int = 50,
    batch_size: int = 8,
    lr: float = 5e-4,
    beta: float = 0.1,
    lora_rank: int = 4,
    lora_alpha: float | None = None,
    lora_targets: Sequence[str] = LORA_TARGETS,
    template: Template = CHAT,
    seed: int = 0,
    progress: bool = True,
) -> DPOResult:
    """Train ``policy`` with DPO on ``pairs`` against the frozen ``reference``.

    ``reference`` None: a frozen copy of ``policy`` as it is now (made before LoRA is
    added).  LoRA of rank ``lora_rank`` by default (:func:`~llmbook.training.policy.prepare_trainable`;
    0: full fine-tuning).  AdamW with constant ``lr``, gradient norm clipped to 1; both
    models in eval mode (no dropout), so that log-probabilities are deterministic.
    Pairs too long for the model's context are skipped.
    """
    from llmbook.interfaces import block_size
    from llmbook.optim import optimizer_step
    from llmbook.utils import progress_bar

    ref = frozen_reference(policy, reference)
    trainable, total = prepare_trainable(policy, lora_rank, lora_alpha, lora_targets)
    block = block_size(policy)
    rows = []
    for p in pairs:
        ins, chosen, rejected = (
            (p.instruction, p.chosen, p.rejected) if isinstance(p, PreferencePair) else p
        )
        c = encode_response(tokenizer, ins, chosen, template)
        r = encode_response(tokenizer, ins, rejected, template)
        if max(len(c[0]), len(r[0])) <= block + 1:  # the last token is only a target
            rows.append((c, r))
    if not rows:
        raise ValueError("no preference pair fits in the model's block_size")
    device = next(policy.parameters()).device
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    policy.eval()
    out = DPOResult(trainable=trainable, total=total)
    for _ in progress_bar(range(steps), disable=not progress, desc="DPO"):
        batch = [rng.choice(rows) for _ in range(batch_size)]
        ids, mask = collate_responses(
            [c for c, _ in batch] + [r for _, r in batch], tokenizer.pad_id
        )
        ids, mask = ids.to(device), mask.to(device)
        keep = mask[:, 1:].float()
        pol_logits, _ = policy(ids[:, :-1])
        pol = (logprobs_of(pol_logits, ids) * keep).sum(-1)
        with torch.no_grad():
            ref_logits, _ = ref(ids[:, :-1])
            ref_seq = (logprobs_of(ref_logits, ids) * keep).sum(-1)
            kl = next_token_kl(pol_logits.float(), ref_logits.float(), mask).mean().item()
        n = len(batch)
        loss, stats = dpo_loss(pol[:n], pol[n:], ref_seq[:n], ref_seq[n:], beta)
        optimizer_step(params, opt, loss, lr=lr, clip=1.0)
        out.losses.append(loss.item())
        out.margins.append(stats["margin"])
        out.accuracies.append(stats["accuracy"])
        out.kl.append(kl)
    return out
