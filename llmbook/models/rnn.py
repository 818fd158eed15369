"""Recurrent networks written from their formulas, and RNN/LSTM language models.

A vanilla RNN keeps one hidden vector and updates it at every step:

.. math::  h_t = \\tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

An LSTM adds a cell state :math:`c_t` guarded by three gates (input, forget, output) and a
candidate :math:`g_t`:

.. math::

    i_t &= \\sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\\\
    f_t &= \\sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\\\
    g_t &= \\tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\\\
    o_t &= \\sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\\\
    c_t &= f_t \\odot c_{t-1} + i_t \\odot g_t \\\\
    h_t &= o_t \\odot \\tanh(c_t)

A GRU (Cho et al., 2014) keeps no separate cell: a reset gate :math:`r_t` decides how
much of the past enters the candidate :math:`n_t`, an update gate :math:`z_t` mixes the
old state with the candidate:

.. math::

    r_t &= \\sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\\\
    z_t &= \\sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\\\
    n_t &= \\tanh(W_{in} x_t + b_{in} + r_t \\odot (W_{hn} h_{t-1} + b_{hn})) \\\\
    h_t &= (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}

The parameters are stored exactly as PyTorch stores them (``weight_ih``/``weight_hh``
with the four LSTM blocks stacked in the order i, f, g, o, the three GRU blocks in the
order r, z, n), so the tests can copy weights
between these modules and ``torch.nn.RNN``/``torch.nn.LSTM`` and check that the outputs
agree.  :class:`Recurrent` even uses torch's parameter *names* (``weight_ih_l0`` …), so a
language model trained with the fused torch kernel (``impl="torch"``, fast) loads into
the formula implementation (``impl="formula"``, readable) unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "rnn_cell",
    "lstm_cell",
    "gru_cell",
    "GRUCell",
    "RNNCell",
    "LSTMCell",
    "Recurrent",
    "RNNLMConfig",
    "RNNLM",
    "gradient_norm_by_distance",
]

State = Tensor | tuple[Tensor, Tensor]


def rnn_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One RNN step :math:`h_t = f(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    ``x``: ``[B, input_size]``, ``h``: ``[B, hidden_size]``; returns the new ``h``.
    """
    z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    if nonlinearity == "tanh":
        return torch.tanh(z)
    if nonlinearity == "relu":
        return torch.relu(z)
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def lstm_cell(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step from the gate equations (module docstring); returns ``(h_t, c_t)``.

    The weights hold the four gates stacked as ``[i; f; g; o]`` along dimension 0, the
    layout of ``torch.nn.LSTM``.
    """
    h, c = state
    z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    zi, zf, zg, zo = z.chunk(4, dim=-1)
    i = torch.sigmoid(zi)  # input gate: how much of the candidate to write
    f = torch.sigmoid(zf)  # forget gate: how much of the old cell to keep
    g = torch.tanh(zg)  # candidate values
    o = torch.sigmoid(zo)  # output gate: how much of the cell to show
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
) -> Tensor:
    """One GRU step from the gate equations (module docstring); returns ``h_t``.

    The weights hold the three blocks stacked as ``[r; z; n]``, the layout of
    ``torch.nn.GRU``.  The reset gate multiplies the *projected* old state
    :math:`W_{hn} h_{t-1} + b_{hn}`, as in torch (and cuDNN).
    """
    xr, xz, xn = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)  # reset gate: how much of the past enters the candidate
    z = torch.sigmoid(xz + hz)  # update gate: how much of the old state to keep
    n = torch.tanh(xn + r * hn)  # candidate state
    return (1 - z) * n + z * h


def _init_uniform(module: nn.Module, hidden_size: int) -> None:
    # torch's default for recurrent layers: U(-1/sqrt(H), 1/sqrt(H)) for every parameter
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class RNNCell(nn.Module):
    """Vanilla RNN cell, same parameters and result as ``torch.nn.RNNCell``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"
    ) -> None:
        super().__init__()
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(hidden_size)) if bias else None
        _init_uniform(self, hidden_size)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """``x``: ``[B, input_size]``, ``h``: ``[B, hidden_size]`` (zeros if omitted)."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        return rnn_cell(
            x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity
        )


class LSTMCell(nn.Module):
    """LSTM cell from the gate equations, same parameters and result as ``torch.nn.LSTMCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size)) if bias else None
        _init_uniform(self, hidden_size)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """``x``: ``[B, input_size]``; ``state = (h, c)`` (zeros if omitted)."""
        if state is None:
            z = x.new_zeros(x.shape[0], self.hidden_size)
            state = (z, z)
        return lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(nn.Module):
    """GRU cell from the gate equations, same parameters and result as ``torch.nn.GRUCell``."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size)) if bias else None
        _init_uniform(self, hidden_size)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """``x``: ``[B, input_size]``, ``h``: ``[B, hidden_size]`` (zeros if omitted)."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        return gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class Recurrent(nn.Module):
    """A stack of RNN, LSTM or GRU layers unrolled over time with a Python loop.

    Same constructor arguments, parameter names and results as
    ``torch.nn.RNN`` / ``torch.nn.LSTM`` / ``torch.nn.GRU`` (``batch_first=True``);
    the point is readability: :meth:`forward` is the textbook loop over time steps.
    The state is ``h`` of shape ``[num_layers, B, H]`` for an RNN or a GRU and the pair
    ``(h, c)`` for an LSTM, as in torch.
    """

    def __init__(
        self,
        mode: Literal["rnn", "lstm", "gru"],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in ("rnn", "lstm", "gru"):
            raise ValueError(f"mode must be 'rnn', 'lstm' or 'gru', got {mode!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.mode, self.hidden_size, self.num_layers = mode, hidden_size, num_layers
        self.dropout = dropout
        gates = {"rnn": 1, "lstm": 4, "gru": 3}[mode]
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            self.register_parameter(
                f"weight_ih_l{layer}", nn.Parameter(torch.empty(gates * hidden_size, fan_in))
            )
            self.register_parameter(
                f"weight_hh_l{layer}", nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
            )
            self.register_parameter(
                f"bias_ih_l{layer}", nn.Parameter(torch.empty(gates * hidden_size))
            )
            self.register_parameter(
                f"bias_hh_l{layer}", nn.Parameter(torch.empty(gates * hidden_size))
            )
        _init_uniform(self, hidden_size)

    def _weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return tuple(  # type: ignore[return-value]
            getattr(self, f"{name}_l{layer}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x``: ``[B, T, input_size]`` → outputs ``[B, T, H]`` (last layer) and final state."""
        B, T, _ = x.shape
        L, H = self.num_layers, self.hidden_size
        if state is None:
            zeros = x.new_zeros(L, B, H)
            state = (zeros, zeros) if self.mode == "lstm" else zeros
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        layer_input = x
        for layer in range(L):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            if self.mode == "lstm":
                assert isinstance(state, tuple)
                h, c = state[0][layer], state[1][layer]
            else:
                assert isinstance(state, Tensor)
                h, c = state[layer], x.new_zeros(0)
            outputs = []
            for t in range(T):  # the recurrence: one step at a time, h carries the past
                if self.mode == "lstm":
                    h, c = lstm_cell(layer_input[:, t], (h, c), w_ih, w_hh, b_ih, b_hh)
                elif self.mode == "gru":
                    h = gru_cell(layer_input[:, t], h, w_ih, w_hh, b_ih, b_hh)
                else:
                    h = rnn_cell(layer_input[:, t], h, w_ih, w_hh, b_ih, b_hh)
                outputs.append(h)
            hs.append(h)
            cs.append(c)
            layer_input = torch.stack(outputs, dim=1)
            if self.dropout > 0 and self.training and layer < L - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        if self.mode == "lstm":
            return layer_input, (torch.stack(hs), torch.stack(cs))
        return layer_input, torch.stack(hs)


@dataclass
class RNNLMConfig:
    """Configuration of :class:`RNNLM`.

    ``block_size`` is the truncated-BPTT length: training windows are this long, so
    gradients flow back at most ``block_size`` steps.  ``impl="torch"`` runs the fused
    ``torch.nn.RNN``/``LSTM`` kernel, ``impl="formula"`` the readable :class:`Recurrent`
    loop; both have the same parameters (the tests check that they agree).
    ``forget_bias`` is the initial bias of the LSTM forget gate (ignored for ``"rnn"``):
    the larger it is, the closer :math:`f_t` starts to 1 and the longer memories (and
    gradients) survive before training has learnt when to forget.
    """

    vocab_size: int
    block_size: int = 64
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    n_embd: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    impl: Literal["torch", "formula"] = "torch"
    forget_bias: float = 1.0

    def __post_init__(self) -> None:
        if self.cell not in ("rnn", "lstm", "gru"):
            raise ValueError(f"cell must be 'rnn', 'lstm' or 'gru', got {self.cell!r}")
        if self.impl not in ("torch", "formula"):
            raise ValueError(f"impl must be 'torch' or 'formula', got {self.impl!r}")
        for name in ("vocab_size", "block_size", "n_embd", "hidden_size", "num_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class RNNLM(nn.Module):
    """Character language model: embedding → RNN/LSTM/GRU layers → linear layer to the vocabulary.

    Follows the book's LM interface: ``forward(idx, targets=None) -> (logits, loss)``
    with ``logits`` of shape ``[B, T, vocab_size]`` and ``loss`` the mean cross-entropy
    (``ignore_index=-100``).  :meth:`step` carries the hidden state from one call to the
    next, for generation and for truncated BPTT over consecutive windows.
    """

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.n_embd)
        dropout = c.dropout if c.num_layers > 1 else 0.0
        self.rnn: nn.Module
        if c.impl == "formula":
            self.rnn = Recurrent(c.cell, c.n_embd, c.hidden_size, c.num_layers, dropout)
        elif c.cell == "lstm":
            self.rnn = nn.LSTM(
                c.n_embd, c.hidden_size, c.num_layers, batch_first=True, dropout=dropout
            )
        elif c.cell == "gru":
            self.rnn = nn.GRU(
                c.n_embd, c.hidden_size, c.num_layers, batch_first=True, dropout=dropout
            )
        else:
            self.rnn = nn.RNN(
                c.n_embd, c.hidden_size, c.num_layers, batch_first=True, dropout=dropout
            )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_size, c.vocab_size)
        if c.cell == "lstm":
            self._init_forget_bias(c.forget_bias)

    @torch.no_grad()
    def _init_forget_bias(self, value: float) -> None:
        # A forget-gate bias of 1 makes sigma(f) ~ 0.73 at the start, so the cell state
        # is mostly kept and gradients survive more steps (Jozefowicz et al., 2015).
        H = self.config.hidden_size
        for name, p in self.rnn.named_parameters():
            if name.startswith("bias_ih"):
                p[H : 2 * H] = value
            elif name.startswith("bias_hh"):
                p[H : 2 * H] = 0.0

    def step(self, idx: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Logits ``[B, T, V]`` for ``idx`` starting from ``state``, and the final state."""
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape [batch, time], got {tuple(idx.shape)}")
        x = self.drop(self.embed(idx))
        out, state = self.rnn(x, state)
        return self.head(self.drop(out)), state

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``idx``: ``[B, T]`` token ids → ``(logits [B, T, V], mean cross-entropy or None)``."""
        logits, _ = self.step(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss


def gradient_norm_by_distance(model: RNNLM, idx: Tensor, target: Tensor) -> Tensor:
    """How strongly the loss at the **last** position depends on each earlier input.

    Returns a vector ``g`` of length ``T`` with ``g[k]`` the mean (over the batch) L2 norm
    of :math:`\\partial \\ell_T / \\partial x_{T-1-k}`, the gradient of the last position's
    cross-entropy with respect to the input embedding ``k`` steps back.  In a vanilla RNN
    this norm typically shrinks geometrically with ``k`` (vanishing gradients); the
    LSTM's additive cell update keeps it larger for longer.  ``idx``: ``[B, T]``,
    ``target``: ``[B]`` (the token that should follow ``idx``).
    """
    was_training = model.training
    model.eval()
    try:
        x = model.embed(idx).detach().requires_grad_(True)
        out, _ = model.rnn(x)
        logits = model.head(out[:, -1])
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was_training)
    norms = grad.norm(dim=-1).mean(dim=0)  # [T], position t
    return norms.flip(0).detach()  # index k = distance back from the last input
