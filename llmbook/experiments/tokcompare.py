"""Section 2.7's tokenizer comparison: the same small GPT trained on characters, jieba
words, byte-level BPE at several vocabulary sizes and a Unigram model, at equal compute.

``python -m llmbook.experiments build ch2-tokenizers`` reads
``configs/artifacts/ch2-tokenizers.toml``.  The data is People's Daily (January 1998,
:func:`llmbook.data.people_daily.people_daily_text`, cleaned with
:func:`llmbook.text.chinese.clean_text`): the last ``valid`` sentences are the validation
set (the held-out sentences of section 2.4), the ones before them the training set.  Every
tokenizer is fitted on the training set only; ``[[tokenizers]]`` tables name them:

``char``
    :class:`~llmbook.text.tokenizers.CharTokenizer`, one token per character;
``word``
    :class:`~llmbook.text.tokenizers.WordTokenizer` (jieba), words seen at least
    ``min_freq`` times;
``bytebpe``
    :class:`~llmbook.text.bpe.ByteBPE` from :func:`~llmbook.text.bpe.train_bpe`; the
    largest vocabulary is trained once and the smaller ones are its prefixes
    (:meth:`~llmbook.text.bpe.ByteBPE.truncated`), which is exactly what training them
    separately gives;
``unigram``
    Hugging Face ``tokenizers``' Unigram model (``UnigramTrainer``) on characters, with the
    same pre-tokenisation pattern as the BPE.

Each tokenizer gets a fresh GPT (``[model]``) trained by the book's trainer with the same
``[train]`` settings: the same steps × batch × block tokens, seed and schedule, so every
model reads the same number of *tokens* (longer tokens mean more text for the same work).
It is scored with the book's bits-per-character protocol
(:func:`llmbook.evaluation.lm.bits_per_char`) on the validation set.

**Unknown tokens.**  A tokenizer with ``<unk>`` lets the model predict "some word I do not
know" cheaply, which would flatter it.  So the reported ``bpc`` charges every unknown
piece of validation text (a word for jieba, a character for the character and Unigram
tokenizers) the bits needed to spell it out with :class:`SpellingModel`, a character
unigram model with a geometric length fitted on the training set: the model pays for
predicting ``<unk>`` and then for the characters it stands for, as a model with a spelling
fallback would.  ``bpc_raw`` (the ``<unk>`` token scored like any other) is kept for
comparison.  Byte-level BPE has no unknowns, so both numbers are the same for it.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

from llmbook.experiments.artifacts import Artifact, BuildContext, builder
from llmbook.text.tokenizers import SPECIAL_TOKENS, BPETokenizer, CharTokenizer, WordTokenizer

__all__ = [
    "ARTIFACT_DIR",
    "KINDS",
    "SpellingModel",
    "UnigramTokenizer",
    "LineWordTokenizer",
    "news_split",
    "fit_tokenizers",
    "unknown_spans",
    "tokenizer_stats",
    "load_results",
    "build_tokcompare",
]

#: Where the artifact lives under ``data/``.
ARTIFACT_DIR = "results/ch2-tokenizers"
KINDS = ("char", "word", "bytebpe", "unigram")


def news_split(valid: int = 2000) -> tuple[list[str], list[str]]:
    """People's Daily as ``(train, valid)``: the last ``valid`` sentences are held out."""
    from llmbook.data.people_daily import people_daily_text
    from llmbook.text.chinese import clean_text

    news = [t for t in (clean_text(s) for s in people_daily_text()) if t]
    if not 0 < valid < len(news):
        raise ValueError(f"valid must be between 1 and {len(news) - 1}, got {valid}")
    return news[:-valid], news[-valid:]


class UnigramTokenizer(BPETokenizer):
    """Hugging Face's Unigram model behind the book's tokenizer interface.

    It reuses :class:`~llmbook.text.tokenizers.BPETokenizer`'s wrapper around a Hugging
    Face tokenizer (ids, ``encode``/``decode``, save and load); only the model differs.
    The text is split with :data:`llmbook.text.bpe.GPT2_PATTERN` (as for the BPE, but on
    characters, not bytes); characters never seen in training become ``<unk>``.
    """

    kind = "unigram"

    @classmethod
    def train(  # type: ignore[override]
        cls, texts: Sequence[str], vocab_size: int
    ) -> UnigramTokenizer:
        from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
        from tokenizers import Tokenizer as HFTokenizer

        from llmbook.text.bpe import GPT2_PATTERN

        hf = HFTokenizer(models.Unigram())
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated")
        hf.decoder = decoders.Fuse()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            unk_token=SPECIAL_TOKENS[1],
            show_progress=False,
        )
        hf.train_from_iterator(list(texts), trainer=trainer)
        return cls(hf)

    def unknown_spans(self, text: str) -> list[str]:
        enc = self._tok.encode(text)
        return [
            text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets, strict=True) if i == self.unk_id
        ]


@cache
def _segment_line(line: str) -> tuple[str, ...]:
    from llmbook.text.chinese import segment

    return tuple(segment(line))


class LineWordTokenizer(WordTokenizer):
    """:class:`~llmbook.text.tokenizers.WordTokenizer` that keeps ``"\\n"`` as a token.

    jieba's segmentation drops whitespace, so the plain word tokenizer would get the
    newline that ends every sentence of the bits-per-character protocol for free; here each
    line is segmented and the newlines are kept between them (segmentations are cached).
    """

    kind = "word-lines"

    @classmethod
    def _split(cls, text: str) -> list[str]:
        out: list[str] = []
        for i, line in enumerate(text.split("\n")):
            if i:
                out.append("\n")
            out.extend(_segment_line(line))
        return out


def unknown_spans(tok: Any, text: str) -> list[str]:
    """The pieces of ``text`` that ``tok`` encodes as ``<unk>`` (for the spelling cost)."""
    if isinstance(tok, UnigramTokenizer):
        return tok.unknown_spans(text)
    if isinstance(tok, CharTokenizer):
        return [c for c in text if c not in tok.stoi]
    if isinstance(tok, WordTokenizer):
        return [w for w in tok.tokenize(text) if w not in tok.stoi]
    return []  # byte-level BPE: never unknown


class SpellingModel:
    """Bits to spell out an unknown piece of text, character by character.

    ``p(piece) = (1 - s)^(n - 1) · s · ∏ p(c)`` for a piece of ``n`` characters: a character
    unigram ``p(c) = (count(c) + 1) / (N + V + 1)`` fitted on the training text (add-one;
    the ``+ 1`` is a bucket for unseen characters, which then pay 16 more bits — one of
    65,536 code points) and a geometric length whose stop probability ``s`` is one over
    the mean length of the words seen once in training, the kind that end up unknown.
    """

    UNSEEN_BITS = 16.0

    def __init__(self, train_texts: Sequence[str], rare_words: Sequence[str]) -> None:
        counts = Counter("".join(train_texts))
        if not counts:
            raise ValueError("SpellingModel needs some training text")
        total = sum(counts.values()) + len(counts) + 1
        self.bits: dict[str, float] = {c: -math.log2((n + 1) / total) for c, n in counts.items()}
        self.unseen = -math.log2(1 / total) + self.UNSEEN_BITS
        mean = sum(len(w) for w in rare_words) / len(rare_words) if rare_words else 2.0
        self.stop = min(1.0 / max(mean, 1.0), 0.99)

    def cost(self, piece: str) -> float:
        """Bits to spell ``piece`` (its characters and its length)."""
        chars = sum(self.bits.get(c, self.unseen) for c in piece)
        length = -math.log2(self.stop) - (len(piece) - 1) * math.log2(1 - self.stop)
        return chars + length


def fit_tokenizers(specs: Sequence[dict[str, Any]], train: Sequence[str]) -> dict[str, Any]:
    """One tokenizer per ``[[tokenizers]]`` table, fitted on ``train`` (in spec order)."""
    from llmbook.text.bpe import train_bpe

    lines = [t + "\n" for t in train]  # the LM data ends every sentence with a newline
    out: dict[str, Any] = {}
    bpe_sizes = [int(s["vocab_size"]) for s in specs if s["kind"] == "bytebpe"]
    biggest = train_bpe(train, max(bpe_sizes)) if bpe_sizes else None
    for s in specs:
        name, kind = s["name"], s["kind"]
        if kind not in KINDS:
            raise ValueError(f"tokenizer {name!r}: kind must be one of {KINDS}, got {kind!r}")
        if kind == "char":
            out[name] = CharTokenizer.fit(lines)
        elif kind == "word":
            out[name] = LineWordTokenizer.fit(lines, min_freq=int(s.get("min_freq", 2)))
        elif kind == "bytebpe":
            assert biggest is not None
            out[name] = biggest.truncated(int(s["vocab_size"]))
        else:
            out[name] = UnigramTokenizer.train(lines, int(s["vocab_size"]))
    return out


def tokenizer_stats(tok: Any, texts: Sequence[str]) -> dict[str, Any]:
    """Characters per token, the share of tokens that are ``<unk>`` and of characters in them."""
    n_chars = n_tok = n_unk = unk_chars = 0
    for t in texts:
        ids = tok.encode(t)
        n_chars += len(t)
        n_tok += len(ids)
        n_unk += sum(1 for i in ids if i == tok.unk_id)
        unk_chars += sum(len(p) for p in unknown_spans(tok, t))
    return {
        "vocab_size": tok.vocab_size,
        "chars_per_token": n_chars / n_tok,
        "unk_rate": n_unk / n_tok,
        "unk_char_rate": unk_chars / n_chars,
    }


def _spelling_bits(tok: Any, texts: Sequence[str], spell: SpellingModel) -> float:
    return sum(spell.cost(p) for t in texts for p in unknown_spans(tok, t + "\n"))


@builder("tokcompare")
def build_tokcompare(art: Artifact, ctx: BuildContext) -> dict[str, Any]:
    import torch

    from llmbook.data.lmdata import encode_corpus
    from llmbook.evaluation.lm import bits_per_char
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.training.trainer import TrainConfig, train
    from llmbook.utils import count_parameters

    cfg = art.config
    specs: list[dict[str, Any]] = cfg.get("tokenizers", [])
    if not specs:
        raise ValueError(f"{art.config_path}: a tokcompare artifact needs [[tokenizers]]")
    names = [s.get("name") for s in specs]
    if None in names or len(set(names)) != len(names):
        raise ValueError(f"{art.config_path}: every [[tokenizers]] needs a distinct name")
    n_valid = int(cfg.get("data", {}).get("valid", 2000))
    train_texts, valid_texts = news_split(n_valid)
    t0 = time.perf_counter()
    toks = fit_tokenizers(specs, train_texts)
    ctx.log(f"{art.name}: tokenizers fitted in {time.perf_counter() - t0:.0f} s")
    counts = Counter(w for t in train_texts for w in _segment_line(t))
    spell = SpellingModel(train_texts, [w for w, n in counts.items() if n == 1])
    n_valid_chars = sum(len(t) + 1 for t in valid_texts)

    rows: list[dict[str, Any]] = ctx.load_state("rows.json", []) if ctx.resume else []
    done = {r["name"] for r in rows}
    for s in specs:
        name = s["name"]
        tok = toks[name]
        tok.save(art.output / f"{name}.tokenizer.json")
        if name in done:
            ctx.log(f"{art.name}: {name} already done, skipped")
            continue
        t1 = time.perf_counter()
        stats = tokenizer_stats(tok, valid_texts)
        train_ids = encode_corpus(train_texts, tok)
        valid_ids = encode_corpus(valid_texts[:200], tok)
        torch.manual_seed(int(cfg["train"].get("seed", 0)))
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, **cfg["model"]))
        tcfg = TrainConfig.from_dict({**cfg["train"], "progress": False, "device": "cpu"})
        result = train(model, train_ids, valid_ids, tcfg)
        raw = bits_per_char(result.model, tok, valid_texts)
        extra = _spelling_bits(tok, valid_texts, spell) / n_valid_chars
        row = {
            "name": name,
            "label": s.get("label", name),
            "kind": s["kind"],
            **stats,
            "train_tokens": int(len(train_ids)),
            "train_chars_per_token": sum(len(t) + 1 for t in train_texts) / len(train_ids),
            "parameters": count_parameters(result.model),
            "tokens_seen": result.steps * tcfg.tokens_per_step,
            "bpc_raw": raw,
            "unk_spelling_bpc": extra,
            "bpc": raw + extra,
            "seconds": time.perf_counter() - t1,
        }
        rows.append(row)
        ctx.save_state("rows.json", rows)
        ctx.log(
            f"{art.name}: {name}: V={tok.vocab_size}, {stats['chars_per_token']:.2f} chars/token, "
            f"unk {stats['unk_rate']:.2%}, bpc {row['bpc']:.3f} (raw {raw:.3f}), "
            f"{row['seconds']:.0f} s"
        )
    order = {n: i for i, n in enumerate(names)}
    rows.sort(key=lambda r: order[r["name"]])
    (art.output / "results.json").write_text(
        json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    metrics: dict[str, Any] = {"train_sentences": len(train_texts), "valid_sentences": n_valid}
    for r in rows:
        for key in ("vocab_size", "chars_per_token", "unk_rate", "bpc", "bpc_raw"):
            metrics[f"{r['name']}_{key}"] = r[key]
    tc = TrainConfig.from_dict(cfg["train"])
    data = (
        f"《人民日报》1998 年 1 月语料（`llmbook.data.people_daily.people_daily_text`，"
        f"`clean_text` 清洗）：最后 {n_valid:,} 句为验证集（即 2.4 节的留出句子），其前 "
        f"{len(train_texts):,} 句为训练集；所有分词器只在训练集上拟合。每个分词器训练一个同样的"
        f"小 GPT（{cfg['model'].get('n_layer')} 层、宽 {cfg['model'].get('n_embd')}、窗口 "
        f"{tc.block_size} 个词元），{tc.max_steps} 步 × {tc.batch_size} 个窗口，种子与学习率"
        "计划相同；bpc 为全书统一协议，未知片段另按训练集上拟合的字符一元模型计入拼写代价。"
    )
    return {"metrics": metrics, "data": data}


def load_results(folder: str = ARTIFACT_DIR) -> list[dict[str, Any]]:
    """The comparison table (one dict per tokenizer), checked against the data manifest."""
    from llmbook.data.registry import DataFileError, data_path

    try:
        path = data_path(f"{folder}/results.json")
    except DataFileError as err:
        raise DataFileError(
            f"{err} — the table comes from `python -m llmbook.experiments build ch2-tokenizers`"
        ) from err
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return rows
