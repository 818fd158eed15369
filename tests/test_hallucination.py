"""Hallucination measurements (8.9): fabricated couplets, answer probabilities, labels."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_gpt

from llmbook.data.poetry import Poem
from llmbook.evaluation import hallucination as H
from llmbook.text.chat import CHAT

_TEXTS = [
    ("白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"),
    ("床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"),
    ("春眠不觉晓", "处处闻啼鸟", "夜来风雨声", "花落知多少"),
    ("千山鸟飞绝", "万径人踪灭", "孤舟蓑笠翁", "独钓寒江雪"),
]


def _poems() -> list[Poem]:
    out = []
    for i, ls in enumerate(_TEXTS):
        paras = (f"{ls[0]}，{ls[1]}。", f"{ls[2]}，{ls[3]}。")
        out.append(Poem(i, "唐", "诗", f"题{i}", f"诗人{i}", paras, "五言绝句"))
    return out


def test_fabricated_couplets_occur_in_no_poem() -> None:
    poems = _poems()
    corpus = [p.text for p in poems]
    mixed = H.fabricated_couplets(poems, 6, "mix", corpus, seed=0)
    assert len(set(mixed)) == 6
    firsts = {p.lines[0] for p in poems}
    seconds = {p.lines[1] for p in poems}
    for a, b in mixed:
        assert a in firsts and b in seconds  # each line is real ...
        assert not any(H.occurs_in(corpus, [f"{a}，{b}"]))  # ... the couplet is not
    shuffled = H.fabricated_couplets(poems, 5, "shuffle", corpus, seed=0)
    pool = {"".join(sorted(p.lines[0] + p.lines[1])) for p in poems}
    for a, b in shuffled:
        assert len(a) == len(b) == 5 and "".join(sorted(a + b)) in pool
        assert H.occurs_in(corpus, [a, b]) == [False, False]
    with pytest.raises(ValueError, match="mode"):
        H.fabricated_couplets(poems, 1, "swap")
    with pytest.raises(ValueError, match="found only"):
        H.fabricated_couplets(poems, 50, "mix", corpus)


def test_answer_logprobs_are_the_chain_rule_sum() -> None:
    model, tok = tiny_gpt(texts=["问答\n作者是谁？李白杜甫王维"], scale=2.0, block_size=32)
    pairs = [("作者是谁？", "李白"), ("作者是谁？", "王维")]
    got = H.answer_logprobs(model, tok, pairs, template=CHAT)
    prompt = CHAT.prompt_ids(tok, "作者是谁？")
    for (_, ans), lp in zip(pairs, got):
        ids = prompt + CHAT.answer_ids(tok, ans)
        want = 0.0
        with torch.no_grad():
            for t in range(len(prompt), len(ids)):
                logits = model(torch.tensor([ids[:t]]))[0][0, -1]
                want += float(logits.log_softmax(-1)[ids[t]])
        assert lp == pytest.approx(want, rel=1e-4)
        assert lp < 0
    # the probabilities of all one-character answers sum to at most 1
    singles = [("作者是谁？", c) for c in "问答作者是谁李白杜甫王维"]
    assert sum(math.exp(x) for x in H.answer_logprobs(model, tok, singles, CHAT)) <= 1.0


def test_classify_answers_and_abstentions() -> None:
    authors = frozenset({"李白", "杜甫", "佚名"})
    labels = H.classify_answers(
        ["李白", "杜甫", "我不知道", "佚名", "张三丰", "李白"],
        ["李白", "李白", "李白", "李白", "李白", None],
        authors,
    )
    assert labels == ["right", "wrong", "abstain", "abstain", "malformed", "wrong"]
    assert H.is_abstention("作者不详") and not H.is_abstention("王维")
    assert H.author_question("白日依山尽", "黄河入海流").endswith("这两句诗的作者是谁？")
    with pytest.raises(ValueError, match="truths"):
        H.classify_answers(["李白"], [], authors)
