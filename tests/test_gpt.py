"""GPT model: equality with Hugging Face GPT-2, causality, KV cache, parameter/FLOP counts."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt

from llmbook.models import GPT as ExportedGPT
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.utils import count_parameters

# seeded, in eval mode; keyword arguments override the config (e.g. tie_weights=False)
tiny = partial(tiny_gpt, vocab_size=50, n_layer=2, n_embd=32)


# ON PURPOSE a second GPT -> GPT-2 converter next to llmbook.models.hf.to_hf: this one is an
# independent re-implementation (written from the GPT-2 layout, sharing no code) used as an
# oracle, to check the book's GPT and models/hf.py against transformers.  Do not replace it
# by models/hf.py, or the tests would check that code against itself.
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


def test_models_hf_converter_agrees_with_the_oracle() -> None:
    pytest.importorskip("transformers")  # the hf extra (absent in `make lowest`)
    from llmbook.models.hf import to_hf as book_to_hf

    model = tiny()
    ours, oracle = book_to_hf(model).state_dict(), to_hf(model).state_dict()
    assert set(ours) == set(oracle)
    for name, tensor in oracle.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0, msg=name)


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


def test_hidden_states_are_what_the_lm_head_reads() -> None:
    model = tiny()
    idx = torch.randint(0, 50, (2, 12))
    seen: list[torch.Tensor] = []
    hook = model.lm_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        logits, _ = model(idx)
    finally:
        hook.remove()
    h = model.hidden_states(idx)
    assert h.shape == (2, 12, 32)
    torch.testing.assert_close(h, seen[0], rtol=0, atol=0)
    torch.testing.assert_close(model.lm_head(h), logits, rtol=0, atol=0)


def test_attention_maps_are_causal_and_equal_a_manual_softmax() -> None:
    model = tiny()
    L, H, C = model.config.n_layer, model.config.n_head, model.config.n_embd
    idx = torch.randint(0, 50, (2, 12))
    maps = model.attention_maps(idx)
    assert maps.shape == (L, 2, H, 12, 12)  # [layer, batch, head, query, key]
    torch.testing.assert_close(maps.sum(-1), torch.ones(L, 2, H, 12))
    assert torch.all(maps.triu(1) == 0)  # no position reads from a later one
    # the last layer, by hand: softmax(Q K^T / sqrt(D)) on that layer's real input
    inputs: list[torch.Tensor] = []
    attn = model.blocks[-1].attn
    hook = attn.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    try:
        model(idx)
    finally:
        hook.remove()
    q, k, _ = attn.c_attn(inputs[0]).split(C, dim=2)
    q = q.view(2, 12, H, C // H).transpose(1, 2)
    k = k.view(2, 12, H, C // H).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) / (C // H) ** 0.5
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    manual = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    torch.testing.assert_close(maps[-1], manual.detach(), atol=1e-6, rtol=1e-5)
    # spelling the attention out (to keep the weights) computes what the fused kernel does
    weights: list[torch.Tensor] = []
    explicit = model.hidden_states(idx, attention=weights)
    assert len(weights) == L
    torch.testing.assert_close(explicit, model.hidden_states(idx), atol=1e-5, rtol=1e-5)


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
