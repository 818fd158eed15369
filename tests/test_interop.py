from functools import partial

import pytest
import torch
from conftest import tiny_gpt

pytest.importorskip("transformers")

from llmbook.models.hf import from_hf, to_hf, to_hf_tokenizer  # noqa: E402
from llmbook.text.tokenizers import CharTokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# noise: every weight moves away from its initial value (biases ≠ 0)
random_gpt = partial(tiny_gpt, vocab_size=40, block_size=12, n_layer=2, noise=0.1)


@pytest.mark.parametrize("kw", [{}, {"bias": False}, {"tie_weights": False}])
def test_logits_identical_both_ways(kw):
    model = random_gpt(**kw)
    x = torch.randint(0, 40, (3, 12))
    hf = to_hf(model)
    with torch.no_grad():
        ours = model(x)[0]
        theirs = hf(x).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    back = from_hf(hf)
    assert back.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], ours, atol=1e-5, rtol=1e-5)


def test_tying_is_preserved():
    hf = to_hf(random_gpt())
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    hf2 = to_hf(random_gpt(tie_weights=False))
    assert hf2.lm_head.weight.data_ptr() != hf2.transformer.wte.weight.data_ptr()


def test_from_hf_random_gpt2_then_back():
    import transformers

    torch.manual_seed(1)
    cfg = transformers.GPT2Config(
        vocab_size=30,
        n_positions=10,
        n_embd=12,
        n_layer=1,
        n_head=3,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    x = torch.randint(0, 30, (2, 10))
    ours = from_hf(hf)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], hf(x).logits, atol=1e-5, rtol=1e-5)


def test_greedy_generate_agrees():
    model = random_gpt()
    hf = to_hf(model, pad_token_id=0)
    x = torch.tensor([[5, 6, 7]])
    out = hf.generate(x, max_new_tokens=5, do_sample=False)
    ids = x
    with torch.no_grad():
        for _ in range(5):
            nxt = model(ids)[0][:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
    assert out.tolist() == ids.tolist()


def test_unsupported_gpt2_variants_are_rejected():
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=30,
        n_positions=10,
        n_embd=12,
        n_layer=1,
        n_head=3,
        activation_function="relu",
        bos_token_id=None,
        eos_token_id=None,
    )
    with pytest.raises(ValueError, match="activation_function"):
        from_hf(transformers.GPT2LMHeadModel(cfg))
    with pytest.raises(TypeError, match="converts llmbook.models.gpt.GPT"):
        to_hf(torch.nn.Linear(2, 2))


def test_tokenizer_same_ids():
    tok = CharTokenizer.fit(["床前明月光，疑是地上霜。\n"])
    hf_tok = to_hf_tokenizer(tok)
    s = "床前明月光，\n疑是x"
    assert hf_tok(s)["input_ids"] == tok.encode(s)
    assert hf_tok.decode(tok.encode("明月光")) == "明月光"


def test_mean_hidden_states_ignores_padding():
    from llmbook.models.hf import mean_hidden_states

    model, tok = tiny_gpt(texts=["床前明月光疑是地上霜"], block_size=12, n_embd=8)
    hf = to_hf(model)
    together = mean_hidden_states(hf, tok, ["床前明月光", "霜"])
    alone = mean_hidden_states(hf, tok, ["霜"])
    assert together.shape == (2, 8)
    assert abs(together[1] - alone[0]).max() < 1e-5
