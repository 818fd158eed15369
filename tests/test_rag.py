"""RAG: context packing under a budget, prompts, the reader, scoring, synthetic questions."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import tiny_gpt

from llmbook.applications import rag


def _count(prompt: str) -> int:  # a character tokenizer with <bos>
    return len(prompt) + 1


def test_prompt_format_and_full_width_digits() -> None:
    assert rag.build_prompt("几号？") == "问：几号？\n答："
    p = rag.build_prompt("1998年谁来了？", ["甲", "乙"])
    assert p == "问：１９９８年谁来了？\n资料1：甲\n资料2：乙\n答："
    with pytest.raises(ValueError, match="question is empty"):
        rag.build_prompt("  ")


def test_packing_never_exceeds_budget_and_keeps_order() -> None:
    rng = random.Random(0)
    for _ in range(300):
        passages = ["字" * rng.randint(1, 60) + str(i) for i in range(rng.randint(0, 6))]
        budget = rng.randint(12, 200)
        min_piece = rng.randint(1, 20)
        packed = rag.pack_context("问题？", passages, _count, budget, min_piece)
        assert packed.n_tokens == _count(packed.prompt) <= budget
        kept = packed.passages
        # whole passages first, in order; only the last may be a cut prefix
        for i, p in enumerate(kept):
            assert passages[i] == p or (i == len(kept) - 1 and packed.cut)
            assert passages[i].startswith(p)
        if packed.cut:
            assert len(kept[-1]) >= min_piece
        assert len(kept) - packed.cut + packed.n_dropped + packed.cut == len(passages)


def test_packing_rules_cut_then_stop() -> None:
    base = _count(rag.build_prompt("问？"))
    # room for the first passage whole and 20 characters of the second
    first = "甲" * 10
    budget = base + len("资料1：\n") + 10 + len("资料2：\n") + 20
    packed = rag.pack_context("问？", [first, "乙" * 50, "丙"], _count, budget)
    assert packed.passages == (first, "乙" * 20)
    assert packed.cut and packed.n_dropped == 1  # "丙" would fit but comes later
    # too little room for a piece: the second passage is dropped, not cut
    packed = rag.pack_context("问？", [first, "乙" * 50], _count, budget, min_piece=21)
    assert packed.passages == (first,) and not packed.cut and packed.n_dropped == 1


def test_packing_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="question alone needs 12 tokens but the budget is 5"):
        rag.pack_context("一二三四五？", [], _count, 5)
    with pytest.raises(ValueError, match="budget must be a positive"):
        rag.pack_context("问？", [], _count, 0)


def test_scoring() -> None:
    assert rag.normalize_answer("２０ 周年。") == "20周年"
    assert rag.exact_match("２０周年", "20周年")
    assert not rag.exact_match("２０周年整", "２０周年")
    assert rag.contains_match("是２０周年整", "２０周年")
    assert not rag.contains_match("２０周", "２０周年")
    assert not rag.contains_match("任何回答", "。")  # an empty gold answer never matches


class _Fixed:
    def search(self, query: str, k: int = 10) -> list[int]:
        return [2, 0, 1][:k]


def test_reader_is_deterministic_and_respects_the_block() -> None:
    texts = ["问答资料：？\n甲乙丙丁一二三四五六七八九十"]
    model, tok = tiny_gpt(texts=texts, block_size=48, scale=3.0)
    reader = rag.Reader(model, tok, max_new_tokens=8)
    assert reader.budget == 40
    docs = ["甲乙丙丁" * 3, "一二三四" * 3, "五六七八" * 3]
    a = rag.answer("甲是几？", _Fixed(), 2, reader=reader, docs=docs)
    b = rag.answer("甲是几？", _Fixed(), 2, reader=reader, docs=docs)
    assert a.text == b.text and a.retrieved == [2, 0]
    assert a.packed.n_tokens <= reader.budget and len(a.text) <= 8
    closed = rag.answer("甲是几？", None, 3, reader=reader, docs=docs)
    assert closed.retrieved == [] and closed.packed.passages == ()
    with pytest.raises(ValueError, match="over the budget"):
        reader.generate("问" * 45)
    with pytest.raises(ValueError, match="max_new_tokens"):
        rag.Reader(model, tok, max_new_tokens=48)


def test_cloze_candidates_and_questions() -> None:
    words = "今年 是 三中全会 召开 ２０ 周年 ， 李鹏 在 北京 讲话 。".split()
    tags = "t v j v m q w nr p ns v w".split()
    cands = rag.cloze_candidates(words, tags)
    assert (4, 6, "m") in cands and (7, 8, "nr") in cands and (9, 10, "ns") in cands
    seen = set()
    for seed in range(40):
        item = rag.make_cloze(words, tags, random.Random(seed))
        if item is None:
            continue
        seen.add(item.answer)
        assert item.answer in item.passage and item.question.endswith("？")
        assert rag.WH_WORDS[item.kind] in item.question
    assert "２０周年" in seen
    item = next(
        c
        for s in range(40)
        if (c := rag.make_cloze(words, tags, random.Random(s))) and c.kind == "m"
    )
    assert item.question == "今年是三中全会召开多少周年？"


def test_lengthen_context_keeps_the_first_positions() -> None:
    from llmbook.experiments.rag import lengthen_context

    model = tiny_gpt(block_size=8, noise=0.1)
    longer = lengthen_context(model, 20).eval()
    x = torch.randint(0, 24, (2, 8))
    torch.testing.assert_close(model(x)[0], longer(x)[0])
    assert longer(torch.randint(0, 24, (1, 20)))[0].shape == (1, 20, 24)
    with pytest.raises(ValueError, match="must exceed"):
        lengthen_context(model, 8)


def test_confidence_is_the_geometric_mean_of_token_probabilities() -> None:
    model, tok = tiny_gpt(texts=["问答：？\n甲乙丙丁"], block_size=32, scale=2.0)
    reader = rag.Reader(model, tok, max_new_tokens=4)
    prompt, text = "问：甲？\n答：", "乙丙"
    ids = reader.encode(prompt) + tok.encode(text)
    probs = torch.softmax(model(torch.tensor([ids]))[0][0], dim=-1)
    n = len(reader.encode(prompt))
    want = (probs[n - 1, ids[n]] * probs[n, ids[n + 1]]).sqrt().item()
    assert reader.confidence(prompt, text) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="text is empty"):
        reader.confidence(prompt, "")


def test_char_f1() -> None:
    assert rag.char_f1("２０", "20周年") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rag.char_f1("２０周年", "20周年") == 1.0
    assert rag.char_f1("十年", "20周年") == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert rag.char_f1("", "20周年") == 0.0


def test_copy_decoding_answers_with_a_piece_of_the_passages() -> None:
    texts = ["问答资料：？\n甲乙丙丁一二三四五六七八九十"]
    docs = ["甲乙丙丁", "一二三四五"]
    for seed in range(5):
        model, tok = tiny_gpt(texts=texts, block_size=48, scale=3.0, seed=seed)
        reader = rag.Reader(model, tok, max_new_tokens=6)
        text, packed = reader.read("几？", docs, copy=True)
        assert text and any(text in p for p in packed.passages)
    assert rag._continuations([[1, 2, 3, 2, 4]], [2]) == {3, 4}
    assert rag._continuations([[1, 2], [5]], []) == {1, 2, 5}
    assert rag._continuations([[1, 2]], [2]) == set()


def test_condition_contexts_closed_gold_and_ranked():
    gold, docs = ["g0", "g1"], ["d0", "d1", "d2"]
    ranks = {"bm25": [[2, 0, 1], [1, 2, 0]]}
    assert rag.condition_contexts(None, 3, gold, docs, ranks) == [[], []]
    assert rag.condition_contexts("gold", 3, gold, docs, ranks) == [["g0"], ["g1"]]
    assert rag.condition_contexts("bm25", 2, gold, docs, ranks) == [["d2", "d0"], ["d1", "d2"]]
    with pytest.raises(KeyError, match="dense"):
        rag.condition_contexts("dense", 1, gold, docs, ranks)
