"""汉字 → 拼音 (with tones) as a sequence-to-sequence task for chapter 3's Transformer.

Labels come from ``pypinyin`` (``Style.TONE3``: ``"zhong1 guo2"``), which resolves many
polyphonic characters (行 xing2/hang2, 长 chang2/zhang3 …) from phrase dictionaries, so the
model must use context.  The data are short segments of People's Daily sentences (only
Chinese characters, cut at punctuation), split into train/valid/test by a hash of the text.

* :func:`pinyin_pairs` builds ``(hanzi, pinyin)`` pairs; :class:`Vocab` maps tokens to ids.
* :func:`train_seq2seq` trains :class:`llmbook.models.transformer.Seq2SeqTransformer` with
  teacher forcing; :func:`greedy` and :func:`beam_search` decode.
* :func:`char_baseline` is the context-free baseline: each character's most common reading.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "to_pinyin",
    "hanzi_segments",
    "pinyin_pairs",
    "Vocab",
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


def _bucket(text: str) -> float:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF


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
        b = _bucket(s)
        which = "test" if b < test else "valid" if b < test + valid else "train"
        if which == split:
            chosen.append(s)
            if n is not None and len(chosen) >= n:
                break
    return [(s, to_pinyin(s)) for s in chosen]


@dataclass
class Vocab:
    """Token ↔ id with ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3."""

    tokens: list[str] = field(default_factory=lambda: ["<pad>", "<unk>", "<bos>", "<eos>"])

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences: Sequence[Sequence[str]], min_freq: int = 1) -> Vocab:
        counts = Counter(t for seq in sequences for t in seq)
        v = cls()
        v.tokens += sorted(t for t, c in counts.items() if c >= min_freq)
        v.__post_init__()
        return v

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, seq: Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.index.get(t, 1) for t in seq]
        return ([2] if bos else []) + ids + ([3] if eos else [])

    def decode(self, ids: Sequence[int]) -> list[str]:
        out = []
        for i in ids:
            if i == 3:
                break
            if i > 3:
                out.append(self.tokens[i])
        return out


def _pad(rows: Sequence[Sequence[int]]) -> Tensor:
    T = max(len(r) for r in rows)
    out = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


@dataclass
class Seq2SeqRun:
    """A trained model with its vocabularies and loss history."""

    model: Any
    src_vocab: Vocab
    tgt_vocab: Vocab
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
    """Train a :class:`Seq2SeqTransformer` from characters to pinyin syllables."""
    from llmbook.models.transformer import Seq2SeqTransformer, TransformerConfig
    from llmbook.utils import progress_bar

    if not pairs:
        raise ValueError("no training pairs given")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    src_v = Vocab.build([list(h) for h, _ in pairs])
    tgt_v = Vocab.build([p.split() for _, p in pairs])
    max_len = max(max(len(h), len(p.split())) for h, p in pairs) + 2
    cfg = TransformerConfig(
        src_vocab_size=len(src_v),
        tgt_vocab_size=len(tgt_v),
        d_model=d_model,
        n_heads=n_heads,
        n_encoder_layers=layers,
        n_decoder_layers=layers,
        dropout=0.1,
        max_len=max_len,
    )
    model = Seq2SeqTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    src_ids = [src_v.encode(list(h)) for h, _ in pairs]
    tgt_ids = [tgt_v.encode(p.split(), bos=True, eos=True) for _, p in pairs]
    losses = []
    model.train()
    t0 = time.perf_counter()
    for _ in progress_bar(range(steps), disable=not progress, desc="seq2seq"):
        idx = [rng.randrange(len(pairs)) for _ in range(batch_size)]
        src = _pad([src_ids[i] for i in idx])
        tgt = _pad([tgt_ids[i] for i in idx])
        logits = model(src, tgt[:, :-1])
        gold = tgt[:, 1:].masked_fill(tgt[:, 1:] == 0, -100)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), gold.reshape(-1), ignore_index=-100
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return Seq2SeqRun(model, src_v, tgt_v, losses, time.perf_counter() - t0)


@torch.no_grad()
def greedy(run: Seq2SeqRun, texts: Sequence[str], batch_size: int = 256) -> list[str]:
    """Greedy decoding with the model's own ``greedy_decode``; returns pinyin strings."""
    out = []
    for s in range(0, len(texts), batch_size):
        chunk = texts[s : s + batch_size]
        src = _pad([run.src_vocab.encode(list(t)) for t in chunk])
        ids = run.model.greedy_decode(src, bos_id=2, eos_id=3, max_new_tokens=src.size(1) + 2)
        out += [" ".join(run.tgt_vocab.decode(row)) for row in ids.tolist()]
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
    model = run.model
    src = _pad([run.src_vocab.encode(list(text))])
    src_mask = src == 0
    memory = model.encode(src, src_mask)
    beams: list[tuple[float, list[int]]] = [(0.0, [2])]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(len(text) + max_extra):
        if not beams:
            break
        tgt = torch.tensor([b[1] for b in beams])
        logits = model.decode(
            tgt,
            memory.expand(len(beams), -1, -1),
            src_mask.expand(len(beams), -1),
            torch.zeros_like(tgt, dtype=torch.bool),
        )
        logp = torch.log_softmax(logits[:, -1].float(), -1)
        cand = []
        for b, (score, seq) in enumerate(beams):
            top = torch.topk(logp[b], beam)
            for lp, tok in zip(top.values.tolist(), top.indices.tolist()):
                cand.append((score + lp, seq + [tok]))
        cand.sort(key=lambda c: -c[0])
        beams = []
        for score, seq in cand:
            if seq[-1] == 3:
                finished.append((score / max(1, len(seq) - 1) ** length_penalty, seq))
            else:
                beams.append((score, seq))
            if len(beams) == beam:
                break
        if len(finished) >= beam:
            break
    pool = finished or beams
    best = max(pool, key=lambda c: c[0])[1]
    return " ".join(run.tgt_vocab.decode(best[1:]))


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
