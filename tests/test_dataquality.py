from llmbook.data.quality import (
    clean_corpus,
    exact_duplicates,
    jaccard,
    minhash_signatures,
    near_duplicates,
    quality_filter,
)

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def test_jaccard_and_exact():
    assert jaccard(POEM, POEM) == 1.0
    assert 0 < jaccard(POEM, POEM.replace("明月光", "看月光")) < 1
    assert exact_duplicates([POEM, "x", POEM, " " + POEM]) == [False, False, True, True]


def test_minhash_estimates_jaccard():
    other = POEM.replace("举头", "抬头").replace("低头", "垂首")
    sig = minhash_signatures([POEM, other], num_perm=512, seed=1)
    est = float((sig[0] == sig[1]).mean())
    assert abs(est - jaccard(POEM, other)) < 0.08
    assert (minhash_signatures([POEM], seed=3) == minhash_signatures([POEM], seed=3)).all()


def test_near_duplicates_found_and_distinct_texts_kept():
    texts = [
        POEM,
        "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
        POEM.replace("。", "！", 1),  # one character changed
        "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    ]
    assert near_duplicates(texts, threshold=0.7) == [False, False, True, False]


def test_quality_filter_reasons():
    rep = quality_filter(["。", "abc abc abc abc", "哈" * 30, POEM], min_chars=5)
    assert rep.kept == [POEM]
    assert rep.removed == {"too_short": 1, "not_chinese": 1, "repetitive": 1}
    assert rep.examples["too_short"] == ["。"]
    rep2 = clean_corpus([POEM, POEM, POEM.replace("霜", "雪"), "。"])
    assert rep2.kept == [POEM]
    assert rep2.removed["exact_duplicate"] == 1 and rep2.removed["near_duplicate"] == 1


def test_dirty_corpus_is_cleaned_back():
    from llmbook.data.quality import make_dirty_corpus

    clean = [
        f"第{i}首诗，" + "春风又绿江南岸，明月何时照我还。"[i % 7 :] + str(i) for i in range(40)
    ]
    clean = [
        c.replace(str(i), "") + "山水" * (i % 5) + "花鸟" * (i % 3) for i, c in enumerate(clean)
    ]
    dirty, counts = make_dirty_corpus(clean, seed=0, popular_frac=0.1)
    assert len(dirty) == sum(counts.values())
    assert counts["exact_copies"] == 4 * 10 and counts["fragments"] == 4
    rep = clean_corpus(dirty, min_chars=8, near=False)
    assert rep.removed["too_short"] == counts["fragments"]
    assert rep.removed["exact_duplicate"] >= counts["exact_copies"]
