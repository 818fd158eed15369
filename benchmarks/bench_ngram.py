"""Benchmark: llmbook.models.ngram vs nltk.lm — fit + perplexity time on the same poems.

Both libraries fit the same padded character n-grams and score the same held-out poems;
the perplexities are checked to be equal before the times are compared.  Two settings:

* add-one (Laplace) trigram on 5,000 training poems, scored on 1,000 poems;
* interpolated Kneser–Ney trigram (NLTK's variant, ``nltk_compat=True``) on 1,000
  training poems, scored on 50 poems (NLTK's KN scans all contexts for every query, so
  it cannot be run on more in reasonable time).

Run ``python benchmarks/bench_ngram.py``; ``run()`` returns the numbers as a dict.
"""

from __future__ import annotations

import time
from typing import Any

from nltk.lm import KneserNeyInterpolated, Laplace, Vocabulary
from nltk.lm.preprocessing import pad_both_ends, padded_everygram_pipeline
from nltk.util import ngrams

from llmbook.data.poetry import poem_lm_texts
from llmbook.models.ngram import NGramLM


def _nltk_fit_score(model: Any, n: int, train: list[str], test: list[str], cutoff: int) -> float:
    data, vocab_text = padded_everygram_pipeline(n, [list(t) for t in train])
    model.vocab = Vocabulary(unk_cutoff=cutoff)
    model.fit(data, vocab_text)
    grams = [g for t in test for g in ngrams(pad_both_ends(list(t), n=n), n)]
    return float(model.perplexity(grams))


def _best_of(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(repeat: int = 3) -> dict[str, dict[str, Any]]:
    """Time both libraries on both settings; returns seconds, perplexities and ratios."""
    train_all, valid = poem_lm_texts("train"), poem_lm_texts("valid")
    settings = [
        ("laplace_trigram", 5000, 1000, lambda: Laplace(3), dict(smoothing="addk", k=1.0), 1),
        (
            "kneser_ney_trigram",
            1000,
            50,
            lambda: KneserNeyInterpolated(3, discount=0.75),
            dict(smoothing="kn", discount=0.75, min_count=2),
            2,
        ),
    ]
    results: dict[str, Any] = {}
    for name, n_train, n_test, make_ref, kw, cutoff in settings:
        train, test = train_all[:n_train], valid[:n_test]
        t_nltk, ppl_nltk = _best_of(
            lambda make_ref=make_ref, train=train, test=test, cutoff=cutoff: _nltk_fit_score(
                make_ref(), 3, train, test, cutoff
            ),
            1,
        )
        t_ours, ppl_ours = _best_of(
            lambda kw=kw, train=train, test=test: (
                NGramLM(3, nltk_compat=True, **kw).fit(train).perplexity(test)
            ),
            repeat,
        )
        if abs(ppl_ours - ppl_nltk) > 1e-8 * ppl_nltk:
            raise AssertionError(f"{name}: perplexities differ: ours {ppl_ours}, NLTK {ppl_nltk}")
        results[name] = {
            "train_poems": n_train,
            "test_poems": n_test,
            "perplexity": ppl_ours,
            "nltk_seconds": t_nltk,
            "llmbook_seconds": t_ours,
            "speedup": t_nltk / t_ours,
        }
    return results


def run(repeat: int = 3) -> dict[str, Any]:
    """Entry point for ``benchmarks/run_all.py``: title, table rows and notes."""
    res = measure(repeat)
    rows = [
        {
            "metric": f"{name}: fit + perplexity ({r['train_poems']} train / {r['test_poems']} test poems)",
            "ours": r["llmbook_seconds"],
            "peer": r["nltk_seconds"],
            "ratio": r["speedup"],
            "unit": "s",
            "note": f"perplexity {r['perplexity']:.3f} in both",
        }
        for name, r in res.items()
    ]
    return {
        "title": "n-gram language model: llmbook.models.ngram vs nltk.lm",
        "rows": rows,
        "notes": "Character trigrams on Tang poems (poem_lm_texts); identical perplexities are "
        "asserted before timing. NLTK timed once, llmbook best of 3.",
    }


def main() -> None:
    for name, r in measure().items():
        print(
            f"{name}: train {r['train_poems']} poems, test {r['test_poems']}, "
            f"perplexity {r['perplexity']:.3f} (equal in both) | NLTK {r['nltk_seconds']:.2f} s, "
            f"llmbook {r['llmbook_seconds']:.3f} s -> {r['speedup']:.0f}x faster"
        )


if __name__ == "__main__":
    main()
