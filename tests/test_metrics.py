"""llmbook.evaluation.metrics against scikit-learn, sacrebleu and rouge-score."""

from __future__ import annotations

import random

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from sklearn import metrics as skm

from llmbook.evaluation import metrics as M


def _random_pairs(seed: int, n: int = 200) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    y = [rng.randint(0, 2) for _ in range(n)]
    p = [t if rng.random() < 0.6 else rng.randint(0, 2) for t in y]
    return y, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_report_matches_sklearn(seed: int) -> None:
    y, p = _random_pairs(seed)
    rep = M.classification_report(y, p)
    assert rep.accuracy == pytest.approx(skm.accuracy_score(y, p))
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p, zero_division=0)
    assert rep.precision == pytest.approx(tuple(pr))
    assert rep.recall == pytest.approx(tuple(rc))
    assert rep.f1 == pytest.approx(tuple(f1))
    assert rep.support == tuple(int(s) for s in sup)
    assert rep.macro_f1 == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert [list(r) for r in rep.matrix] == skm.confusion_matrix(y, p).tolist()


def test_classification_zero_division_and_errors() -> None:
    rep = M.classification_report([0, 0, 1], [0, 0, 0])
    assert rep.precision[1] == 0.0 and rep.f1[1] == 0.0
    with pytest.raises(ValueError, match="one prediction per gold label"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        M.accuracy([], [])
    with pytest.raises(ValueError, match="not in labels"):
        M.confusion_matrix([0, 2], [0, 1], labels=[0, 1])


_PINYIN = ["chuang2", "qian2", "ming2", "yue4", "guang1", "yi2", "shi4", "di4", "shang4", "shuang1"]


def _random_corpus(seed: int, n: int = 30) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    hyps, refs = [], []
    for _ in range(n):
        ref = [rng.choice(_PINYIN) for _ in range(rng.randint(1, 12))]
        hyp = [w if rng.random() < 0.7 else rng.choice(_PINYIN) for w in ref]
        if rng.random() < 0.3:
            hyp = hyp[: rng.randint(0, len(hyp))]
        hyps.append(" ".join(hyp))
        refs.append(" ".join(ref))
    return hyps, refs


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("smooth", ["exp", "none"])
def test_bleu_equals_sacrebleu_whitespace(seed: int, smooth: str) -> None:
    hyps, refs = _random_corpus(seed)
    ours = M.bleu(hyps, refs, tokenize="none", smooth=smooth)
    ref = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method=smooth)
    assert ours.score == pytest.approx(ref.score, abs=1e-9)
    assert ours.sys_len == ref.sys_len and ours.ref_len == ref.ref_len
    assert ours.brevity_penalty == pytest.approx(ref.bp)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text("床前明月光疑是地上霜 ", max_size=12),
            st.text("床前明月光疑是地上霜", min_size=1, max_size=12),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_bleu_equals_sacrebleu_char(pairs: list[tuple[str, str]]) -> None:
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    ours = M.bleu(hyps, refs, tokenize="char")
    ref = sacrebleu.corpus_bleu(hyps, [refs], tokenize="char")
    assert ours.score == pytest.approx(ref.score, abs=1e-7)


def test_bleu_multiple_references_and_errors() -> None:
    hyps, refs1 = _random_corpus(7)
    _, refs2 = _random_corpus(8)
    ours = M.bleu(hyps, [[a, b] for a, b in zip(refs1, refs2)])
    ref = sacrebleu.corpus_bleu(hyps, [refs1, refs2], tokenize="none")
    assert ours.score == pytest.approx(ref.score, abs=1e-9)
    assert M.bleu(["a b c d"], ["a b c d"]).score == pytest.approx(100.0)
    with pytest.raises(ValueError, match="one reference"):
        M.bleu(["a"], [])
    with pytest.raises(ValueError, match="tokenize must be"):
        M.bleu(["a"], ["a"], tokenize="13a")


class _Tok:
    def __init__(self, level: str) -> None:
        self.level = level

    def tokenize(self, text: str) -> list[str]:
        return M.rouge_tokenize(text, self.level)


_NEWS = [
    "新华社北京一月一日电国家主席江泽民发表新年讲话。",
    "今年经济发展的主要目标是保持物价稳定，促进经济增长。",
    "北京市今天召开会议，部署春节期间的市场供应工作。",
    "国家主席发表讲话，祝愿全国人民新年快乐。",
]


@pytest.mark.parametrize("level", ["char", "word"])
def test_rouge_equals_rouge_score_package(level: str) -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tok(level))
    rng = random.Random(0)
    for _ in range(30):
        pred = "".join(rng.sample(_NEWS, rng.randint(1, 2)))
        ref = rng.choice(_NEWS)
        ours = M.rouge(pred, ref, level=level)
        theirs = scorer.score(ref, pred)  # rouge-score takes (target, prediction)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert ours[key].precision == pytest.approx(theirs[key].precision)
            assert ours[key].recall == pytest.approx(theirs[key].recall)
            assert ours[key].fmeasure == pytest.approx(theirs[key].fmeasure)


def test_rouge_corpus_and_edge_cases() -> None:
    perfect = M.rouge_corpus(_NEWS, _NEWS)
    assert all(perfect[k].fmeasure == pytest.approx(1.0) for k in perfect)
    assert M.rouge("", "北京")["rouge1"].fmeasure == 0.0
    assert M.rouge_tokenize("北京，你好！") == ["北", "京", "你", "好"]
    assert M.lcs_length("ABCBDAB", "BDCABA") == 4
    with pytest.raises(ValueError, match="pair up"):
        M.rouge_corpus(["a"], [])
    with pytest.raises(ValueError, match="level must be"):
        M.rouge_tokenize("x", "sentence")


def test_exact_match() -> None:
    assert M.exact_match(["a ", "b"], ["a", "c"]) == 0.5
    assert M.exact_match(["a "], ["a"], strip=False) == 0.0
    with pytest.raises(ValueError, match="pair up"):
        M.exact_match(["a"], ["a", "b"])
