import pytest
import torch

from llmbook.models.gpt import GPT, GPTConfig
from llmbook.training.compute import (
    GPUS,
    estimate_seconds,
    flops_per_token,
    param_breakdown,
    param_count,
    training_flops,
    training_memory,
)
from llmbook.utils import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIGS = [
    GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=2, n_embd=32),
    GPTConfig(vocab_size=257, block_size=16, n_layer=3, n_head=4, n_embd=48, bias=False),
    GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=1, n_embd=16, tie_weights=False),
    GPTConfig(
        vocab_size=64, block_size=24, n_layer=2, n_head=3, n_embd=24, bias=False, tie_weights=False
    ),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_param_count_equals_the_model(cfg):
    model = GPT(cfg)
    assert param_count(cfg) == count_parameters(model)
    assert param_count(cfg, non_embedding=True) == model.num_parameters(non_embedding=True)


def test_param_count_from_dict_and_breakdown_sums():
    cfg = CONFIGS[0]
    d = {k: getattr(cfg, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}
    assert param_count(d) == param_count(cfg)
    p = param_breakdown(cfg)
    assert p["per_layer"] * cfg.n_layer + p["token_embedding"] + p["position_embedding"] + (
        2 * cfg.n_embd
    ) == param_count(cfg)


def test_large_model_is_about_12_L_d2():
    cfg = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    # GPT-2 small: 124M parameters with tied embeddings
    assert param_count(cfg) == pytest.approx(124.4e6, rel=0.01)
    assert param_count(cfg, non_embedding=True) == pytest.approx(12 * 12 * 768**2, rel=0.01)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_full_attention_flops_match_the_models_own_estimate(cfg):
    assert flops_per_token(cfg, attention="full")["total"] == GPT(cfg).flops_per_token()
    f = flops_per_token(cfg)
    assert f["attention"] == 6 * cfg.n_layer * cfg.block_size * cfg.n_embd


def test_training_flops_is_6ND_without_attention():
    cfg = CONFIGS[0]
    n_matmul = cfg.n_layer * 12 * cfg.n_embd**2 + cfg.vocab_size * cfg.n_embd
    assert training_flops(cfg, 1000, include_attention=False) == 6 * n_matmul * 1000


def test_training_flops_counts_real_multiply_adds():
    """Count the FLOPs of one forward pass with torch's FlopCounterMode; ×3 for training.

    On the CPU the fused attention kernel is not counted by FlopCounterMode, so the
    measurement is the dense (matrix-multiply) part of the estimate.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cfg = GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg)
    x = torch.randint(0, 100, (2, 32))
    with FlopCounterMode(display=False) as fc:
        model(x)
    measured = fc.get_total_flops() * 3 / x.numel()
    assert measured == pytest.approx(flops_per_token(cfg)["dense"], rel=1e-6)


def test_memory_components():
    cfg = CONFIGS[0]
    n = param_count(cfg)
    m32 = training_memory(cfg, 4, dtype="fp32")
    assert m32["weights"] == 4 * n and m32["gradients"] == 4 * n and m32["optimizer"] == 8 * n
    m16 = training_memory(cfg, 4, dtype="bf16")
    assert m16["weights"] == 6 * n and m16["gradients"] == 2 * n
    ck = training_memory(cfg, 4, activation_checkpointing=True)
    assert ck["activations"] < m32["activations"]
    assert training_memory(cfg, 8)["activations"] == pytest.approx(2 * m32["activations"])
    assert training_memory(cfg, 4, optimizer="sgd")["optimizer"] == 0


def test_estimate_seconds_and_gpu_table():
    h100 = GPUS["H100-SXM"]
    assert h100.peak_tflops > GPUS["A100-80GB"].peak_tflops > GPUS["T4"].peak_tflops
    assert estimate_seconds(1e15, 1e12, mfu=0.5) == pytest.approx(2000)


def test_errors_are_explicit():
    with pytest.raises(TypeError, match="lacks"):
        param_count({"vocab_size": 10})
    with pytest.raises(ValueError, match="unknown dtype"):
        training_memory(CONFIGS[0], 1, dtype="fp64")
    with pytest.raises(ValueError, match="mfu"):
        estimate_seconds(1.0, 1.0, mfu=0)
    with pytest.raises(ValueError, match="attention"):
        flops_per_token(CONFIGS[0], attention="half")


def test_plan_training_reproduces_published_gpu_hours() -> None:
    from llmbook.training.compute import plan_training

    # Llama 3.1 405B: 15.6T tokens, 3.8e25 FLOPs, 38-43% MFU on H100s (Grattafiori et
    # al. 2024); 30.84M H100 GPU-hours (Llama 3.1 model card).
    p = plan_training(405e9, 15.6e12, "H100-SXM", n_gpus=16384, mfu=0.40)
    assert abs(p.flops / 3.8e25 - 1) < 0.02
    assert 0.8 < p.gpu_hours / 30.84e6 < 1.0  # the card also counts restarts and evals
    assert 60 < p.days < 75
    # LLaMA 65B: 1.4T tokens, 1,022,362 A100-80GB GPU-hours (Touvron et al. 2023)
    q = plan_training(65.2e9, 1.4e12, "A100-80GB", n_gpus=2048, mfu=0.40)
    assert 1.0 < q.gpu_hours / 1_022_362 < 1.25  # they ran at ~48% MFU
    assert plan_training(1e9, 1e9, n_gpus=2).days == pytest.approx(plan_training(1e9, 1e9).days / 2)
    with pytest.raises(ValueError, match="unknown GPU"):
        plan_training(1e9, 1e9, "TPU")
    with pytest.raises(ValueError, match="n_gpus"):
        plan_training(1e9, 1e9, n_gpus=0)
    with pytest.raises(ValueError, match="positive"):
        plan_training(0, 1e9)


def test_zero_memory_matches_the_zero_paper() -> None:
    from llmbook.training.compute import pipeline_bubble, zero_memory_per_gpu

    # Rajbhandari et al. (2020), figure 1: a 7.5B model on 64 GPUs, K = 12
    want = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}
    for stage, gb in want.items():
        assert zero_memory_per_gpu(7.5e9, 64, stage) / 1e9 == pytest.approx(gb, abs=0.05)
    assert zero_memory_per_gpu(7.5e9, 1, 3) == zero_memory_per_gpu(7.5e9, 1, 0)
    with pytest.raises(ValueError, match="stage"):
        zero_memory_per_gpu(1e9, 8, 4)
    assert pipeline_bubble(1, 8) == 0.0
    assert pipeline_bubble(4, 4) == pytest.approx(3 / 7)
    assert pipeline_bubble(4, 100) < 0.03
    with pytest.raises(ValueError):
        pipeline_bubble(0, 4)
