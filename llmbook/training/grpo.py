r"""Group relative policy optimisation (GRPO, Shao et al., 2024), from scratch.

For every prompt :math:`q` the current policy samples a *group* of :math:`G` responses
:math:`o_1..o_G`; a verifiable reward scores them, and each response's advantage is its
reward standardised within the group (no learned value function, unlike PPO):

.. math:: A_i = \frac{r_i - \operatorname{mean}(r_{1..G})}{\operatorname{std}(r_{1..G}) + \epsilon}

(population std; a group whose rewards are all equal teaches nothing: every
:math:`A_i = 0`).  Every token :math:`t` of response :math:`i` then gets the PPO clipped
surrogate with the ratio :math:`\rho_t = \pi_\theta(o_t|\cdot)/\pi_\text{old}(o_t|\cdot)`
to the policy that sampled it, and a KL penalty to the frozen reference, estimated per
token with the unbiased, always non-negative *k3* estimator

.. math:: \widehat{\mathrm{KL}}_t = e^{\,\log\pi_\text{ref} - \log\pi_\theta}
          - (\log\pi_\text{ref} - \log\pi_\theta) - 1 \;\ge 0 .

The loss is minus the objective, averaged over the tokens of each response and then
over the responses:

.. math:: \mathcal{L} = -\frac{1}{G}\sum_i \frac{1}{|o_i|}\sum_t
          \Bigl[\min\bigl(\rho_t A_i,\ \operatorname{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon) A_i\bigr)
          - \beta\,\widehat{\mathrm{KL}}_t\Bigr].

The clip stops a token from being pushed further once its ratio has left
:math:`[1-\varepsilon, 1+\varepsilon]` in the direction its advantage pushes; with one
update per sample (``inner_steps=1``) the ratio is exactly 1 and only the KL differs
from plain policy gradient.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from llmbook.interfaces import Tokenizer
from llmbook.text.chat import CHAT, Template
from llmbook.training.policy import (
    LORA_TARGETS,
    TrainLog,
    collate_responses,
    frozen_reference,
    logprobs_of,
    prepare_trainable,
    sample_responses,
)

__all__ = [
    "group_advantages",
    "clipped_surrogate",
    "k3_kl",
    "grpo_loss",
    "GRPOResult",
    "train_grpo",
]


def group_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """``(r - mean) / (std + eps)`` along the last dimension (one group per row).

    ``std`` is the population standard deviation, so a group of one or of equal rewards
    gets advantages 0 (not NaN).
    """
    r = rewards.float()
    mean = r.mean(-1, keepdim=True)
    std = r.std(-1, correction=0, keepdim=True)
    return (r - mean) / (std + eps)


def clipped_surrogate(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_eps: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Per-token PPO objective ``min(ρA, clip(ρ)A)`` and where the clip is active.

    ``logp`` (with grad) and ``old_logp`` are per-token log-probabilities ``[B, T]``;
    ``advantages`` broadcast to them (``[B, 1]`` per sequence).  The second tensor is True
    where the clipped term is the smaller one and differs, i.e. where the gradient is cut.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    active = clipped < unclipped
    return torch.minimum(unclipped, clipped), active


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(π‖π_ref): ``exp(ref − pol) − (ref − pol) − 1 >= 0``."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 0.2,
    beta: float = 0.04,
) -> tuple[Tensor, dict[str, float]]:
    """The GRPO loss (module docstring) on ``[B, T]`` token log-probabilities.

    ``advantages`` is ``[B]`` (one per response), ``mask`` the ``[B, T]`` tokens that
    count.  Diagnostics: ``kl`` (mean k3 per response token) and ``clip_fraction`` (share
    of response tokens where the clip is active).
    """
    m = mask.float()
    n_tok = m.sum(-1).clamp(min=1.0)
    surrogate, active = clipped_surrogate(logp, old_logp, advantages[:, None], clip_eps)
    kl = k3_kl(logp, ref_logp)
    per_token = surrogate - beta * kl
    loss = -((per_token * m).sum(-1) / n_tok).mean()
    with torch.no_grad():
        total = m.sum().clamp(min=1.0)
        stats = {
            "kl": ((kl * m).sum() / total).item(),
            "clip_fraction": ((active.float() * m).sum() / total).item(),
        }
    return loss, stats


@dataclass
class GRPOResult(TrainLog):
    """Per-step logs of :func:`train_grpo` (:class:`~llmbook.training.policy.TrainLog`).

    ``rewards``: mean reward of the step's samples (before the update); ``kl``: mean k3
    per response token at the step's first update; ``clip_fraction``: share of tokens
    clipped, averaged over the inner steps; ``losses``: averaged over the inner steps.
    """

    rewards: list[float] = field(default_factory=list)
    clip_fraction: list[float] = field(default_factory=list)


def train_grpo(
    policy: nn.Module,
    reference: nn.Module | None,
    prompts: Sequence[str],
    reward_fn: Callable[[str, str], float],
    *,
    tokenizer: Tokenizer,
    template: Template = CHAT,
    seed: int = 0,
    steps: int = 50,
    prompts_per_step: int = 4,
    group_size: int = 8,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int | None = None,
    lr: float = 5e-4,
    beta: float = 0.04,
    clip_eps: float = 0.2,
    inner_steps: int = 2,
    lora_rank: int = 4,
    lora_alpha: float | None = None,
    lora_targets: Sequence[str] = LORA_TARGETS,
    progress: bool = True,
) -> GRPOResult:
    """Train ``policy`` with GRPO on ``prompts`` (instructions) scored by ``reward_fn``.

    Each step samples ``group_size`` responses to each of ``prompts_per_step`` prompts
    with the current policy, scores them with ``reward_fn(instruction, response)``, and
    makes ``inner_steps`` updates on them (AdamW, constant ``lr``, gradient norm clipped to
    1).  ``reference`` None: a frozen copy of ``policy`` as it is now.  LoRA of rank
    ``lora_rank`` by default (0: full fine-tuning).  Dropout is off throughout (eval mode),
    so that the ratio to the sampling policy is exactly 1 before the first update.
    """
    from llmbook.optim import optimizer_step
    from llmbook.utils import progress_bar

    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (advantages compare a group), got {group_size}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("train_grpo needs at least one prompt")
    ref = frozen_reference(policy, reference)
    trainable, total = prepare_trainable(policy, lora_rank, lora_alpha, lora_targets)
    device = next(policy.parameters()).device
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    policy.eval()
    out = GRPOResult(trainable=trainable, total=total)
    for _ in progress_bar(range(steps), disable=not progress, desc="GRPO"):
        batch = [rng.choice(prompts) for _ in range(prompts_per_step)]
        rows, rewards = [], []
        for ins in batch:
            s = sample_responses(
                policy,
                tokenizer,
                ins,
                group_size,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                template=template,
                generator=gen,
            )
            rows += list(zip(s.ids.tolist(), s.mask.tolist()))
            rewards.append([float(reward_fn(ins, t)) for t in s.texts])
        ids, mask = (t.to(device) for t in collate_responses(rows, tokenizer.pad_id))
        mask = mask[:, 1:]  # aligned with the log-probabilities of ids[:, 1:]
        r = torch.tensor(rewards, device=device)
        adv = group_advantages(r).view(-1)
        with torch.no_grad():
            old = logprobs_of(policy(ids[:, :-1])[0], ids)
            ref_lp = logprobs_of(ref(ids[:, :-1])[0], ids)
        kls, clips, losses = [], [], []
        for _ in range(inner_steps):
            logp = logprobs_of(policy(ids[:, :-1])[0], ids)
            loss, stats = grpo_loss(logp, old, ref_lp, adv, mask, clip_eps=clip_eps, beta=beta)
            optimizer_step(params, opt, loss, lr=lr, clip=1.0)
            kls.append(stats["kl"])
            clips.append(stats["clip_fraction"])
            losses.append(loss.item())
        out.rewards.append(r.mean().item())
        out.kl.append(kls[0])
        out.clip_fraction.append(sum(clips) / len(clips))
        out.losses.append(sum(losses) / len(losses))
    return out
