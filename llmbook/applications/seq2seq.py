"""汉字 → 拼音 (with tones) as a sequence-to-sequence task for chapter 3's Transformer.

Labels come from ``pypinyin`` (``Style.TONE3``: ``"zhong1 guo2"``), which resolves many
polyphonic characters (行 xing2/hang2, 长 chang2/zhang3 …) from phrase dictionaries, so the
model must use context.  The data are short segments of People's Daily sentences (only
Chinese characters, cut at punctuation), split into train/valid/test by a hash of the text.

* :func:`pinyin_pairs` builds ``(hanzi, pinyin)`` pairs; a
  :class:`~llmbook.text.tokenizers.CharTokenizer` maps the characters and a
  :class:`SyllableTokenizer` the pinyin syllables to ids (both built by :func:`fit_sorted`).
* :func:`train_seq2seq` trains :class:`llmbook.models.transformer.Seq2SeqTransformer` with
  teacher forcing; :func:`greedy` and :func:`beam_search` (the search of
  :func:`llmbook.generation.decoding.beam_search_steps`, run on the decoder) decode.
* :func:`char_baseline` is the context-free baseline: each character's most common reading.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook.data.lmdata import right_pad
from llmbook.data.registry import hash_fraction
from llmbook.generation.decoding import beam_search_steps
from llmbook.interfaces import Tokenizer
from llmbook.text.tokenizers import SPECIAL_TOKENS, CharTokenizer, VocabTokenizer

__all__ = [
    "to_pinyin",
    "hanzi_segments",
    "pinyin_pairs",
    "SyllableTokenizer",
    "fit_sorted",
    "Seq2SeqRun",
    "train_seq2seq",
    "greedy",
    "beam_search",
    "char_baseline",
]

_HAN = re.compile(r"[\u4e00-\u9fff]+")


def to_pinyin(text: str) -> str:
    """Pinyin of ``text`` with tone numbers, syllables separated by spaces (pypinyin)."""
    from pypinyin import Style, lazy_pinyin

    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))


def hanzi_segments(lines: Sequence[str], min_len: int = 4, max_len: int = 12) -> list[str]:
    """Runs of Chinese characters from ``lines`` with ``min_len..max_len`` characters
    (longer runs are cut into pieces), de-duplicated in order."""
    out: dict[str, None] = {}
    for line in lines:
        for run in _HAN.findall(line):
            for s in range(0, len(run), max_len):
                piece = run[s : s + max_len]
                if len(piece) >= min_len:
                    out.setdefault(piece, None)
    return list(out)


def pinyin_pairs(
    n: int | None = None, split: str = "train", test: float = 0.05, valid: float = 0.05
) -> list[tuple[str, str]]:
    """``(hanzi, pinyin)`` pairs from People's Daily, fixed split by hash; first ``n`` of them."""
    from llmbook.data.people_daily import people_daily_text

    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    segs = hanzi_segments(people_daily_text())
    chosen = []
    for s in segs:
        b = hash_fraction(s)
        which = "test" if b < test else "valid" if b < test + valid else "train"
        if which == split:
            chosen.append(s)
            if n is not None and len(chosen) >= n:
                break
    return [(s, to_pinyin(s)) for s in chosen]


class SyllableTokenizer(VocabTokenizer):
    """Tokens separated by whitespace, e.g. pinyin syllables: ``"zhong1 guo2"`` → 2 tokens.

    ``decode`` joins the tokens with one space.
    """

    kind: ClassVar[str] = "syllable"
    _joiner: ClassVar[str] = " "

    @classmethod
    def _split(cls, text: str) -> list[str]:
        return text.split()


V = TypeVar("V", bound=VocabTokenizer)


def fit_sorted(cls: type[V], texts: Iterable[str]) -> V:
    """A ``cls`` tokenizer whose vocabulary is the special tokens, then every token of
    ``texts`` in sorted order (so the ids depend on the set of tokens, not on their order
    or frequency)."""
    tokens = sorted({t for text in texts for t in cls._split(text)} - set(SPECIAL_TOKENS))
    return cls([*SPECIAL_TOKENS, *tokens])


def _until_eos(ids: Sequence[int], eos_id: int) -> list[int]:
    ids = list(ids)
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


@dataclass
class Seq2SeqRun:
    """A trained model with its source and target tokenizers and loss history."""

    model: Any
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    losses: list[float]
    seconds: float


def train_seq2seq(
    pairs: Sequence[tuple[str, str]],
    *,
    d_model: int = 128,
    n_heads: int = 4,
    layers: int = 2,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> Seq2SeqRun:
    """Train a :class:`Seq2SeqTransformer` from characters to pinyin syllables.

    AdamW; the learning rate warms up over the first tenth of the steps, then decays
    along a cosine to 0 (:func:`llmbook.optim.warmup_cosine`); gradient norm clipped to 1.
    """
    from llmbook.models.transformer import Seq2SeqTransformer, TransformerConfig
    from llmbook.optim import optimizer_step, warmup_cosine
    from llmbook.utils import progress_bar

    if not pairs:
        raise ValueError("no training pairs given")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    src_tok = fit_sorted(CharTokenizer, [h for h, _ in pairs])
    tgt_tok = fit_sorted(SyllableTokenizer, [p for _, p in pairs])
    max_len = max(max(len(h), len(p.split())) for h, p in pairs) + 2
    cfg = TransformerConfig(
        src_vocab_size=src_tok.vocab_size,
        tgt_vocab_size=tgt_tok.vocab_size,
        d_model=d_model,
        n_heads=n_heads,
        n_encoder_layers=layers,
        n_decoder_layers=layers,
        dropout=0.1,
        max_len=max_len,
        pad_id=src_tok.pad_id,
    )
    model = Seq2SeqTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    src_ids = [src_tok.encode(h) for h, _ in pairs]
    tgt_ids = [tgt_tok.encode(p, add_bos=True, add_eos=True) for _, p in pairs]
    losses = []
    model.train()
    t0 = time.perf_counter()
    for step in progress_bar(range(steps), disable=not progress, desc="seq2seq"):
        idx = [rng.randrange(len(pairs)) for _ in range(batch_size)]
        src, _ = right_pad([src_ids[i] for i in idx], src_tok.pad_id)
        tgt, _ = right_pad([tgt_ids[i] for i in idx], tgt_tok.pad_id)
        logits = model(src, tgt[:, :-1])
        gold = tgt[:, 1:].masked_fill(tgt[:, 1:] == tgt_tok.pad_id, -100)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), gold.reshape(-1), ignore_index=-100
        )
        step_lr = warmup_cosine(step, lr=lr, total_steps=steps, warmup_steps=steps // 10)
        optimizer_step(model, opt, loss, lr=step_lr, clip=1.0)
        losses.append(loss.item())
    model.eval()
    return Seq2SeqRun(model, src_tok, tgt_tok, losses, time.perf_counter() - t0)


@torch.no_grad()
def greedy(run: Seq2SeqRun, texts: Sequence[str], batch_size: int = 256) -> list[str]:
    """Greedy decoding with the model's own ``greedy_decode``; returns pinyin strings."""
    src_tok, tgt_tok = run.src_tokenizer, run.tgt_tokenizer
    out = []
    for s in range(0, len(texts), batch_size):
        chunk = texts[s : s + batch_size]
        src, _ = right_pad([src_tok.encode(t) for t in chunk], src_tok.pad_id)
        ids = run.model.greedy_decode(
            src, bos_id=tgt_tok.bos_id, eos_id=tgt_tok.eos_id, max_new_tokens=src.size(1) + 2
        )
        out += [tgt_tok.decode(_until_eos(row, tgt_tok.eos_id)) for row in ids.tolist()]
    return out


@torch.no_grad()
def beam_search(
    run: Seq2SeqRun, text: str, beam: int = 4, max_extra: int = 2, length_penalty: float = 0.0
) -> str:
    """Beam search for one source text: keep the ``beam`` best prefixes by total log-prob.

    Finished hypotheses (ending in ``<eos>``) are ranked by log-prob divided by
    ``len ** length_penalty`` (0: no normalisation).
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    model, src_tok, tgt_tok = run.model, run.src_tokenizer, run.tgt_tokenizer
    src, _ = right_pad([src_tok.encode(text)], src_tok.pad_id)
    src_mask = src == src_tok.pad_id
    memory = model.encode(src, src_mask)

    def next_logits(seqs: Tensor) -> Tensor:  # the decoder on the one encoded source
        n = seqs.size(0)
        no_pad = torch.zeros_like(seqs, dtype=torch.bool)
        logits = model.decode(seqs, memory.expand(n, -1, -1), src_mask.expand(n, -1), no_pad)
        return logits[:, -1].float()

    best = beam_search_steps(
        next_logits,
        torch.tensor([[tgt_tok.bos_id]]),
        len(text) + max_extra,
        num_beams=beam,
        length_penalty=length_penalty,
        eos_id=tgt_tok.eos_id,
    )
    return tgt_tok.decode(_until_eos(best[0, 1:].tolist(), tgt_tok.eos_id))


def char_baseline(train_pairs: Sequence[tuple[str, str]]) -> Any:
    """Context-free baseline: each character's most frequent syllable in ``train_pairs``
    (unseen characters fall back to pypinyin's single-character reading)."""
    counts: dict[str, Counter[str]] = {}
    for h, p in train_pairs:
        for ch, syl in zip(h, p.split()):
            counts.setdefault(ch, Counter())[syl] += 1
    table = {ch: c.most_common(1)[0][0] for ch, c in counts.items()}

    def predict(texts: Sequence[str]) -> list[str]:
        return [" ".join(table.get(ch) or to_pinyin(ch) for ch in t) for t in texts]

    return predict
