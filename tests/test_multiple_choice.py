"""Log-likelihood multiple choice, its statistics, the shipped question set and the contamination check."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmbook.data.mcq import MC_FILE, MCItem, build_poetry_mc, items_to_jsonl, load_poetry_mc
from llmbook.data.registry import data_path
from llmbook.evaluation.multiple_choice import (
    bootstrap_ci,
    bootstrap_diff_ci,
    chance_p_value,
    choice_logprobs,
    contamination_report,
    evaluate_multiple_choice,
    tie_credit,
)
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.text.tokenizers import CharTokenizer

POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
]
TOK = CharTokenizer.fit(POEMS)


def _items() -> list[MCItem]:
    """Second line of each poem, the second lines of the other poems as distractors."""
    seconds = [p[6:12] for p in POEMS]
    out = []
    for k, p in enumerate(POEMS):
        others = [s for j, s in enumerate(seconds) if j != k]
        choices = others[: k % 4] + [seconds[k]] + others[k % 4 :]
        out.append(MCItem(p[:6], tuple(choices), k % 4, "t", f"t-{k}"))
    return out


def _cloze_items() -> list[MCItem]:
    """The fifth character of each poem after its first four (a bigram decides it)."""
    fifths = [p[4] for p in POEMS]
    return [
        MCItem(p[:4], tuple(fifths[k:] + fifths[:k]), 0, "c", f"c-{k}") for k, p in enumerate(POEMS)
    ]


@dataclass
class _Cfg:
    vocab_size: int
    block_size: int


class Bigram(nn.Module):
    """Logits from bigram counts of the poems: it knows every true continuation."""

    def __init__(self, texts: list[str], block_size: int = 32) -> None:
        super().__init__()
        v = TOK.vocab_size
        self.config = _Cfg(v, block_size)
        counts = torch.full((v, v), 1e-3)
        for t in texts:
            ids = [TOK.bos_id, *TOK.encode(t)]
            for a, b in zip(ids, ids[1:], strict=False):
                counts[a, b] += 1
        self.register_buffer("logp", counts.log())

    def forward(self, idx, targets=None):
        return self.logp[idx], None


class Uniform(nn.Module):
    """Every token equally likely: knows nothing."""

    def __init__(self, block_size: int = 32) -> None:
        super().__init__()
        self.config = _Cfg(TOK.vocab_size, block_size)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, TOK.vocab_size), None


def _tiny_gpt(block: int = 32) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=block, n_layer=1, n_head=2, n_embd=16)
    return GPT(cfg).eval()


def _reference(model: nn.Module, item: MCItem) -> list[float]:
    """One choice at a time, no padding, log_softmax by hand."""
    out = []
    for choice in item.choices:
        ctx = [TOK.bos_id, *TOK.encode(item.context)]
        ids = TOK.encode(choice)
        x = torch.tensor([ctx + ids[:-1]])
        with torch.no_grad():
            logits = model(x)[0][0]
        logp = F.log_softmax(logits.double(), dim=-1)
        out.append(sum(float(logp[len(ctx) - 1 + t, tok]) for t, tok in enumerate(ids)))
    return out


def test_batched_scores_equal_the_reference_computation() -> None:
    model = _tiny_gpt()
    items = _items() + [MCItem("床前", ("明月光，", "光", "疑是地上霜。"), 0)]
    for bs in (1, 3, 64):
        scores, n_trunc = choice_logprobs(model, TOK, items, batch_size=bs)
        assert n_trunc == 0
        for it, got in zip(items, scores, strict=True):
            assert got == pytest.approx(_reference(model, it), abs=1e-4)


def test_a_model_that_knows_the_answers_gets_everything_right() -> None:
    items = _cloze_items()
    r = evaluate_multiple_choice(Bigram(POEMS), TOK, items)
    assert r.accuracy == 1.0 and r.acc_norm == 1.0
    assert r.predictions == tuple(it.answer for it in items)
    assert r.chance == 0.25 and r.ci == (1.0, 1.0)
    assert r.p_value == pytest.approx(0.25**4)


def test_uniform_model_scores_exactly_chance_through_tie_credit() -> None:
    items = _items()
    r = evaluate_multiple_choice(Uniform(), TOK, items)
    assert r.accuracy == 0.25 and r.acc_norm == 0.25 and r.chance == 0.25
    assert r.predictions == (0, 0, 0, 0)  # the lowest tied index is reported
    # unequal lengths: the sum prefers the shortest choice, per character all tie
    uneven = [MCItem("床前", ("明月光", "明", "明月光疑"), 0), MCItem("床前", ("明", "明月"), 1)]
    r = evaluate_multiple_choice(Uniform(), TOK, uneven)
    assert r.predictions == (1, 0) and r.accuracy == 0.0
    assert r.acc_norm == pytest.approx((1 / 3 + 1 / 2) / 2) == r.chance


def test_tie_credit() -> None:
    assert tie_credit([-1.0, -2.0, -3.0], 0) == (1.0, 0)
    assert tie_credit([-1.0, -2.0, -1.0], 2) == (0.5, 0)
    assert tie_credit([-1.0, -2.0, -1.0], 1) == (0.0, 0)


def test_bootstrap_interval_is_seeded_and_holds_the_estimate() -> None:
    values = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(values, seed=0)
    assert lo < 0.3 < hi and 0.15 < lo and hi < 0.45
    assert bootstrap_ci(values, seed=0) == (lo, hi)
    assert bootstrap_ci(values, seed=1) != (lo, hi)
    dlo, dhi = bootstrap_diff_ci([1.0] * 60 + [0.0] * 40, values, seed=0)
    assert 0 < dlo < 0.3 < dhi
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_ci([])


def test_chance_p_value_is_the_binomial_tail() -> None:
    n, k = 20, 9
    exact = sum(math.comb(n, j) * 0.25**j * 0.75 ** (n - j) for j in range(k, n + 1))
    assert chance_p_value(k, [0.25] * n) == pytest.approx(exact)
    assert chance_p_value(9.5, [0.25] * n) == pytest.approx(exact)  # rounded down
    assert chance_p_value(0, [0.25] * n) == pytest.approx(1.0)


def test_clear_errors() -> None:
    model = _tiny_gpt()
    with pytest.raises(ValueError, match="empty"):
        evaluate_multiple_choice(model, TOK, [])
    with pytest.raises(ValueError, match="out of range"):
        evaluate_multiple_choice(model, TOK, [MCItem("床前", ("明", "月"), 2)])
    with pytest.raises(ValueError, match="need >= 2"):
        evaluate_multiple_choice(model, TOK, [MCItem("床前", ("明",), 0)])
    with pytest.raises(ValueError, match="encodes to no tokens"):
        evaluate_multiple_choice(model, TOK, [MCItem("床前", ("明", ""), 0)])
    with pytest.raises(ValueError, match="longer than the model's block_size"):
        evaluate_multiple_choice(_tiny_gpt(block=4), TOK, [MCItem("床", ("明月光疑是", "明"), 0)])
    with pytest.raises(TypeError, match="wrap it"):
        evaluate_multiple_choice(model, TOK, MCItem("床前", ("明", "月"), 0))  # type: ignore[arg-type]


def test_long_contexts_are_cut_from_the_left() -> None:
    model = _tiny_gpt(block=8)
    context, choices = POEMS[0][:12], ("举头望", "低头思")
    scores, n_trunc = choice_logprobs(model, TOK, [MCItem(context, choices, 0)])
    assert n_trunc == 1
    # the last 8 inputs: 6 context characters and the first 2 of the 3-character choice
    kept = MCItem(context[-6:], choices, 0)
    ref, n_ref = choice_logprobs(model, TOK, [kept], add_bos=False)
    assert n_ref == 0 and scores[0] == pytest.approx(ref[0], abs=1e-5)


def test_contamination_detector_flags_copied_items() -> None:
    copied = MCItem(POEMS[1][:6], ("处处闻啼鸟。", "黄河入海流。"), 0)
    fresh = MCItem("秋风吹不尽，", ("总是玉关情。", "黄河入海流。"), 0)
    report = contamination_report([copied, fresh, "短句"], POEMS, n=8)
    assert report.flagged == (True, False, False)
    assert report.share == pytest.approx(1 / 3)
    assert report.examples[0] in POEMS[1]
    with pytest.raises(TypeError, match="wrap it"):
        contamination_report([copied], POEMS[0])


def test_shipped_questions_are_the_rebuilt_ones() -> None:
    from llmbook.data.poetry import _lm_split

    shipped = data_path(MC_FILE).read_text(encoding="utf-8")
    rebuilt = build_poetry_mc()
    assert items_to_jsonl(rebuilt) == shipped, "rebuild: python -m llmbook.data.mcq"
    split = {s: {p.id for p in ps} for s, ps in _lm_split().items()}
    counts: dict[tuple[str, int], int] = {}
    for it in rebuilt:
        home = "train" if it.task == "next_line_seen" else "test"
        assert it.poem_id in split[home], it.id
        assert len(set(it.choices)) == len(it.choices) == 4, it.id
        counts[(it.task, it.answer)] = counts.get((it.task, it.answer), 0) + 1
    for (task, _), c in counts.items():  # the right answer's position is balanced
        share = c / sum(v for (t, _), v in counts.items() if t == task)
        assert 0.15 < share < 0.35, (task, share)
    assert load_poetry_mc("author")[0].task == "author"
    with pytest.raises(ValueError, match="next_line"):
        load_poetry_mc("nope")


def test_cli_prints_accuracy_against_chance(capsys: pytest.CaptureFixture[str]) -> None:
    from llmbook.cli import main

    assert main(["eval", "gpt-poetry", "--mc", "fill_char", "--limit", "8", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "fill_char" and out["items"] == 8 and out["chance"] == 0.25
    assert out["ci95"][0] <= out["accuracy"] <= out["ci95"][1]
    assert main(["eval", "gpt-poetry", "--mc", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown multiple-choice task 'nope'" in err and "next_line_seen" in err
