import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt

from llmbook.evaluation.interpret import attention_maps, saliency

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model():
    return tiny_gpt(vocab_size=30, block_size=10, n_layer=2)


def test_maps_reproduce_the_attention_output(model):
    idx = torch.randint(0, 30, (1, 8))
    maps = attention_maps(model, idx)
    assert maps.shape == (2, 2, 8, 8)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 8))
    assert torch.all(maps.triu(1) == 0)
    # the first layer's attention applied to its values gives what SDPA computes
    attn = model.blocks[0].attn
    x = model.blocks[0].ln_1(model.wte(idx) + model.wpe(torch.arange(8)))
    q, k, v = attn.c_attn(x).split(16, dim=2)
    v = v.view(1, 8, 2, 8).transpose(1, 2)
    q = q.view(1, 8, 2, 8).transpose(1, 2)
    k = k.view(1, 8, 2, 8).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.no_grad():
        torch.testing.assert_close(maps[0][None] @ v, ref, atol=1e-5, rtol=1e-5)


def test_saliency_is_causal_and_positive(model):
    idx = torch.randint(0, 30, (1, 8))
    s = saliency(model, idx, position=4, target=7)
    assert s.shape == (8,) and torch.all(s[5:] == 0) and torch.all(s[:5] > 0)
    gx = saliency(model, idx, position=4, target=7, method="grad_x_input")
    assert gx.shape == (8,) and torch.all(gx[5:] == 0)
    with pytest.raises(IndexError):
        saliency(model, idx, position=8)
    with pytest.raises(ValueError, match="one sequence"):
        attention_maps(model, torch.zeros(2, 3, dtype=torch.long))


def test_grad_x_input_predicts_the_effect_of_a_small_change(model):
    """First-order check: scaling one embedding by (1 - eps) changes log p by about -eps * g·x."""
    idx = torch.tensor([[3, 5, 7, 9, 11]])
    gx = saliency(model, idx, position=4, target=2, method="grad_x_input")
    eps = 1e-3

    def logp(scale_pos=None):
        with torch.no_grad():
            e = model.wte(idx).clone()
            if scale_pos is not None:
                e[0, scale_pos] *= 1 - eps
            x = e + model.wpe(torch.arange(5))
            for b in model.blocks:
                x = b(x)
            return torch.log_softmax(model.lm_head(model.ln_f(x))[0, 4].double(), -1)[2].item()

    base = logp()
    for pos in range(5):
        assert (logp(pos) - base) == pytest.approx(-eps * gx[pos].item(), abs=2e-5)
