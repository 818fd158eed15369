"""RNN/LSTM cells and layers from their formulas agree with torch.nn.RNN/LSTM."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmbook.models.rnn import (
    RNNLM,
    GRUCell,
    LSTMCell,
    Recurrent,
    RNNCell,
    RNNLMConfig,
    gradient_norm_by_distance,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _copy(dst: nn.Module, src: nn.Module) -> None:
    missing, unexpected = dst.load_state_dict(src.state_dict(), strict=True)
    assert not missing and not unexpected


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_equals_torch(nonlinearity: str) -> None:
    torch.manual_seed(0)
    ref = nn.RNNCell(5, 7, nonlinearity=nonlinearity)
    mine = RNNCell(5, 7, nonlinearity=nonlinearity)
    _copy(mine, ref)
    x, h = torch.randn(3, 5), torch.randn(3, 7)
    torch.testing.assert_close(mine(x, h), ref(x, h))
    torch.testing.assert_close(mine(x), ref(x))


def test_lstm_cell_equals_torch_forward_and_grad() -> None:
    torch.manual_seed(1)
    ref, mine = nn.LSTMCell(4, 6), LSTMCell(4, 6)
    _copy(mine, ref)
    x = torch.randn(2, 4, requires_grad=True)
    h, c = torch.randn(2, 6), torch.randn(2, 6)
    h1, c1 = mine(x, (h, c))
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)
    (g1,) = torch.autograd.grad((h1.sum() + c1.pow(2).sum()), x)
    (g2,) = torch.autograd.grad((h2.sum() + c2.pow(2).sum()), x)
    torch.testing.assert_close(g1, g2)


def test_gru_cell_equals_torch_forward_and_grad() -> None:
    torch.manual_seed(1)
    ref, mine = nn.GRUCell(4, 6), GRUCell(4, 6)
    _copy(mine, ref)
    x = torch.randn(2, 4, requires_grad=True)
    h = torch.randn(2, 6)
    h1, h2 = mine(x, h), ref(x, h)
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(mine(x), ref(x))
    (g1,) = torch.autograd.grad(h1.pow(2).sum(), x)
    (g2,) = torch.autograd.grad(h2.pow(2).sum(), x)
    torch.testing.assert_close(g1, g2)
    # the update gate interpolates: with z = 1 everywhere the state passes unchanged
    with torch.no_grad():
        mine.bias_ih[6:12] = 50.0
    torch.testing.assert_close(mine(x, h), h, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_recurrent_stack_equals_torch(mode: str, num_layers: int) -> None:
    torch.manual_seed(2)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[mode]
    ref = cls(3, 5, num_layers, batch_first=True)
    mine = Recurrent(mode, 3, 5, num_layers)  # type: ignore[arg-type]
    _copy(mine, ref)  # same parameter names as torch
    x = torch.randn(4, 9, 3, requires_grad=True)
    out1, st1 = mine(x)
    out2, st2 = ref(x)
    torch.testing.assert_close(out1, out2)
    if mode == "lstm":
        torch.testing.assert_close(st1[0], st2[0])
        torch.testing.assert_close(st1[1], st2[1])
    else:
        torch.testing.assert_close(st1, st2)
    (g1,) = torch.autograd.grad(out1[:, -1].sum(), x)
    (g2,) = torch.autograd.grad(out2[:, -1].sum(), x)
    torch.testing.assert_close(g1, g2)
    # continuing from a given state also agrees
    out3, _ = mine(x, st2)
    out4, _ = ref(x, st2)
    torch.testing.assert_close(out3, out4)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_lm_interface_and_impls_agree(cell: str) -> None:
    torch.manual_seed(3)
    cfg = RNNLMConfig(
        vocab_size=11, block_size=8, cell=cell, n_embd=6, hidden_size=10, num_layers=2
    )  # type: ignore[arg-type]
    fast = RNNLM(cfg)
    slow = RNNLM(RNNLMConfig(**{**cfg.__dict__, "impl": "formula"}))
    _copy(slow, fast)
    idx = torch.randint(0, 11, (3, 8))
    tgt = torch.randint(0, 11, (3, 8))
    tgt[0, :4] = -100
    logits, loss = fast(idx, tgt)
    assert logits.shape == (3, 8, 11)
    logits2, loss2 = slow(idx, tgt)
    torch.testing.assert_close(logits, logits2)
    assert loss is not None and loss2 is not None
    ref = nn.functional.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ref)
    assert fast(idx)[1] is None


def test_step_carries_state_like_one_long_call() -> None:
    torch.manual_seed(4)
    model = RNNLM(RNNLMConfig(vocab_size=9, n_embd=4, hidden_size=8))
    idx = torch.randint(0, 9, (2, 10))
    full, _ = model.step(idx)
    a, st = model.step(idx[:, :6])
    b, _ = model.step(idx[:, 6:], st)
    torch.testing.assert_close(torch.cat([a, b], 1), full)


def test_vanishing_gradient_rnn_vs_lstm() -> None:
    torch.manual_seed(5)
    idx = torch.randint(0, 20, (16, 60))
    target = torch.randint(0, 20, (16,))
    g = {}
    for cell in ("rnn", "lstm"):
        torch.manual_seed(6)
        m = RNNLM(RNNLMConfig(vocab_size=20, cell=cell, n_embd=16, hidden_size=32))  # type: ignore[arg-type]
        g[cell] = gradient_norm_by_distance(m, idx, target)
        assert g[cell].shape == (60,)
    # the RNN's gradient decays by orders of magnitude over 60 steps
    assert g["rnn"][50:].mean() < 1e-3 * g["rnn"][:3].mean()


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="cell must be"):
        RNNLMConfig(vocab_size=5, cell="transformer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        RNNLMConfig(vocab_size=5, hidden_size=0)
    with pytest.raises(ValueError, match="mode must be"):
        Recurrent("transformer", 2, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \[batch, time\]"):
        RNNLM(RNNLMConfig(vocab_size=5))(torch.zeros(3, dtype=torch.long))


def test_forget_bias_sets_only_the_forget_gate() -> None:
    m = RNNLM(RNNLMConfig(vocab_size=5, n_embd=3, hidden_size=4, num_layers=2, forget_bias=3.0))
    for layer in range(2):
        b_ih = getattr(m.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(m.rnn, f"bias_hh_l{layer}")
        assert torch.all(b_ih[4:8] == 3.0) and torch.all(b_hh[4:8] == 0.0)
        assert not torch.all(b_ih[:4] == 3.0)  # the other gates keep their random init
