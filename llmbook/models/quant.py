r"""Weight-only int8 quantisation of linear layers, with per-output-channel symmetric scales.

Each row :math:`w_j` of a weight matrix :math:`W\in\mathbb{R}^{d_\text{out}\times d_\text{in}}`
(the weights of output channel :math:`j`) is stored as 8-bit integers and one float scale

.. math:: s_j = \frac{\max_i |W_{ji}|}{127},\qquad
          Q_{ji} = \mathrm{round}\!\left(\frac{W_{ji}}{s_j}\right)\in\{-127,\dots,127\},
          \qquad W_{ji}\approx s_j\,Q_{ji}.

The rounding error of an entry is at most :math:`s_j/2`.  Because the scale belongs to an
output channel, it could be applied *after* the matrix product,

.. math:: y_j = \sum_i W_{ji}\,x_i + b_j \approx s_j \sum_i Q_{ji}\,x_i + b_j ;

:class:`Int8Linear` applies it to the weight instead (it dequantises :math:`s_j Q_{ji}` on
the fly and does one float matrix product), because for a batch of many tokens the
weight (``out x in``) is much smaller than the output (``tokens x out``).  Only the
weights are quantised and the arithmetic stays in floating point ("weight-only"
quantisation): this saves memory, not arithmetic.  Whether it also saves time depends on
whether the hardware waits for weights to arrive from memory (large models, a GPU
decoding one token at a time) or for arithmetic (a small model on a CPU).
:func:`torch.ao.quantization.quantize_dynamic` is the peer that also quantises the
activations and multiplies in int8.

A GPT's output layer usually shares its matrix with the token embedding (weight tying).
:func:`quantize_linear_int8` keeps the tie: the embedding becomes an
:class:`Int8Embedding` that reads rows of the same int8 matrix (a vocabulary row is an
output channel of the output layer, so the per-channel scales serve both).

Usage::

    q = quantize_linear_int8(model)              # a quantised copy; model is unchanged
    weight_bytes(q) / weight_bytes(model)        # about 0.25 when Linear layers dominate
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "quantize_weight_int8",
    "Int8Linear",
    "Int8Embedding",
    "quantize_linear_int8",
    "weight_bytes",
]

QMAX = 127  #: symmetric range: -127 … 127 (-128 is not used, so that 0 is the centre)


def quantize_weight_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row symmetric int8 quantisation: ``weight ≈ q * scale[:, None]``.

    ``weight`` is a floating-point ``[out, in]`` matrix; returns ``q`` (``int8``, same
    shape) and ``scale`` (``float32``, ``[out]``).  An all-zero row gets scale 1 (its
    integers are 0 anyway).
    """
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"quantize_weight_int8 needs a 2-D [out, in] weight, got {shape}")
    if not weight.is_floating_point():
        raise TypeError(f"quantize_weight_int8 needs a floating-point weight, got {weight.dtype}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("quantize_weight_int8: the weight contains NaN or infinity")
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 with one float scale per output.

    ``forward(x) = (x @ q.T) * scale + bias``; ``q`` and ``scale`` are buffers (saved in
    the state dict, never trained).  Build one with :meth:`from_linear`.
    """

    qweight: Tensor
    scale: Tensor
    bias: Tensor | None

    def __init__(self, qweight: Tensor, scale: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        if qweight.dtype != torch.int8 or qweight.dim() != 2:
            raise ValueError(
                f"Int8Linear needs an int8 [out, in] qweight, got {qweight.dtype} "
                f"{tuple(qweight.shape)}; build it with Int8Linear.from_linear(linear)"
            )
        if scale.shape != (qweight.size(0),):
            raise ValueError(
                f"Int8Linear needs one scale per output channel ({qweight.size(0)}), "
                f"got shape {tuple(scale.shape)}"
            )
        self.in_features = qweight.size(1)
        self.out_features = qweight.size(0)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        """Quantise ``linear``'s weight (:func:`quantize_weight_int8`); the bias is kept."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        q, scale = quantize_weight_int8(linear.weight)
        return cls(q, scale, linear.bias)

    def dequantized_weight(self) -> Tensor:
        """The float weight this layer computes with, ``q * scale[:, None]``."""
        return self.qweight.float() * self.scale[:, None]

    @property
    def weight(self) -> Tensor:
        """The dequantised float weight, computed on access (code that reads
        ``layer.weight`` for its dtype or shape keeps working)."""
        return self.dequantized_weight()

    def forward(self, x: Tensor) -> Tensor:
        if x.size(-1) != self.in_features:
            raise ValueError(
                f"Int8Linear expects inputs with {self.in_features} features in the last "
                f"dimension, got shape {tuple(x.shape)}"
            )
        # Dequantise the weight, then one float matrix product.  Scaling the output
        # instead (the scale is per output channel) gives the same numbers, but the
        # output of a batch (tokens x out) is much larger than the weight (out x in).
        w = self.qweight.to(x.dtype) * self.scale.to(x.dtype)[:, None]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, weight=int8"
        )


class Int8Embedding(nn.Module):
    """An embedding table that reads rows of an :class:`Int8Linear`'s int8 matrix.

    Used for a token embedding tied to the output layer: row ``i`` is
    ``q[i] * scale[i]``, the same numbers the output layer uses for token ``i``, stored once.
    """

    qweight: Tensor
    scale: Tensor

    def __init__(self, source: Int8Linear) -> None:
        super().__init__()
        if not isinstance(source, Int8Linear):
            raise TypeError(f"Int8Embedding needs an Int8Linear, got {type(source).__name__}")
        self.num_embeddings = source.out_features
        self.embedding_dim = source.in_features
        # the same tensors as the output layer: no copy, and the state dict shares them
        self.register_buffer("qweight", source.qweight)
        self.register_buffer("scale", source.scale)

    @property
    def weight(self) -> Tensor:
        """The dequantised float table, computed on access (``GPT.new_cache`` reads its
        device and dtype)."""
        return self.qweight.float() * self.scale[:, None]

    def forward(self, idx: Tensor) -> Tensor:
        return self.qweight[idx].float() * self.scale[idx].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, weight=int8 (tied)"


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def quantize_linear_int8(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` by an :class:`Int8Linear`.

    Works on a deep copy unless ``inplace``.  An ``nn.Embedding`` whose weight is the
    weight of one of the linear layers (a tied GPT embedding) becomes an
    :class:`Int8Embedding` on that layer's int8 matrix, so the tie survives and the matrix
    is stored once.  Other modules (LayerNorm, position embeddings) are left in float.
    Returns the quantised model in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_linear_int8 needs an nn.Module, got {type(model).__name__}")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer to quantise (already quantised?)"
        )
    out = model if inplace else copy.deepcopy(model)
    by_weight: dict[int, Int8Linear] = {}
    for name, _ in linears:
        linear = out.get_submodule(name)
        assert isinstance(linear, nn.Linear)
        q = Int8Linear.from_linear(linear)
        by_weight[id(linear.weight)] = q
        _set_submodule(out, name, q)
    for name, m in list(out.named_modules()):
        if isinstance(m, nn.Embedding) and id(m.weight) in by_weight:
            _set_submodule(out, name, Int8Embedding(by_weight[id(m.weight)]))
    return out.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of ``model``, each tensor's storage counted once.

    This is what the weights occupy in memory (and, up to the file's header, on disk):
    a tied matrix counts once, an int8 entry 1 byte, a float32 entry 4.  For
    :func:`torch.ao.quantization.quantize_dynamic` models, whose packed weights are not
    parameters, use the size of the saved state dict instead.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total
