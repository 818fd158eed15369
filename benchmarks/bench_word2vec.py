"""Benchmark: Word2Vec skip-gram training speed, gensim vs the book's PyTorch SGNS.

Both train skip-gram with negative sampling on the same corpus — the first 5,000
sentences of People's Daily (January 1998) with its gold word segmentation, punctuation
dropped (``people_daily_sentences``) —
with the same hyper-parameters: 100 dimensions, window 5, 5 negatives, ``min_count`` 5,
frequent-word subsampling ``1e-4``, one epoch.  Speed is corpus words per second (every
token of the corpus counts once per epoch, as gensim's ``raw_words``), so both numbers
have the same numerator.

* gensim's optimised C (Cython) loop: one worker, and as many workers as PyTorch threads;
* :func:`llmbook.text.sgns.train_sgns`: mini-batches of 1,024 (centre, context) pairs,
  Adam, on PyTorch with the same number of threads.

The ratio is ours / gensim (> 1 would mean the book's version is faster; it is not meant
to be: it is written to be read).  The analogy accuracy of both on the book's 516
questions is shown so that the speed is not bought with quality.

Run ``python benchmarks/bench_word2vec.py``; ``run()`` returns the numbers as a dict.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from llmbook.evaluation.wordvec import evaluate_analogies
from llmbook.text.embeddings import Embeddings, people_daily_sentences, stable_hash

DIM, WINDOW, NEGATIVE, MIN_COUNT, SAMPLE, EPOCHS = 100, 5, 5, 5, 1e-4, 1
#: The first 5,000 sentences (about a quarter of the corpus): the PyTorch version updates
#: its whole embedding tables with dense Adam at every step, so its time grows with the
#: vocabulary as well as the text; on the full corpus it alone takes minutes.
N_SENTENCES = 5000


def time_gensim(sentences: list[list[str]], workers: int) -> tuple[float, Embeddings]:
    """Seconds for one epoch of gensim skip-gram (vocabulary building excluded)."""
    from gensim.models import Word2Vec

    model = Word2Vec(
        sg=1,
        vector_size=DIM,
        window=WINDOW,
        negative=NEGATIVE,
        min_count=MIN_COUNT,
        sample=SAMPLE,
        workers=workers,
        seed=0,
        hashfxn=stable_hash,
    )
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=EPOCHS)
    return time.perf_counter() - t0, Embeddings.from_gensim(model)


def time_sgns(sentences: list[list[str]]) -> tuple[float, Embeddings, int]:
    """Seconds for one epoch of the book's PyTorch SGNS (pair generation included)."""
    from llmbook.text.sgns import train_sgns

    r = train_sgns(
        sentences,
        dim=DIM,
        window=WINDOW,
        negative=NEGATIVE,
        min_count=MIN_COUNT,
        epochs=EPOCHS,
        subsample=SAMPLE,
        seed=0,
        progress=False,
    )
    return r.seconds, r.embeddings, r.pairs_per_epoch


def measure() -> dict[str, Any]:
    sentences = people_daily_sentences("gold")[:N_SENTENCES]
    words = sum(len(s) for s in sentences) * EPOCHS
    threads = torch.get_num_threads()
    out: dict[str, Any] = {"sentences": len(sentences), "words": words, "threads": threads}
    t1, emb_g = time_gensim(sentences, 1)
    out["gensim_1_words_per_s"] = words / t1
    out["gensim_analogy"] = evaluate_analogies(emb_g).accuracy
    tn, _ = time_gensim(sentences, threads)
    out["gensim_n_words_per_s"] = words / tn
    ts, emb_s, pairs = time_sgns(sentences)
    out["sgns_words_per_s"] = words / ts
    out["sgns_pairs"] = pairs
    out["sgns_analogy"] = evaluate_analogies(emb_s).accuracy
    return out


def run() -> dict[str, Any]:
    """Entry point for ``benchmarks/run_all.py``."""
    m = measure()
    note = f"analogy accuracy: ours {m['sgns_analogy']:.3f}, gensim {m['gensim_analogy']:.3f}"
    return {
        "title": "Word2Vec skip-gram: llmbook.text.sgns.train_sgns (PyTorch) vs gensim",
        "rows": [
            {
                "metric": f"words/s, 1 epoch, gensim with {m['threads']} worker(s)",
                "ours": m["sgns_words_per_s"],
                "peer": m["gensim_n_words_per_s"],
                "ratio": m["sgns_words_per_s"] / m["gensim_n_words_per_s"],
                "unit": "words/s",
                "note": note,
            },
            {
                "metric": "words/s, 1 epoch, gensim with 1 worker",
                "ours": m["sgns_words_per_s"],
                "peer": m["gensim_1_words_per_s"],
                "ratio": m["sgns_words_per_s"] / m["gensim_1_words_per_s"],
                "unit": "words/s",
                "note": f"ours on {m['threads']} PyTorch thread(s)",
            },
        ],
        "notes": (
            f"People's Daily 1998-01 (first {m['sentences']:,} sentences), gold segmentation "
            f"without punctuation: "
            f"{m['words']:,} words per epoch; dim {DIM}, window {WINDOW}, "
            f"{NEGATIVE} negatives, min_count {MIN_COUNT}, subsampling {SAMPLE:g}. "
            f"Ours trains on {m['sgns_pairs']:,} (centre, context) pairs in mini-batches "
            "of 1,024 with Adam; gensim updates one pair at a time with SGD in C. "
            "Vocabulary building is excluded for gensim; pair generation is included for ours."
        ),
    }


def main() -> None:
    m = measure()
    print(
        f"{m['words']:,} words: gensim {m['gensim_1_words_per_s']:,.0f} words/s (1 worker), "
        f"{m['gensim_n_words_per_s']:,.0f} ({m['threads']} workers); PyTorch SGNS "
        f"{m['sgns_words_per_s']:,.0f} words/s ({m['threads']} threads); analogy accuracy "
        f"gensim {m['gensim_analogy']:.3f}, ours {m['sgns_analogy']:.3f}"
    )


if __name__ == "__main__":
    main()
