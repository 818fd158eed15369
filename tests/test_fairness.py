import math

import numpy as np
import pytest

from llmbook.evaluation.fairness import association, load_weat_lists, run_weat_tests, weat


class KV(dict):
    """Minimal stand-in for gensim KeyedVectors: ``w in kv`` and ``kv[w]``."""


def planted(seed=0, bias=1.0, dim=20):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=dim)
    g /= np.linalg.norm(g)
    kv = KV()
    for i in range(6):
        kv[f"a{i}"] = g + 0.3 * rng.normal(size=dim)
        kv[f"b{i}"] = -g + 0.3 * rng.normal(size=dim)
        kv[f"x{i}"] = bias * g + rng.normal(size=dim)
        kv[f"y{i}"] = -bias * g + rng.normal(size=dim)
    return kv


def lists(n=6):
    return (
        [f"x{i}" for i in range(n)],
        [f"y{i}" for i in range(n)],
        [f"a{i}" for i in range(n)],
        [f"b{i}" for i in range(n)],
    )


def test_planted_bias_is_detected():
    r = weat(planted(), *lists())
    assert r.effect_size > 1.0
    assert r.exact and r.n_permutations == math.comb(12, 6)
    assert r.p_value < 0.01


def test_swapping_targets_flips_the_sign():
    x, y, a, b = lists()
    kv = planted()
    assert weat(kv, y, x, a, b).effect_size == pytest.approx(-weat(kv, x, y, a, b).effect_size)


def test_no_bias_gives_small_effect_and_large_p():
    r = weat(planted(seed=3, bias=0.0), *lists())
    assert abs(r.effect_size) < 1.0 and r.p_value > 0.05


def test_effect_size_matches_the_definition():
    kv = planted(seed=1)
    x, y, a, b = lists()
    s = association(kv, x + y, a, b)
    # direct cosine computation
    cos = lambda u, v: float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
    s0 = np.mean([cos(kv[x[0]], kv[w]) for w in a]) - np.mean([cos(kv[x[0]], kv[w]) for w in b])
    assert s[0] == pytest.approx(s0)
    d = (s[:6].mean() - s[6:].mean()) / s.std(ddof=1)
    assert weat(kv, x, y, a, b).effect_size == pytest.approx(d)


def test_sampled_p_value_close_to_exact():
    kv = planted(seed=2, bias=0.3)
    exact = weat(kv, *lists())
    sampled = weat(kv, *lists(), n_permutations=500, seed=1)
    assert not sampled.exact
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.05)


def test_missing_words():
    kv = planted()
    x, y, a, b = lists()
    r = weat(kv, x + ["不存在"], y, a, b)
    assert r.missing == ("不存在",)
    with pytest.raises(KeyError, match="not in the embedding vocabulary"):
        weat(kv, x + ["不存在"], y, a, b, drop_missing=False)
    with pytest.raises(KeyError, match="only 0 of the 2 words of set X"):
        weat(kv, ["甲", "乙"], y, a, b)


def test_committed_word_lists_are_well_formed():
    spec = load_weat_lists()
    assert len(spec["tests"]) >= 3
    for t in spec["tests"]:
        assert len(t["X"]) == len(t["Y"]) >= 8
        assert not set(t["X"]) & set(t["Y"])
    assert len(spec["attributes"]["male"]) == len(spec["attributes"]["female"])
    # every word occurs in the People's Daily corpus the embeddings are trained on
    from llmbook.data.people_daily import load_people_daily

    vocab = {w for s in load_people_daily() for w in s.words}
    words = [w for t in spec["tests"] for w in t["X"] + t["Y"]]
    words += [w for v in spec["attributes"].values() for w in v]
    assert [w for w in words if w not in vocab] == []
    kv = KV({w: np.random.default_rng(len(w) + i).normal(size=8) for i, w in enumerate(words)})
    assert len(run_weat_tests(kv, spec, n_permutations=200)) == len(spec["tests"])
