import numpy as np
import pytest

from llmbook.experiments.scaling import fit_loglog, fit_power_law, gpt_family, run_scaling
from llmbook.training.compute import param_count

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_recovers_a_known_power_law():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 3e6])
    loss = 40.0 * n**-0.3 + 1.5
    law = fit_power_law(n, loss)
    assert law.alpha == pytest.approx(0.3, rel=0.02)
    assert law.c == pytest.approx(1.5, rel=0.02)
    assert law.r2 > 0.999
    pure = fit_loglog(n, 7.0 * n**-0.076)
    assert pure.alpha == pytest.approx(0.076, rel=1e-6)
    assert pure.a == pytest.approx(7.0, rel=1e-6)


def test_offset_fit_is_at_least_as_good_as_the_line():
    rng = np.random.default_rng(0)
    n = np.geomspace(1e4, 1e6, 6)
    loss = 10 * n**-0.2 + 2.0 + rng.normal(0, 0.01, 6)
    assert fit_power_law(n, loss).r2 >= fit_loglog(n, loss).r2 - 1e-9


def test_fit_errors():
    with pytest.raises(ValueError, match="at least 4"):
        fit_power_law([1, 2, 3], [3, 2, 1])
    with pytest.raises(ValueError, match="positive"):
        fit_loglog([1, 0], [1, 2])


def test_family_and_a_tiny_run():
    cfgs = gpt_family([16, 32], vocab_size=20, block_size=8, n_layer=1, head_size=8)
    assert [c.n_head for c in cfgs] == [2, 4]
    # a learnable sequence: a repeating pattern
    ids = np.tile(np.arange(20), 200)
    runs = run_scaling(
        cfgs, ids, ids[:400], tokens=8 * 8 * 30, batch_size=8, progress=False, eval_batches=2
    )
    assert [r.n_params for r in runs] == [param_count(c) for c in cfgs]
    assert all(r.steps == 30 and r.tokens == 8 * 8 * 30 for r in runs)
    assert all(r.val_loss < np.log(20) for r in runs)  # better than uniform
    budget = 6 * runs[1].n_params * 2000  # C = 6ND: 2000 tokens for the larger model
    fixed = run_scaling(
        cfgs, ids, ids[:400], flops=budget, batch_size=8, progress=False, eval_batches=1
    )
    assert fixed[0].steps > fixed[1].steps  # the smaller model sees more tokens
    assert fixed[1].steps == 2000 // (8 * 8)  # whole batches of 8 windows of 8 tokens
    for r in fixed:  # D = C / 6N, rounded down to whole batches; the reported C is 6N·D
        assert r.steps == int(budget / (6 * r.n_params)) // 64 and r.tokens == 64 * r.steps
        assert r.flops == 6 * r.n_params * r.tokens <= budget
    with pytest.raises(ValueError, match="exactly one"):
        run_scaling(cfgs, ids, ids, progress=False)
