r"""Looking inside a trained GPT: attention maps and gradient saliency.

* :func:`attention_maps` returns, for every layer and head, the attention weights
  :math:`\operatorname{softmax}(QK^\top/\sqrt{d_h} + M)` of one sequence
  (:math:`M` is the causal mask).  The model computes them itself
  (:meth:`llmbook.models.gpt.GPT.attention_maps`), with the attention code of its forward
  pass, spelled out instead of the fused kernel, which does not return them.
* :func:`saliency` measures how much each input token matters for one prediction: the
  gradient of :math:`\log p(\text{target}\mid\text{context})` with respect to the input
  embeddings, reduced per position to its L2 norm (Simonyan et al. 2014) or to
  gradient × input (the first-order change of the log-probability if that token's
  embedding were set to zero).

Both are descriptive tools: attention weights show where information is *read from*,
not why, and saliency is a local linear approximation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["attention_maps", "saliency"]


def _check(model: Any, idx: Tensor, needs: str) -> None:
    if not hasattr(model, needs):
        raise TypeError(
            f"expected an llmbook.models.gpt.GPT, got {type(model).__name__} (it has no {needs!r})"
        )
    if idx.dim() != 2 or idx.size(0) != 1:
        raise ValueError(f"idx must have shape [1, T] (one sequence), got {tuple(idx.shape)}")


def attention_maps(model: Any, idx: Tensor) -> Tensor:
    """Attention weights ``[n_layer, n_head, T, T]`` of ``model`` on one sequence ``idx``.

    Row ``i`` of a map is the distribution over positions ``0..i`` that position ``i``
    reads from; rows sum to 1 and the upper triangle is 0.
    """
    _check(model, idx, "attention_maps")
    maps: Tensor = model.attention_maps(idx)  # [n_layer, 1, n_head, T, T]
    return maps[:, 0]


def saliency(
    model: Any, idx: Tensor, position: int, target: int | None = None, *, method: str = "norm"
) -> Tensor:
    """Importance ``[T]`` of each input token for the prediction made at ``position``.

    ``target`` is the token whose log-probability is differentiated (default: the
    model's top prediction at ``position``).  ``method="norm"``: L2 norm of the gradient
    per position; ``"grad_x_input"``: dot product of gradient and embedding.
    Positions after ``position`` get exactly 0 (the model is causal).
    """
    _check(model, idx, "wte")
    if method not in ("norm", "grad_x_input"):
        raise ValueError(f"method must be 'norm' or 'grad_x_input', got {method!r}")
    t = idx.size(1)
    if not -t <= position < t:
        raise IndexError(f"position {position} out of range for a sequence of {t} tokens")
    captured: list[Tensor] = []

    def keep(_m: Any, _args: Any, out: Tensor) -> Tensor:
        out.retain_grad()
        captured.append(out)
        return out

    hook = model.wte.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        model.zero_grad(set_to_none=True)
        logits, _ = model(idx)
        logp = torch.log_softmax(logits[0, position].float(), dim=-1)
        tgt = int(logp.argmax()) if target is None else int(target)
        logp[tgt].backward()
    finally:
        hook.remove()
        model.train(was_training)
    emb = captured[0]
    if emb.grad is None:  # pragma: no cover - the hook always retains the gradient
        raise RuntimeError("no gradient reached the token embeddings")
    grad = emb.grad[0]
    model.zero_grad(set_to_none=True)
    if method == "norm":
        return grad.norm(dim=-1).detach()
    return (grad * emb[0]).sum(-1).detach()
