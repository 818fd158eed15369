r"""LoRA: low-rank adaptation of linear layers :cite:`hu2022lora`.

A frozen weight :math:`W\in\mathbb{R}^{d_\text{out}\times d_\text{in}}` is adapted by a
trainable low-rank update

.. math:: h = W x + \frac{\alpha}{r}\, B A\, \mathrm{dropout}(x),\qquad
          A\in\mathbb{R}^{r\times d_\text{in}},\; B\in\mathbb{R}^{d_\text{out}\times r}

with :math:`B` initialised to zero, so the adapted model starts exactly equal to the
pretrained one.  Only :math:`r(d_\text{in}+d_\text{out})` numbers per layer are trained.
After training the update can be *merged* into :math:`W` (no extra latency at inference)
and *unmerged* again to recover the original weight.

Usage::

    replaced = apply_lora(model, targets=["qkv", "proj"], r=4, alpha=8)
    print(trainable_share(model))            # e.g. 0.6 %
    ... train ...
    merge_lora(model)                       # plain nn.Linear speed
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "LoRALinear",
    "apply_lora",
    "merge_lora",
    "unmerge_lora",
    "unwrap_lora",
    "lora_parameters",
    "mark_trainable",
    "trainable_share",
]


class LoRALinear(nn.Module):
    """``nn.Linear`` wrapped with a rank-``r`` LoRA update (the base weight is frozen).

    Args:
        base: the pretrained linear layer (kept, not copied).
        r: rank of the update, ``r >= 1``.
        alpha: scaling numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout probability applied to the input of the LoRA branch only.
    """

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 8.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps nn.Linear, got {type(base).__name__}")
        if not isinstance(r, int) or r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
        if r > min(base.in_features, base.out_features):
            raise ValueError(
                f"LoRA rank r={r} exceeds the layer's smaller dimension "
                f"{min(base.in_features, base.out_features)}; choose a smaller r"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.base = base
        self.r = r
        self.alpha = float(alpha)
        self.scaling = self.alpha / r
        self.merged = False
        for p in self.base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (merged weight after :meth:`merge`)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        r"""The update :math:`\frac{\alpha}{r} B A` with the shape of the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update into the base weight; forward then costs one plain matmul."""
        if self.merged:
            raise RuntimeError("this LoRALinear is already merged; call unmerge() first")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the update again, restoring the pretrained weight (up to rounding)."""
        if not self.merged:
            raise RuntimeError("this LoRALinear is not merged; nothing to unmerge")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, r={self.r}, "
            f"alpha={self.alpha:g}, merged={self.merged}"
        )


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(
    model: nn.Module,
    targets: Sequence[str],
    r: int = 4,
    alpha: float = 8.0,
    dropout: float = 0.0,
    *,
    freeze: bool = True,
) -> list[str]:
    """Replace the ``nn.Linear`` submodules named by ``targets`` with :class:`LoRALinear`.

    A module matches a target when its qualified name equals it or ends with
    ``"." + target`` (so ``"qkv"`` matches ``blocks.0.attn.qkv`` in every block).  With
    ``freeze=True`` every other parameter of ``model`` is frozen first; re-enable the ones
    you still want to train (e.g. a new classification head) with :func:`mark_trainable`.
    Returns the qualified names that were replaced; raises ``ValueError`` if none matched.
    """
    if isinstance(targets, str):
        targets = [targets]
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear)
        and not isinstance(mod, LoRALinear)
        and _matches(name, targets)
    ]
    if not found:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"no nn.Linear module matches targets={list(targets)}; linear layers of this "
            f"model are: {linear[:12]}{' …' if len(linear) > 12 else ''}"
        )
    for name, mod in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(mod, r=r, alpha=alpha, dropout=dropout))
    return [name for name, _ in found]


def _lora_modules(model: nn.Module) -> list[LoRALinear]:
    mods = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if not mods:
        raise ValueError("the model has no LoRALinear layers; call apply_lora(model, …) first")
    return mods


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer of ``model``; returns how many were merged."""
    mods = _lora_modules(model)
    for m in mods:
        m.merge()
    return len(mods)


def unmerge_lora(model: nn.Module) -> int:
    """Unmerge every LoRA layer of ``model``; returns how many were unmerged."""
    mods = _lora_modules(model)
    for m in mods:
        m.unmerge()
    return len(mods)


def unwrap_lora(model: nn.Module) -> int:
    """Merge every LoRA layer and put its base ``nn.Linear`` back in its place.

    The model then has the architecture it had before :func:`apply_lora` (so its
    checkpoint loads into a plain model) with the fine-tuned weights.  Returns how many
    layers were replaced.  Not reversible: the LoRA factors are dropped.
    """
    mods = {id(m) for m in _lora_modules(model)}
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in mods:
                assert isinstance(child, LoRALinear)
                if not child.merged:
                    child.merge()
                setattr(parent, name, child.base)
                n += 1
    return n


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``lora_A``/``lora_B`` parameters of every LoRA layer."""
    return [p for m in _lora_modules(model) for p in (m.lora_A, m.lora_B)]


def mark_trainable(model: nn.Module, prefixes: Iterable[str]) -> int:
    """Unfreeze parameters whose qualified name starts with one of ``prefixes``.

    Returns the number of parameter tensors unfrozen; raises if a prefix matched nothing.
    """
    total = 0
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        hits = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        if not hits:
            raise ValueError(
                f"no parameter name starts with {prefix!r}; names are like {names[:6]}"
            )
        for p in hits:
            p.requires_grad_(True)
        total += len(hits)
    return total


def trainable_share(model: nn.Module) -> tuple[int, int, float]:
    """``(trainable, total, trainable / total)`` parameter counts (shared tensors once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total, (trainable / total if total else 0.0)
