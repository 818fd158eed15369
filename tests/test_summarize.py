"""Sentence splitting, article segmentation, PageRank and TextRank summaries."""

from __future__ import annotations

import numpy as np
import pytest

from llmbook.applications.summarization import (
    is_headline,
    lead_summary,
    pagerank,
    people_daily_articles,
    sentence_graph,
    split_sentences,
    textrank,
    textrank_summary,
)


def test_split_sentences_keeps_marks_and_quotes() -> None:
    text = "他说：“我们一定成功！”大家鼓掌。真的吗？是的"
    assert split_sentences(text) == ["他说：“我们一定成功！”", "大家鼓掌。", "真的吗？", "是的"]
    assert split_sentences("") == []


def test_headline_rule() -> None:
    assert is_headline("北京举行新年音乐会")
    assert not is_headline("大家鼓掌。")
    assert not is_headline("（新华社记者樊如钧摄）")
    assert not is_headline("很长" * 30)


def test_article_segmentation_on_synthetic_lines() -> None:
    lines = [
        "北京举行新年音乐会",
        "（附图片１张）",
        "音乐会今晚举行。观众很多。",
        "演出很成功。掌声不断。",
        "（新华社记者摄）",
        "李鹏考察企业",
        "向职工祝贺新年",
        "李鹏今天来到发电厂。他慰问了职工。",
        "职工很高兴。",
    ]
    arts = people_daily_articles(lines, min_sentences=2, min_title_chars=4)
    assert [a.title for a in arts] == ["北京举行新年音乐会", "李鹏考察企业"]
    assert arts[0].paragraphs == ("音乐会今晚举行。观众很多。", "演出很成功。掌声不断。")
    assert arts[1].sentences == ["李鹏今天来到发电厂。", "他慰问了职工。", "职工很高兴。"]
    assert arts[1].line == 5


def test_people_daily_articles_are_plausible() -> None:
    arts = people_daily_articles()
    assert len(arts) > 1000
    assert all(len(a.sentences) >= 4 and is_headline(a.title) for a in arts)


def _pagerank_exact(w: np.ndarray, d: float = 0.85) -> np.ndarray:
    n = len(w)
    m = w / w.sum(1, keepdims=True)
    r = np.linalg.solve(np.eye(n) - d * m.T, np.full(n, (1 - d) / n))
    return r / r.sum()


def test_pagerank_matches_linear_solve() -> None:
    rng = np.random.default_rng(0)
    w = rng.random((6, 6))
    w = w + w.T
    np.fill_diagonal(w, 0)
    np.testing.assert_allclose(pagerank(w), _pagerank_exact(w), atol=1e-8)
    with pytest.raises(ValueError, match="damping"):
        pagerank(w, damping=1.0)
    with pytest.raises(ValueError, match="square"):
        pagerank(np.zeros((2, 3)))
    iso = np.zeros((3, 3))
    np.testing.assert_allclose(pagerank(iso), [1 / 3] * 3)


def _chars(s: str) -> list[str]:
    return [c for c in s if c not in "，。"]


def test_textrank_prefers_the_central_sentence() -> None:
    sents = ["甲乙丙。", "甲乙丙丁戊己。", "丁戊己。", "庚辛。"]
    w = sentence_graph(sents, _chars)
    assert w[0, 3] == 0 and w[0, 1] > 0 and np.allclose(w, w.T)
    scores = textrank(sents, _chars)
    assert int(np.argmax(scores)) == 1
    assert textrank_summary(sents, 1, _chars) == "甲乙丙丁戊己。"
    assert textrank_summary(sents, 2, _chars).startswith("甲乙丙")  # original order kept
    assert lead_summary("一。二。三。", 2) == "一。二。"
    with pytest.raises(ValueError, match="k must be"):
        lead_summary("一。", 0)
