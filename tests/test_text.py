"""Tests for llmbook.text.chinese: cleaning, jieba modes, stop words, Zipf fit, segmentation scores."""

from __future__ import annotations

from collections import Counter

import pytest

from llmbook.text.chinese import (
    clean_text,
    count_tokens,
    is_punct,
    load_stopwords,
    make_segmenter,
    remove_stopwords,
    segment,
    segment_corpus,
    segmentation_errors,
    segmentation_scores,
    zipf_fit,
)


def test_clean_text() -> None:
    raw = "在１９９８年\u3000来临之际，访问 http://example.com 了解ＡＢＣ。\u200b  "
    assert clean_text(raw) == "在1998年 来临之际，访问 了解ABC。"
    assert clean_text("漢語", to_simplified=True) == "汉语"
    assert clean_text("１", halfwidth_alnum=False) == "１"
    with pytest.raises(TypeError, match="text must be a str"):
        clean_text(None)  # type: ignore[arg-type]


def test_segment_modes() -> None:
    text = "我来到北京清华大学"
    precise = segment(text)
    assert "".join(precise) == text
    assert "清华大学" in precise
    full = segment(text, mode="full")
    assert {"清华", "华大", "大学", "清华大学"} <= set(full)
    search = segment(text, mode="search")
    assert {"清华", "大学", "清华大学"} <= set(search)
    with pytest.raises(ValueError, match="mode must be one of"):
        segment(text, mode="fast")
    with pytest.raises(TypeError, match="segment_corpus expects a list"):
        segment_corpus(text)
    with pytest.raises(ValueError, match="corpus is empty"):
        segment_corpus([])


def test_user_dictionary_changes_segmentation_locally(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = "李小福是创新办主任也是云计算方面的专家"
    plain = segment(text)
    assert "创新办" not in plain
    seg = make_segmenter(user_words=["创新办", ("云计算", 5)])
    assert {"创新办", "云计算"} <= set(segment(text, segmenter=seg))
    assert segment(text) == plain  # the global jieba dictionary is untouched
    d = tmp_path / "user.txt"
    d.write_text("创新办 3 nt\n", encoding="utf-8")
    assert "创新办" in segment(text, segmenter=make_segmenter(user_dict=d))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_segmenter(user_dict=tmp_path / "missing.txt")


def test_stopwords() -> None:
    stop = load_stopwords()
    assert {"的", "了", "我们"} <= stop and "经济" not in stop
    assert remove_stopwords(["我们", "的", "经济", "，", "发展", "。"]) == ["经济", "发展"]
    with pytest.raises(TypeError, match="segment the text first"):
        remove_stopwords("我们的经济")  # type: ignore[arg-type]


def test_zipf_fit_recovers_slope() -> None:
    counts = Counter({f"w{r}": int(1e6 * r**-1.2) for r in range(1, 3000)})
    fit = zipf_fit(counts, r_min=1, r_max=2000)
    assert fit.slope == pytest.approx(-1.2, abs=0.01)
    assert fit.r2 > 0.999
    with pytest.raises(ValueError, match="at least 3"):
        zipf_fit(Counter({"a": 1}))
    with pytest.raises(ValueError, match="no tokens"):
        count_tokens([[]])


def test_segmentation_scores_and_errors() -> None:
    gold = [["迈向", "新", "世纪"], ["一九九八年", "新年", "讲话"]]
    pred = [["迈向", "新世纪"], ["一九九八", "年", "新年", "讲话"]]
    s = segmentation_scores(gold, pred)
    # correct words: 迈向, 新年, 讲话 -> 3 of 6 predicted, 3 of 6 gold
    assert (s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5)
    assert segmentation_scores(gold, gold)["f1"] == 1.0
    errs = segmentation_errors(gold, pred)
    assert ("新/世纪", "新世纪", 1) in errs and ("一九九八年", "一九九八/年", 1) in errs
    with pytest.raises(ValueError, match="not segmentations of the same text"):
        segmentation_scores([["新年"]], [["新", "春"]])
    with pytest.raises(ValueError, match="aligned lists"):
        segmentation_scores(gold, pred[:1])


def test_words_missing_from_jieba() -> None:
    from llmbook.text.chinese import words_missing_from_jieba

    corpus = [["中国", "龘靐齉", "1997年", "，"]] * 3 + [["罕罕见词"]]
    got = words_missing_from_jieba(corpus, min_count=3)
    words = [w for w, _ in got]
    assert "龘靐齉" in words and "中国" not in words and "，" not in words
    assert "罕罕见词" not in words  # seen once only
    assert all(c == 3 for _, c in got)


@pytest.mark.parametrize(
    "token", ["，", "。", "……", "——", "《》", "“”", "!?", "％", "+", "￥", "°", " ", "\u3000", ""]
)
def test_is_punct_true_for_punctuation_symbols_and_spaces(token: str) -> None:
    assert is_punct(token)


@pytest.mark.parametrize("token", ["不错", "１９９８", "ABC", "好！", "3.5", "\n", "Ⅱ"])
def test_is_punct_false_when_a_character_is_a_letter_digit_or_control(token: str) -> None:
    assert not is_punct(token)
