"""DPO and GRPO from scratch, and LoRA in the trainers (SFT, DPO, GRPO)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import tiny_gpt

from llmbook.models.gpt import GPT
from llmbook.models.lora import lora_parameters, merge_lora, unmerge_lora
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.dpo import (
    PreferencePair,
    build_preference_pairs,
    dpo_loss,
    sequence_logprobs,
    train_dpo,
)
from llmbook.training.grpo import (
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    k3_kl,
    train_grpo,
)
from llmbook.training.policy import (
    collate_responses,
    encode_response,
    prepare_trainable,
    sample_responses,
    score_samples,
)
from llmbook.training.sft import train_sft

pytestmark = pytest.mark.usefixtures("one_thread")

CHARS = "问答写好差坏山水月风花\n"


@pytest.fixture()
def tiny() -> tuple[GPT, CharTokenizer]:
    return tiny_gpt(texts=[CHARS], block_size=24, n_layer=1, n_embd=32)


def _share_of(char: str):  # a verifiable reward: the share of ``char`` in the response
    return lambda ins, res: res.count(char) / max(1, len(res))


# --------------------------------------------------------------------------- DPO
def test_dpo_gradient_has_the_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g, requires_grad=True) for _ in range(4))
    beta = 0.3
    loss, _ = dpo_loss(pc, pr, rc, rr, beta)
    loss.backward()
    with torch.no_grad():
        delta = (pc - rc) - (pr - rr)
        w = beta * torch.sigmoid(-beta * delta) / 6  # the mean over 6 pairs
    torch.testing.assert_close(pc.grad, -w)
    torch.testing.assert_close(pr.grad, w)
    torch.testing.assert_close(rc.grad, w)  # the reference enters with the opposite sign
    torch.testing.assert_close(rr.grad, -w)


def test_dpo_loss_on_numbers_worked_by_hand() -> None:
    # Δ = (-1 - -1.5) - (-2 - -1.5) = 0.5 + 0.5 = 1;  loss = ln(1 + e^{-0.1}) = 0.6443967
    loss, st = dpo_loss(*(torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5)), beta=0.1)
    assert loss.item() == pytest.approx(0.6443967, abs=1e-6)
    assert st["chosen_reward"] == pytest.approx(0.05) and st["rejected_reward"] == pytest.approx(
        -0.05
    )
    assert st["margin"] == pytest.approx(0.1) and st["accuracy"] == 1.0
    # a second pair ranked the wrong way (Δ = -1): ln(1 + e^{0.1}) = 0.7443967
    loss, st = dpo_loss(
        torch.tensor([-1.0, -2.0]),
        torch.tensor([-2.0, -1.0]),
        torch.tensor([-1.5, -1.5]),
        torch.tensor([-1.5, -1.5]),
        beta=0.1,
    )
    assert loss.item() == pytest.approx((0.6443967 + 0.7443967) / 2, abs=1e-6)
    assert st["accuracy"] == 0.5 and st["margin"] == pytest.approx(0.0)


def test_dpo_small_and_large_beta() -> None:
    pc = torch.tensor([0.0], requires_grad=True)
    z = torch.tensor([0.0])
    loss, _ = dpo_loss(pc, z - 0.5, z, z, beta=1e-6)  # Δ = 0.5
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # β → 0: log 2, no gradient
    assert abs(pc.grad.item()) < 1e-6
    for delta, hinge in ((0.5, 0.0), (-0.5, 50.0)):  # β → ∞: β·max(0, -Δ)
        loss, _ = dpo_loss(z + delta, z, z, z, beta=100.0)
        assert loss.item() == pytest.approx(hinge, abs=1e-6)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(z, z, z, z, beta=0.0)


def test_sequence_logprobs_counts_response_tokens_only(tiny: tuple[GPT, CharTokenizer]) -> None:
    gpt, tok = tiny
    rows = [encode_response(tok, "写", "好山"), encode_response(tok, "写写写", "差")]
    ids, mask = collate_responses(rows, tok.pad_id)
    assert mask[0].tolist() == [False] * 4 + [True] * 3 + [False]  # <bos>问写答 | 好山\n | pad
    got = sequence_logprobs(gpt, ids, mask)
    with torch.no_grad():
        logp = torch.log_softmax(gpt(ids[:, :-1])[0], -1)
    for b in range(2):
        want = sum(logp[b, t - 1, ids[b, t]] for t in range(ids.size(1)) if mask[b, t])
        torch.testing.assert_close(got[b], want)
    padded = ids.clone()
    padded[0, 7:] = tok.token_to_id("花")  # what follows the response does not count
    torch.testing.assert_close(sequence_logprobs(gpt, padded, mask), got)
    everything = mask.clone()
    everything[:, 1:] = True  # prompt (and padding) tokens would lower the sum
    assert (sequence_logprobs(gpt, ids, everything) < got).all()
    assert sequence_logprobs(gpt, ids, torch.zeros_like(mask)).eq(0).all()


def test_dpo_raises_the_margin_and_leaves_the_reference_alone(
    tiny: tuple[GPT, CharTokenizer],
) -> None:
    policy, tok = tiny
    reference = copy.deepcopy(policy)
    before = copy.deepcopy(reference.state_dict())
    base = policy.blocks[0].attn.c_attn.weight.detach().clone()
    pairs = [
        PreferencePair("写", "好好好", "差差差"),
        ("写山", "山水好", "坏坏坏"),  # plain tuples work too
    ]
    res = train_dpo(
        policy,
        reference,
        pairs,
        tokenizer=tok,
        steps=25,
        batch_size=4,
        lr=1e-2,
        beta=0.5,
        progress=False,
    )
    assert len(res.margins) == len(res.accuracies) == len(res.kl) == 25
    assert res.margins[0] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert res.margins[-1] > res.margins[0] + 0.5 and res.accuracies[-1] == 1.0
    assert res.losses[-1] < res.losses[0]
    assert res.kl[0] == pytest.approx(0.0, abs=1e-6) and res.kl[-1] > 0
    n_lora = sum(p.numel() for p in lora_parameters(policy))
    assert res.trainable == n_lora < res.total  # LoRA by default
    torch.testing.assert_close(policy.blocks[0].attn.c_attn.weight, base)  # base frozen
    for name, p in reference.named_parameters():
        assert p.grad is None and not p.requires_grad
        torch.testing.assert_close(p, before[name])


def test_full_fine_tuning_with_rank_zero(tiny: tuple[GPT, CharTokenizer]) -> None:
    policy, tok = tiny
    res = train_dpo(
        policy,
        None,
        [("写", "好", "差")],
        tokenizer=tok,
        steps=2,
        batch_size=2,
        lora_rank=0,
        progress=False,
    )
    assert res.trainable == res.total == policy.num_parameters()
    with pytest.raises(ValueError, match="separate model"):
        train_dpo(policy, policy, [("写", "好", "差")], tokenizer=tok, steps=1)
    with pytest.raises(ValueError, match="lora_rank"):
        prepare_trainable(policy, lora_rank=-1)


def test_preference_pairs_rank_samples_by_reward(tiny: tuple[GPT, CharTokenizer]) -> None:
    gpt, tok = tiny
    s = sample_responses(
        gpt, tok, "写", 6, max_new_tokens=6, generator=torch.Generator().manual_seed(0)
    )
    assert s.ids.shape[0] == 6 and s.mask.shape == s.ids.shape and not s.mask[:, :4].any()
    end = tok.token_to_id("\n")
    for row, m, text in zip(s.ids, s.mask, s.texts):
        resp = row[m].tolist()
        assert end not in resp[:-1]  # a response stops at its first end marker
        assert tok.decode([t for t in resp if t != end]) == text
    long = sample_responses(gpt, tok, "写", 2, max_new_tokens=99)
    assert long.ids.shape[1] <= 24 + 1  # cut to the context: sequence_logprobs can score it
    sequence_logprobs(gpt, long.ids, long.mask)
    reward = _share_of("好")
    pairs = build_preference_pairs(
        gpt, tok, ["写", "写山", "写水"], reward, samples_per_prompt=6, max_new_tokens=6
    )
    assert pairs and all(p.chosen_reward > p.rejected_reward for p in pairs)
    assert all(reward(p.instruction, p.chosen) == p.chosen_reward for p in pairs)
    assert build_preference_pairs(gpt, tok, ["写"], lambda i, r: 1.0, max_new_tokens=4) == []


def test_score_samples_is_seeded_and_scores_every_sample(
    tiny: tuple[GPT, CharTokenizer],
) -> None:
    gpt, tok = tiny
    length = lambda ins, res: len(res)  # noqa: E731
    a = score_samples(gpt, tok, ["写", "写山"], length, n=3, max_new_tokens=5, seed=1)
    assert len(a) == 6 and [ins for ins, _, _ in a] == ["写"] * 3 + ["写山"] * 3
    assert all(score == len(res) for _, res, score in a)
    assert a == score_samples(gpt, tok, ["写", "写山"], length, n=3, max_new_tokens=5, seed=1)
    with pytest.raises(ValueError, match="n must be >= 1"):
        score_samples(gpt, tok, ["写"], length, n=0)


# --------------------------------------------------------------------------- GRPO
def test_group_advantages_are_standardised() -> None:
    r = torch.tensor([[0.0, 1.0, 0.5, 0.25], [3.0, 3.0, 3.0, 3.0], [1.0, 0.0, 0.0, 0.0]])
    a = group_advantages(r, eps=1e-8)
    torch.testing.assert_close(a.mean(-1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(a[[0, 2]].std(-1, correction=0), torch.ones(2), atol=1e-5, rtol=0)
    assert a[1].eq(0).all()  # equal rewards: nothing to learn, and no NaN
    assert group_advantages(torch.tensor([[0.7]])).eq(0).all()  # a group of one
    assert a[2, 0] > 0 > a[2, 1]


def test_clip_blocks_the_gradient_only_in_its_direction() -> None:
    eps = 0.2
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0])
    logp = torch.log(ratios).requires_grad_()
    obj, active = clipped_surrogate(logp, torch.zeros(5), adv, eps)
    obj.sum().backward()
    grad = logp.grad
    assert active.tolist() == [True, False, True, False, False]
    assert grad[0] == 0 and grad[2] == 0  # ρ > 1+ε with A > 0, ρ < 1-ε with A < 0: cut
    # elsewhere d(ρA)/d log ρ = ρA: the clip never stops a move back into the range
    torch.testing.assert_close(grad[[1, 3, 4]], (ratios * adv)[[1, 3, 4]])
    torch.testing.assert_close(obj[0], torch.tensor(1.2))


def test_k3_is_non_negative_and_unbiased() -> None:
    g = torch.Generator().manual_seed(0)
    lp, lq = torch.randn(2, 50, generator=g).log_softmax(-1)
    assert k3_kl(lp, lq).min() >= 0 and k3_kl(lp, lp).eq(0).all()
    # E_{x~p}[k3(x)] = Σ p (q/p - log(q/p) - 1) = KL(p‖q) exactly
    p = lp.exp()
    torch.testing.assert_close((p * k3_kl(lp, lq)).sum(), (p * (lp - lq)).sum())


def test_grpo_loss_at_the_sampling_policy() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    adv = torch.tensor([1.0, -1.0])
    loss, st = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, beta=0.1)
    assert loss.item() == pytest.approx(0.0) and st["kl"] == 0 and st["clip_fraction"] == 0
    loss.backward()  # plain policy gradient: -A_i / |o_i| / G per counted token
    want = torch.tensor([[-0.25, -0.25, 0.0], [1 / 6, 1 / 6, 1 / 6]])
    torch.testing.assert_close(logp.grad, want)


def test_grpo_raises_a_verifiable_reward() -> None:
    # weights x5: peaked, varied next-token distributions like a trained model's, which
    # LoRA on the inner layers can move (at the initial scale the tied output layer is tiny)
    policy, tok = tiny_gpt(texts=[CHARS], block_size=24, n_layer=1, n_embd=32, scale=5.0)
    reference = copy.deepcopy(policy)
    res = train_grpo(
        policy,
        reference,
        ["写", "写山"],
        _share_of("好"),
        tokenizer=tok,
        steps=30,
        prompts_per_step=2,
        group_size=8,
        max_new_tokens=6,
        lr=2e-2,
        progress=False,
    )
    assert len(res.rewards) == len(res.kl) == len(res.clip_fraction) == 30
    first, last = sum(res.rewards[:5]) / 5, sum(res.rewards[-5:]) / 5
    assert last > first + 0.5, (first, last)  # from about 0.1 to about 0.9
    assert res.kl[0] == pytest.approx(0.0, abs=1e-6) and max(res.kl) > 0
    assert all(0 <= c <= 1 for c in res.clip_fraction) and max(res.clip_fraction) > 0
    assert res.trainable == sum(p.numel() for p in lora_parameters(policy)) < res.total
    assert all(p.grad is None for p in reference.parameters())


# --------------------------------------------------------------------------- LoRA
def test_sft_with_lora_then_merge_and_unmerge(tiny: tuple[GPT, CharTokenizer]) -> None:
    gpt, tok = tiny
    base = {n: p.detach().clone() for n, p in gpt.named_parameters()}
    losses = train_sft(
        gpt,
        tok,
        [("写", "好山水"), ("写山", "风月花")],
        steps=20,
        batch_size=2,
        lr=1e-2,
        progress=False,
        lora_rank=2,
    )
    assert losses[-1] < losses[0] and len(losses) == 20
    assert losses.trainable == sum(p.numel() for p in lora_parameters(gpt)) < losses.total
    x = torch.tensor([tok.encode("问写答好山水", add_bos=True)])
    adapted = gpt(x)[0]
    w_before = gpt.blocks[0].mlp.c_fc.base.weight.detach().clone()
    merge_lora(gpt)
    torch.testing.assert_close(gpt(x)[0], adapted, rtol=1e-5, atol=1e-5)
    unmerge_lora(gpt)
    torch.testing.assert_close(gpt.blocks[0].mlp.c_fc.base.weight, w_before, rtol=0, atol=1e-6)
    for n, p in gpt.named_parameters():  # the pretrained weights never moved
        key = n.replace(".base.", ".")
        if key in base:
            torch.testing.assert_close(p, base[key], rtol=0, atol=1e-6)
    torch.testing.assert_close(gpt(x)[0], adapted, rtol=1e-5, atol=1e-5)
