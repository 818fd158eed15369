"""Tests for saving/loading word vectors, the frequency-band diagnostic and the
chapter-2.5 artifact builder (llmbook.experiments.wordvec) on a toy corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmbook.data.registry import DataFileError
from llmbook.evaluation.wordvec import cosine_by_frequency
from llmbook.experiments import wordvec as exp
from llmbook.experiments.artifacts import Artifact, BuildContext
from llmbook.text.embeddings import Embeddings, train_fasttext, train_word2vec

# a toy corpus: two royal and two common subjects, each in three kinds of sentence
CORPUS = [
    [subject, verb, obj]
    for subject, obj in (("国王", "王国"), ("王后", "王国"), ("男人", "城市"), ("女人", "城市"))
    for verb in ("统治", "住在", "离开")
] * 20


def test_save_load_roundtrip_float16_and_top_n(tmp_path: Path) -> None:
    e = Embeddings(["乙", "甲", "丙"], [[0.5, 1], [1, 0], [0, 1.25]], counts=[2, 9, 1], name="t")
    paths = e.save(tmp_path / "v")
    assert [p.name for p in paths] == ["vectors.npy", "vocab.tsv"]
    assert np.load(paths[0]).dtype == np.float16
    back = Embeddings.load(tmp_path / "v", name="back")
    assert back.words == ["甲", "乙", "丙"]  # saved most frequent first
    assert back.counts == [9, 2, 1]
    np.testing.assert_allclose(back.vector("丙"), [0, 1.25])
    assert back.vectors.dtype == np.float32
    e.save(tmp_path / "top", top_n=2, dtype="float32")
    top = Embeddings.load(tmp_path / "top" / "vectors.npy")
    assert (
        top.words == ["甲", "乙"] and np.load(tmp_path / "top" / "vectors.npy").dtype == np.float32
    )


def test_save_load_errors(tmp_path: Path) -> None:
    e = Embeddings(["甲", "乙"], np.eye(2))
    with pytest.raises(ValueError, match="dtype must be 'float16' or 'float32'"):
        e.save(tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="top_n must be a positive int"):
        e.save(tmp_path, top_n=0)
    with pytest.raises(ValueError, match="tab or newline"):
        Embeddings(["甲\t乙"], [[1.0]]).save(tmp_path)
    with pytest.raises(FileNotFoundError, match="write it with Embeddings.save"):
        Embeddings.load(tmp_path / "nothing")
    e.save(tmp_path / "x")
    (tmp_path / "x" / "vocab.tsv").write_text("甲\t1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lists 1 words but .* has 2 vectors"):
        Embeddings.load(tmp_path / "x")
    (tmp_path / "x" / "vocab.tsv").write_text("甲 1\n乙\t2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.tsv:1: expected word<TAB>count"):
        Embeddings.load(tmp_path / "x")


def test_load_refuses_pickled_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "vectors.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "vocab.tsv").write_text("甲\t1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="allow_pickle"):
        Embeddings.load(tmp_path)


def test_cosine_by_frequency() -> None:
    # two rare words pointing the same way, two frequent orthogonal ones
    e = Embeddings(
        ["a", "b", "c", "d"], [[1, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 3]], counts=[5, 6, 600, 700]
    )
    bands = cosine_by_frequency(e, edges=(5, 10, 500))
    assert [(b.label, b.words) for b in bands] == [("5–9", 2), ("≥500", 2)]  # 10–499 empty
    assert bands[0].mean_cosine == pytest.approx(1.0)
    assert bands[1].mean_cosine == pytest.approx(0.0)
    with pytest.raises(ValueError, match="edges must be increasing"):
        cosine_by_frequency(e, edges=(10, 5))
    with pytest.raises(ValueError, match="has no word counts"):
        cosine_by_frequency(Embeddings(["a"], [[1.0]], name="nocount"))


def test_training_argument_errors() -> None:
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        train_word2vec(CORPUS, epochs=0)
    with pytest.raises(ValueError, match=r"sample must be a number in \[0, 1\)"):
        train_word2vec(CORPUS, sample=2.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        train_word2vec(CORPUS, alpha=0.0)
    with pytest.raises(ValueError, match="min_count must be an int >= 1"):
        train_fasttext(CORPUS, min_count=0)


def test_sample_changes_training() -> None:
    kw = dict(vector_size=8, min_count=1, epochs=2)
    a = train_word2vec(CORPUS, sample=1e-3, **kw)
    b = train_word2vec(CORPUS, sample=0.0, **kw)
    assert not np.array_equal(a.vectors, b.vectors)


def test_corpus_prefix() -> None:
    s = [["a"], ["b"], ["c"], ["d"]]
    assert exp.corpus_prefix(s, 0.5) == [["a"], ["b"]]
    assert exp.corpus_prefix(s, 0.01) == [["a"]]  # never empty
    assert exp.corpus_prefix(s, 1) == s
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        exp.corpus_prefix(s, 0)
    with pytest.raises(TypeError, match="fraction must be a number"):
        exp.corpus_prefix(s, "half")  # type: ignore[arg-type]


def test_train_setting() -> None:
    emb = exp.train_setting(CORPUS, {"sg": 0, "vector_size": 8, "min_count": 1, "epochs": 2})
    assert emb.name == "CBOW" and "国王" in emb
    ft = exp.train_setting(
        CORPUS,
        {
            "algo": "fasttext",
            "sg": 1,
            "vector_size": 8,
            "min_count": 1,
            "epochs": 1,
            "fraction": 0.5,
        },
    )
    assert ft.can_embed("国王们")
    with pytest.raises(ValueError, match="unknown settings \\['windw'\\]"):
        exp.train_setting(CORPUS, {"windw": 3})
    with pytest.raises(ValueError, match="algo must be 'word2vec' or 'fasttext'"):
        exp.train_setting(CORPUS, {"algo": "glove"})


def _artifact(tmp_path: Path, config: dict) -> tuple[Artifact, BuildContext]:
    art = Artifact(
        name="toy-w2v",
        kind="word2vec",
        output=tmp_path / "out",
        title="t",
        chapter="2.5",
        config=config,
        config_path=tmp_path / "toy.toml",
    )
    art.output.mkdir(parents=True)
    ctx = BuildContext(run_dir=tmp_path / "run", resume=False, threads=1, log=lambda m: None)
    return art, ctx


def test_builder_on_toy_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmbook.text.embeddings as embeddings

    monkeypatch.setattr(embeddings, "people_daily_sentences", lambda segmentation: CORPUS)
    small = {"vector_size": 8, "min_count": 1, "epochs": 2}
    config = {
        "models": {"cbow": {"sg": 0, **small, "export": True}, "sg": {"sg": 1, **small}},
        "export": {"dtype": "float16"},
        "sweep": [{"name": "size", "model": "cbow", "vary": "fraction", "values": [0.5, 1.0]}],
    }
    art, ctx = _artifact(tmp_path, config)
    result = exp.build_word2vec(art, ctx)
    assert result["metrics"]["corpus_tokens"] == 3 * len(CORPUS)
    assert result["metrics"]["sweep_runs"] == 2
    assert "人民日报" in result["data"]
    assert sorted(p.name for p in (art.output / "cbow").iterdir()) == ["vectors.npy", "vocab.tsv"]
    assert not (art.output / "sg").exists()  # not exported
    sweep = json.loads((art.output / "sweep.json").read_text(encoding="utf-8"))
    assert [r["value"] for r in sweep] == [0.5, 1.0]
    assert sweep[0]["tokens"] == sweep[1]["tokens"] // 2
    models = json.loads((art.output / "models.json").read_text(encoding="utf-8"))
    assert set(models) == {"cbow", "sg"} and models["cbow"]["setting"]["sg"] == 0
    # the full-corpus point of the sweep is the exported model: same vectors
    emb = Embeddings.load(art.output / "cbow")
    again = exp.train_setting(CORPUS, {"sg": 0, **small})
    np.testing.assert_allclose(emb.vectors, again.vectors.astype(np.float16), rtol=0, atol=0)
    # a resumed build skips what is done
    ctx2 = BuildContext(run_dir=ctx.run_dir, resume=True, threads=1, log=lambda m: None)
    logs: list[str] = []
    ctx2.log = logs.append
    exp.build_word2vec(art, ctx2)
    assert sum("already done" in m for m in logs) == 4
    assert not any(": analogy " in m for m in logs)  # nothing retrained


def test_builder_reuses_identical_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmbook.text.embeddings as embeddings

    monkeypatch.setattr(embeddings, "people_daily_sentences", lambda segmentation: CORPUS)
    config = {
        "models": {"a": {"sg": 0, "vector_size": 4, "min_count": 1, "epochs": 1}},
        "sweep": [{"name": "ep", "model": "a", "vary": "epochs", "values": [1, 2]}],
    }
    art, ctx = _artifact(tmp_path, config)
    logs: list[str] = []
    ctx.log = logs.append
    result = exp.build_word2vec(art, ctx)
    assert result["metrics"]["distinct_runs"] == 2  # epochs=1 is model a itself
    assert any("ep/a/epochs=1 already done" in m for m in logs)


def test_builder_config_errors(tmp_path: Path) -> None:
    art, ctx = _artifact(tmp_path, {})
    with pytest.raises(ValueError, match="needs at least one \\[models.NAME\\]"):
        exp.build_word2vec(art, ctx)
    bad = {
        "models": {"a": {"sg": 0}},
        "sweep": [{"name": "s", "model": "b", "vary": "epochs", "values": [1]}],
    }
    art, ctx = _artifact(tmp_path / "bad", bad)
    with pytest.raises(ValueError, match="varies unknown model 'b'"):
        exp.build_word2vec(art, ctx)
    bad["sweep"] = [{"name": "s", "model": "a", "vary": "algo", "values": ["fasttext"]}]
    with pytest.raises(ValueError, match="cannot vary 'algo'"):
        exp.build_word2vec(art, ctx)
    bad["sweep"] = [{"name": "s", "model": "a", "vary": "epochs"}]
    with pytest.raises(ValueError, match="a \\[\\[sweep\\]\\] needs 'values'"):
        exp.build_word2vec(art, ctx)


def test_load_vectors_names_the_build_command() -> None:
    with pytest.raises(DataFileError, match="build ch2-word2vec"):
        exp.load_vectors("no-such-model")
