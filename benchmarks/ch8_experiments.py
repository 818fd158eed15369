"""The longer versions of chapter 8's experiments; results go to data/results/ch8_*.json.

The chapter runs a small live version of each experiment within its 3-minute budget and
shows these larger runs next to it.  Reproduce (about 15-30 minutes on 2 CPU cores)::

    python benchmarks/ch8_experiments.py scaling canary quality
    make manifest

Each part is deterministic up to floating-point non-associativity across machines.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.experiments import run_meta, run_parts  # noqa: E402
from llmbook.data.lmdata import encode_corpus  # noqa: E402
from llmbook.data.poetry import poem_lm_texts  # noqa: E402
from llmbook.data.quality import clean_corpus, make_dirty_corpus  # noqa: E402
from llmbook.evaluation.privacy import (  # noqa: E402
    deduplicate,
    evaluate_canaries,
    insert_canaries,
    make_canaries,
)  # noqa: E402
from llmbook.experiments.scaling import fit_loglog, fit_power_law, gpt_family, run_scaling  # noqa: E402
from llmbook.models.gpt import GPT, GPTConfig  # noqa: E402
from llmbook.text.tokenizers import CharTokenizer  # noqa: E402
from llmbook.training.trainer import TrainConfig, train  # noqa: E402
from llmbook.utils import set_seed  # noqa: E402

#: Settings shared by the notebook's live runs and these longer ones.
SCALING = {
    "max_vocab": 2000,
    "block_size": 32,
    "n_layer": 2,
    "head_size": 16,
    "batch_size": 16,
    "lr": 3e-3,
}
CANARY_NAMES = ["王小明", "李秀英", "张建国", "刘丽华", "陈志强", "杨雪梅"]
CANARY_COPIES = [1, 2, 4, 8, 16, 32]


def _meta(part: str) -> dict[str, object]:
    return run_meta("ch8_experiments.py", part)


def scaling_data(max_vocab: int = 2000) -> tuple[CharTokenizer, object, object]:
    tr, va = poem_lm_texts("train"), poem_lm_texts("valid")
    tok = CharTokenizer.fit([t + "\n" for t in tr], max_size=max_vocab)
    return tok, encode_corpus(tr, tok), encode_corpus(va, tok)


def part_scaling() -> dict[str, object]:
    s = SCALING
    tok, ids, vids = scaling_data(int(s["max_vocab"]))
    widths = [16, 32, 48, 64, 96, 128]
    cfgs = gpt_family(
        widths,
        vocab_size=tok.vocab_size,
        block_size=int(s["block_size"]),
        n_layer=int(s["n_layer"]),
        head_size=int(s["head_size"]),
    )
    out: dict[str, object] = {"widths": widths, "settings": s, **_meta("scaling")}
    for name, kw in (
        ("fixed_tokens", {"tokens": 600_000}),
        ("fixed_flops", {"flops": 6 * 1e5 * 6e5}),
    ):
        t0 = time.perf_counter()
        runs = run_scaling(
            cfgs,
            ids,
            vids,
            batch_size=int(s["batch_size"]),
            lr=float(s["lr"]),
            eval_batches=40,
            progress=False,
            **kw,
        )  # type: ignore[arg-type]
        n = [r.n_non_embedding for r in runs]
        loss = [r.val_loss for r in runs]
        out[name] = {
            "budget": kw,
            "runs": [asdict(r) for r in runs],
            "power_law": asdict(fit_power_law(n, loss)),
            "loglog": asdict(fit_loglog(n, loss)),
            "seconds": time.perf_counter() - t0,
        }
        print(name, [(r.n_non_embedding, round(r.val_loss, 3)) for r in runs], flush=True)
    return out


def canary_corpus(n_poems: int) -> tuple[list[str], list[str]]:
    return poem_lm_texts("train")[:n_poems], poem_lm_texts("valid")[:500]


def run_canary(n_poems: int, steps: int, dedup: bool, seed: int = 0) -> dict[str, object]:
    """Train a small GPT on poems + canaries (optionally de-duplicated), measure exposure."""
    texts, valid = canary_corpus(n_poems)
    canaries = make_canaries(
        [n + "的密码是" for n in CANARY_NAMES], CANARY_COPIES, length=4, seed=seed
    )
    train_texts = insert_canaries(texts, canaries, seed=seed)
    if dedup:
        train_texts = deduplicate(train_texts)
    # the alphabet is added so that every possible secret can be scored
    tok = CharTokenizer.fit([t + "\n" for t in train_texts + valid] + ["0123456789"])
    set_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=4, n_embd=64))
    cfg = TrainConfig(
        max_steps=steps,
        batch_size=16,
        block_size=32,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=steps // 10,
        eval_interval=0,
        eval_batches=10,
        progress=False,
        device="cpu",
        seed=seed,
    )
    res = train(model, encode_corpus(train_texts, tok), encode_corpus(valid, tok), cfg)
    reports = evaluate_canaries(res.model, tok, canaries)
    return {
        "dedup": dedup,
        "n_poems": n_poems,
        "steps": steps,
        "val_loss": res.final_val_loss,
        "seconds": res.seconds,
        "canaries": [asdict(r) for r in reports],
    }


def part_canary() -> dict[str, object]:
    out: dict[str, object] = {"copies": CANARY_COPIES, **_meta("canary")}
    out["runs"] = [
        run_canary(2000, 1000, dedup, seed) for seed in (0, 1) for dedup in (False, True)
    ]
    return out


def dirty_corpus(n_poems: int, seed: int = 0) -> tuple[list[str], list[str], dict[str, int]]:
    """Real poems plus the kinds of dirt scraped corpora have (see the chapter)."""
    dirty, counts = make_dirty_corpus(poem_lm_texts("train")[:n_poems], seed=seed)
    return dirty, poem_lm_texts("valid")[:1000], counts


def run_quality(n_poems: int, steps: int, seed: int = 0) -> dict[str, object]:
    dirty, valid, counts = dirty_corpus(n_poems, seed)
    rep = clean_corpus(dirty, min_chars=8)
    tok = CharTokenizer.fit([t + "\n" for t in dirty + valid])
    vids = encode_corpus(valid, tok)
    out: dict[str, object] = {
        "counts": counts,
        "removed": dict(rep.removed),
        "kept": len(rep.kept),
        "n_poems": n_poems,
        "steps": steps,
    }
    for name, texts in (("raw", dirty), ("cleaned", rep.kept)):
        set_seed(seed)
        model = GPT(
            GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=4, n_embd=64)
        )
        cfg = TrainConfig(
            max_steps=steps,
            batch_size=16,
            block_size=32,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=steps // 10,
            eval_interval=max(1, steps // 10),
            eval_batches=20,
            progress=False,
            device="cpu",
            seed=seed,
        )
        res = train(model, encode_corpus(texts, tok), vids, cfg)
        out[name] = {"val_loss": res.final_val_loss, "curve": res.val_losses, "texts": len(texts)}
    return out


def part_quality() -> dict[str, object]:
    return {**_meta("quality"), "runs": [run_quality(3000, 1000, seed) for seed in (0,)]}


PARTS = {"scaling": part_scaling, "canary": part_canary, "quality": part_quality}


def main(argv: list[str]) -> None:
    run_parts("ch8", PARTS, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
