"""The shared learning-rate schedule and optimizer step (llmbook.optim)."""

from __future__ import annotations

import math

import pytest
import torch

from llmbook.optim import optimizer_step, warmup_cosine


def test_warmup_then_cosine_to_min_lr() -> None:
    kw = dict(lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert [warmup_cosine(s, **kw) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)  # half-way down the cosine
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)
    assert warmup_cosine(500, **kw) == pytest.approx(0.1)  # stays at min_lr
    lrs = [warmup_cosine(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    # no warm-up, decay to 0: the plain cosine
    for s in range(0, 40, 7):
        expected = 0.5 * 3e-3 * (1 + math.cos(math.pi * s / 40))
        assert warmup_cosine(s, lr=3e-3, total_steps=40) == pytest.approx(expected)
    assert warmup_cosine(17, lr=0.2, total_steps=40, min_lr=0.2) == pytest.approx(0.2)


def _pair() -> tuple[torch.nn.Linear, torch.nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    return a, b, torch.randn(8, 4)


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_optimizer_step_is_backward_clip_step_zero_grad(clip: float) -> None:
    a, b, x = _pair()
    opt_a = torch.optim.AdamW(a.parameters(), lr=0.1)
    opt_b = torch.optim.AdamW(b.parameters(), lr=0.5)
    for _ in range(3):
        loss = (a(x) ** 2).mean()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(a.parameters(), clip)
        opt_a.step()
        opt_a.zero_grad(set_to_none=True)
        optimizer_step(b, opt_b, (b(x) ** 2).mean(), lr=0.1, clip=clip)
    assert opt_b.param_groups[0]["lr"] == 0.1
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert q.grad is None


def test_accumulated_gradients_and_a_grad_scaler() -> None:
    a, b, x = _pair()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for half in (x[:4], x[4:]):  # two micro-batches, summed by the caller
        (a(half) ** 2).mean().backward()
        scaler.scale((b(half) ** 2).mean()).backward()
    torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5)
    opt_a.step()
    optimizer_step(list(b.parameters()), opt_b, None, clip=0.5, scaler=scaler)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)  # the scale is divided out before clipping
        assert q.grad is None
