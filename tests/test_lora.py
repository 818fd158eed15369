"""LoRA: zero-initialised update, merge == unmerged forward, unmerge restores, freezing."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_gpt
from torch import nn

from llmbook.models.lora import (
    LoRALinear,
    apply_lora,
    lora_parameters,
    mark_trainable,
    merge_lora,
    trainable_share,
    unmerge_lora,
)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"qkv": nn.Linear(16, 48), "proj": nn.Linear(48, 16)}) for _ in range(2)
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = x + b["proj"](torch.tanh(b["qkv"](x)))
        return self.head(x)


def _randomise_lora(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_starts_equal_to_base_and_targets_match_by_suffix() -> None:
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(5, 16)
    before = net(x)
    names = apply_lora(net, ["qkv", "proj"], r=2, alpha=4)
    assert names == ["blocks.0.qkv", "blocks.0.proj", "blocks.1.qkv", "blocks.1.proj"]
    assert isinstance(net.blocks[0]["qkv"], LoRALinear)
    assert not isinstance(net.head, LoRALinear)
    torch.testing.assert_close(net(x), before)  # B = 0 at initialisation


def test_merged_output_equals_unmerged_and_unmerge_restores() -> None:
    torch.manual_seed(0)
    net = _Net()
    apply_lora(net, ["qkv", "proj"], r=4, alpha=8)
    _randomise_lora(net)
    net.eval()
    x = torch.randn(7, 16)
    w0 = net.blocks[1]["qkv"].base.weight.clone()
    unmerged = net(x)
    assert merge_lora(net) == 4
    assert net.blocks[1]["qkv"].merged
    assert not torch.allclose(net.blocks[1]["qkv"].base.weight, w0)
    torch.testing.assert_close(net(x), unmerged, rtol=1e-5, atol=1e-5)
    unmerge_lora(net)
    torch.testing.assert_close(net.blocks[1]["qkv"].base.weight, w0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(net(x), unmerged, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="not merged"):
        net.blocks[0]["qkv"].unmerge()
    merge_lora(net)
    with pytest.raises(RuntimeError, match="already merged"):
        net.blocks[0]["qkv"].merge()


def test_update_is_scaled_low_rank() -> None:
    layer = LoRALinear(nn.Linear(10, 6), r=2, alpha=6)
    _randomise_lora(nn.Sequential(layer))
    delta = layer.delta_weight()
    assert delta.shape == (6, 10)
    assert torch.linalg.matrix_rank(delta) == 2
    torch.testing.assert_close(delta, 3.0 * layer.lora_B @ layer.lora_A)
    x = torch.randn(3, 10)
    torch.testing.assert_close(layer(x), layer.base(x) + x @ delta.T)


def test_only_lora_and_marked_parameters_train() -> None:
    torch.manual_seed(0)
    net = _Net()
    apply_lora(net, ["qkv"], r=2)
    mark_trainable(net, ["head."])
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {
        "blocks.0.qkv.lora_A",
        "blocks.0.qkv.lora_B",
        "blocks.1.qkv.lora_A",
        "blocks.1.qkv.lora_B",
        "head.weight",
        "head.bias",
    }
    loss = net(torch.randn(4, 16)).pow(2).sum()
    loss.backward()
    assert net.blocks[0]["qkv"].base.weight.grad is None
    assert net.blocks[0]["proj"].weight.grad is None
    assert net.blocks[0]["qkv"].lora_B.grad is not None
    n_train, n_total, share = trainable_share(net)
    assert n_train == 2 * (2 * 16 + 48 * 2) + 16 * 3 + 3
    assert share == pytest.approx(n_train / n_total)


def test_share_is_small_for_wide_layers() -> None:
    net = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    apply_lora(net, ["0", "2"], r=1)
    assert trainable_share(net)[2] < 0.01


def test_errors_name_the_problem() -> None:
    net = _Net()
    with pytest.raises(ValueError, match="no nn.Linear module matches"):
        apply_lora(net, ["c_attn"])
    with pytest.raises(ValueError, match="positive integer"):
        LoRALinear(nn.Linear(4, 4), r=0)
    with pytest.raises(ValueError, match="exceeds"):
        LoRALinear(nn.Linear(4, 4), r=5)
    with pytest.raises(TypeError, match="wraps nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no LoRALinear"):
        merge_lora(_Net())
    with pytest.raises(ValueError, match="no parameter name starts with"):
        mark_trainable(net, ["classifier"])


@pytest.mark.parametrize("r, alpha", [(4, 8.0), (2, 3.0)])
def test_same_weights_give_the_logits_of_peft(r: int, alpha: float) -> None:
    """Oracle: Hugging Face ``peft`` LoRA on the same GPT with the same A and B.

    peft computes ``base(x) + lora_B(lora_A(dropout(x))) * lora_alpha / r`` with
    ``lora_A.weight`` ``[r, in]`` and ``lora_B.weight`` ``[out, r]``: our ``lora_A``/``lora_B``
    map onto them one to one.  Compared unmerged, merged and unmerged again.
    """
    peft = pytest.importorskip("peft")
    from peft.tuners.lora import LoraLayer

    ours = tiny_gpt(vocab_size=30, n_layer=2, n_embd=32, noise=0.1)
    theirs = copy.deepcopy(ours)
    targets = ["c_attn", "c_proj"]
    names = apply_lora(ours, targets, r=r, alpha=alpha)
    _randomise_lora(ours)  # B = 0 would make every comparison trivially equal
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    theirs = peft.inject_adapter_in_model(config, theirs)
    layers = {n: m for n, m in theirs.named_modules() if isinstance(m, LoraLayer)}
    assert sorted(layers) == sorted(names)  # the same name matching
    with torch.no_grad():
        for name, layer in layers.items():
            mine = ours.get_submodule(name)
            assert layer.scaling["default"] == mine.scaling == alpha / r
            layer.lora_A["default"].weight.copy_(mine.lora_A)
            layer.lora_B["default"].weight.copy_(mine.lora_B)
    x = torch.randint(0, 30, (3, 16))

    def check() -> None:
        with torch.no_grad():
            torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-5)
        for name, layer in layers.items():
            w = layer.get_base_layer().weight
            torch.testing.assert_close(ours.get_submodule(name).weight, w, rtol=1e-6, atol=1e-6)

    base = copy.deepcopy(ours.get_submodule(names[0]).weight)
    check()
    merge_lora(ours)
    for layer in layers.values():
        layer.merge()
    check()
    assert not torch.allclose(ours.get_submodule(names[0]).weight, base)  # really merged
    unmerge_lora(ours)
    for layer in layers.values():
        layer.unmerge()
    check()
    torch.testing.assert_close(ours.get_submodule(names[0]).weight, base, rtol=0, atol=1e-6)


def test_unwrap_lora_restores_plain_linears_with_the_tuned_weights() -> None:
    from llmbook.models.lora import LoRALinear, apply_lora, unwrap_lora

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    apply_lora(model, ["0", "2"], r=2, alpha=4.0)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            nn.init.normal_(m.lora_B)  # a non-zero update
    x = torch.randn(4, 6)
    want = model(x)
    assert unwrap_lora(model) == 2
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert isinstance(model[0], nn.Linear) and isinstance(model[2], nn.Linear)
    torch.testing.assert_close(model(x), want)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
