"""The longer version of chapter 6's 汉字 → 拼音 translation; results go to data/results/.

The chapter trains the encoder–decoder Transformer for a few hundred steps within its
3-minute budget; this script trains the same model (same code, same test pairs) on more
pairs for many more steps and stores the scores, which the chapter shows next to its live
run.  Reproduce (about 15–25 minutes on one CPU thread)::

    python benchmarks/ch6_experiments.py pinyin
    make manifest
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.experiments import run_meta, run_parts  # noqa: E402
from llmbook.applications import seq2seq  # noqa: E402
from llmbook.evaluation import metrics  # noqa: E402

#: the live notebook run uses 8,000 pairs, d_model 64, 2 layers, 200 steps
PINYIN = {
    "train_pairs": 60_000,
    "test_pairs": 300,
    "d_model": 128,
    "n_heads": 4,
    "layers": 2,
    "steps": 4000,
    "batch_size": 64,
    "lr": 2e-3,
    "seed": 0,
    "beam": 4,
}


def part_pinyin() -> dict[str, object]:
    s = PINYIN
    train_pairs = seq2seq.pinyin_pairs(int(s["train_pairs"]), "train")
    test_pairs = seq2seq.pinyin_pairs(int(s["test_pairs"]), "test")
    src, ref = [h for h, _ in test_pairs], [p for _, p in test_pairs]
    run = seq2seq.train_seq2seq(
        train_pairs,
        d_model=int(s["d_model"]),
        n_heads=int(s["n_heads"]),
        layers=int(s["layers"]),
        steps=int(s["steps"]),
        batch_size=int(s["batch_size"]),
        lr=float(s["lr"]),
        seed=int(s["seed"]),
        progress=False,
    )
    preds = {
        "char_baseline": seq2seq.char_baseline(train_pairs)(src),
        "greedy": seq2seq.greedy(run, src),
        "beam": [seq2seq.beam_search(run, x, beam=int(s["beam"])) for x in src],
    }
    scores = {
        name: {
            "exact_match": metrics.exact_match(pred, ref),
            "bleu": metrics.bleu(pred, ref).score,
        }
        for name, pred in preds.items()
    }
    for name, sc in scores.items():
        print(f"{name:<14} EM {sc['exact_match']:.1%}  BLEU {sc['bleu']:.2f}", flush=True)
    curve = [
        sum(run.losses[i : i + 100]) / len(run.losses[i : i + 100])
        for i in range(0, len(run.losses), 100)
    ]
    return {
        "settings": s,
        "n_train_pairs": len(train_pairs),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "train_seconds": run.seconds,
        "loss_per_100_steps": curve,
        "scores": scores,
        "examples": [
            {"hanzi": h, "reference": r, "greedy": g}
            for h, r, g in list(zip(src, ref, preds["greedy"]))[:8]
        ],
        **run_meta("ch6_experiments.py", "pinyin"),
    }


PARTS = {"pinyin": part_pinyin}


def main(argv: list[str]) -> None:
    run_parts("ch6", PARTS, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
