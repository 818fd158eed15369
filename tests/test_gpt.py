"""GPT model: equality with Hugging Face GPT-2, causality, KV cache, parameter/FLOP counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmbook.models import GPT as ExportedGPT
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.utils import count_parameters

torch.set_num_threads(2)


def tiny(**kw: object) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()  # type: ignore[arg-type]


def to_hf(model: GPT):  # type: ignore[no-untyped-def]
    """The same weights in transformers.GPT2LMHeadModel (Conv1D stores W transposed)."""
    transformers = pytest.importorskip("transformers")
    c = model.config
    hf_cfg = transformers.GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.block_size,
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("lm_head"):
            continue
        name = "transformer." + k.replace("blocks.", "h.")
        if any(k.endswith(s) for s in ("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        sd[name] = v
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected
    assert all("lm_head" in m or "attn.bias" in m or "masked_bias" in m for m in missing)
    hf.tie_weights()
    return hf


def test_exported_from_models_package() -> None:
    assert ExportedGPT is GPT


def test_logits_and_loss_equal_huggingface_gpt2() -> None:
    model = tiny()
    hf = to_hf(model)
    idx = torch.randint(0, 50, (3, 16))
    logits, loss = model(idx, idx)
    out = hf(idx, labels=idx)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=1e-4)
    # HF shifts labels inside; ours takes already-shifted targets
    _, loss_shift = model(idx[:, :-1], idx[:, 1:])
    torch.testing.assert_close(loss_shift, out.loss, atol=1e-5, rtol=1e-5)


def test_loss_is_mean_cross_entropy_with_ignore_index() -> None:
    model = tiny()
    idx = torch.randint(0, 50, (2, 10))
    tgt = torch.randint(0, 50, (2, 10))
    tgt[0, :4] = -100
    logits, loss = model(idx, tgt)
    assert logits.shape == (2, 10, 50)
    expected = F.cross_entropy(logits.reshape(-1, 50), tgt.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    assert model(idx)[1] is None


def test_causal_future_tokens_do_not_change_past_logits() -> None:
    model = tiny()
    a = torch.randint(0, 50, (1, 12))
    b = a.clone()
    b[0, 8:] = (b[0, 8:] + 7) % 50
    la, lb = model(a)[0], model(b)[0]
    torch.testing.assert_close(la[0, :8], lb[0, :8])
    assert not torch.allclose(la[0, 8:], lb[0, 8:])


def test_weight_tying_and_parameter_count() -> None:
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    assert model.num_parameters() == count_parameters(model)
    c = model.config
    per_block = 12 * c.n_embd**2 + 13 * c.n_embd  # attn 4C²+4C, mlp 8C²+5C, 2 LN 4C
    expected = (
        c.vocab_size * c.n_embd + c.block_size * c.n_embd + c.n_layer * per_block + 2 * c.n_embd
    )
    assert model.num_parameters() == expected
    assert (
        model.num_parameters(non_embedding=True)
        == expected - (c.vocab_size + c.block_size) * c.n_embd
    )
    untied = tiny(tie_weights=False)
    assert untied.num_parameters() == expected + c.vocab_size * c.n_embd


def test_flops_per_token_formula() -> None:
    model = tiny()
    c = model.config
    n_matmul = c.n_layer * 12 * c.n_embd**2 + c.vocab_size * c.n_embd
    assert model.flops_per_token() == 6 * n_matmul + 12 * c.n_layer * c.n_embd * c.block_size
    assert (
        model.flops_per_token(seq_len=8, training=False)
        == 2 * n_matmul + 4 * c.n_layer * c.n_embd * 8
    )


@pytest.mark.parametrize("chunks", [[16], [1] * 16, [5, 1, 1, 9], [7, 9]])
def test_kv_cache_matches_full_forward(chunks: list[int]) -> None:
    model = tiny()
    idx = torch.randint(0, 50, (2, 16))
    full = model(idx)[0]
    cache = model.new_cache(2)
    outs, pos = [], 0
    for n in chunks:
        outs.append(model(idx[:, pos : pos + n], cache=cache)[0])
        pos += n
    assert cache.length == 16
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=1e-4)


def test_kv_cache_reorder_selects_batch_rows() -> None:
    model = tiny()
    idx = torch.randint(0, 50, (3, 6))
    cache = model.new_cache(3)
    model(idx[:, :5], cache=cache)
    cache.reorder(torch.tensor([2, 2, 0]))
    step = model(idx[[2, 2, 0], 5:], cache=cache)[0]
    torch.testing.assert_close(step[:, 0], model(idx[[2, 2, 0]])[0][:, 5], atol=1e-5, rtol=1e-4)


def test_too_long_input_is_a_clear_error() -> None:
    model = tiny()
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    cache = model.new_cache(1)
    model(torch.zeros(1, 16, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="crop the input"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.5)
    with pytest.raises(ValueError, match=r"unknown GPTConfig key\(s\) \['n_layers'\]"):
        GPTConfig.from_dict({"n_layers": 2})
    assert GPTConfig.from_dict(GPTConfig().to_dict()) == GPTConfig()


def test_dropout_only_in_training_mode() -> None:
    model = tiny(dropout=0.5)
    idx = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.allclose(model(idx)[0], model(idx)[0])


def test_backward_reaches_every_parameter() -> None:
    model = tiny().train()
    idx = torch.randint(0, 50, (2, 8))
    model(idx, idx)[1].backward()  # type: ignore[union-attr]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
