"""Chapter 6.3's 汉字 → 拼音 encoder–decoder, trained long and *kept*, for section 3.4.

``python -m llmbook.experiments build ch3-pinyin-seq2seq`` trains
:class:`llmbook.models.transformer.Seq2SeqTransformer` with
:func:`llmbook.applications.seq2seq.train_seq2seq` (the settings of chapter 6.3's long
run) and writes into the artifact folder:

* ``model/``: the checkpoint (:func:`llmbook.training.checkpoint.save_checkpoint`; the
  source :class:`~llmbook.text.tokenizers.CharTokenizer` travels inside it),
* ``target_tokenizer.json``: the pinyin-syllable tokenizer,
* ``losses.json``: the training loss every 100 steps.

Section 3.4 loads it with :func:`load_pinyin_run` to look at the cross-attention.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmbook.applications.seq2seq import (
    Seq2SeqRun,
    SyllableTokenizer,
    greedy,
    pinyin_pairs,
    train_seq2seq,
)
from llmbook.experiments.artifacts import Artifact, BuildContext, builder

__all__ = ["ARTIFACT_DIR", "build_pinyin", "load_pinyin_run", "save_pinyin_run"]

ARTIFACT_DIR = "data/checkpoints/ch3-pinyin-seq2seq"


def save_pinyin_run(run: Seq2SeqRun, folder: Path, config: dict[str, Any]) -> list[float]:
    """Write ``run`` into ``folder`` (``model/``, ``target_tokenizer.json``, ``losses.json``);
    returns the mean training loss of every 100 steps (what ``losses.json`` holds)."""
    from llmbook.training.checkpoint import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        folder / "model",
        run.model,
        run.src_tokenizer,  # type: ignore[arg-type]
        config=config,
        extra={"steps": len(run.losses)},
    )
    run.tgt_tokenizer.save(folder / "target_tokenizer.json")  # type: ignore[attr-defined]
    per_100 = [
        sum(run.losses[i : i + 100]) / len(run.losses[i : i + 100])
        for i in range(0, len(run.losses), 100)
    ]
    (folder / "losses.json").write_text(json.dumps(per_100), encoding="utf-8")
    return per_100


@builder("seq2seq-pinyin")
def build_pinyin(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    """Train the model of ``[train]`` on ``[data]`` pairs; save it and its test scores."""
    data, tr = art.config["data"], art.config["train"]
    train_pairs = pinyin_pairs(int(data["train_pairs"]), "train")
    test_pairs = pinyin_pairs(int(data["test_pairs"]), "test")
    ctx.log(f"{len(train_pairs)} training pairs, {len(test_pairs)} test pairs")
    run = train_seq2seq(
        train_pairs,
        d_model=int(tr["d_model"]),
        n_heads=int(tr["n_heads"]),
        layers=int(tr["layers"]),
        steps=int(tr["steps"]),
        batch_size=int(tr["batch_size"]),
        lr=float(tr["lr"]),
        seed=int(tr["seed"]),
        progress=False,
    )
    pred = greedy(run, [h for h, _ in test_pairs])
    exact = sum(p == g for p, (_, g) in zip(pred, test_pairs)) / len(test_pairs)
    per_100 = save_pinyin_run(run, art.output, config=dict(tr))
    metrics = {
        "train_pairs": len(train_pairs),
        "test_pairs": len(test_pairs),
        "steps": len(run.losses),
        "train_seconds": round(run.seconds, 1),
        "final_loss": round(per_100[-1], 4),
        "test_exact_match": exact,
    }
    return {
        "metrics": metrics,
        "data": "《人民日报》句子片段与其 pypinyin 拼音，按文本哈希划分（同 6.3 节）。",
    }


def load_pinyin_run(folder: str | Path | None = None) -> Seq2SeqRun:
    """The trained model with both tokenizers (``losses`` every 100 steps; ``seconds`` 0).

    Without ``folder``, the shipped artifact: every file is checked against
    ``data/MANIFEST.sha256`` (and downloaded on Colab) by
    :func:`llmbook.data.registry.data_path`.
    """
    from llmbook.data.registry import shipped_checkpoint
    from llmbook.training.checkpoint import load_checkpoint

    if folder is None:
        path = shipped_checkpoint("ch3-pinyin-seq2seq")
    else:
        path = Path(folder)
    if not (path / "model").is_dir():
        raise FileNotFoundError(
            f"{path / 'model'} not found: build it with "
            "`python -m llmbook.experiments build ch3-pinyin-seq2seq`"
        )
    model, src_tok, _ = load_checkpoint(path / "model")
    tgt_tok = SyllableTokenizer.load(path / "target_tokenizer.json")
    losses = json.loads((path / "losses.json").read_text(encoding="utf-8"))
    return Seq2SeqRun(model, src_tok, tgt_tok, losses, 0.0)
