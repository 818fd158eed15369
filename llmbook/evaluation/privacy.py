r"""Memorisation of training data: canaries, exposure and extraction (Carlini et al. 2019).

To measure how much a language model memorises *rare* strings of its training data,
"The Secret Sharer" inserts a **canary** — a fixed prefix followed by a random secret,
e.g. ``"王小明的银行卡密码是" + "38147"`` — :math:`k` times into the training text,
trains, and asks how the model ranks the true secret among all possible ones
:math:`\mathcal R` (here: every digit string of the same length).

With :math:`\operatorname{rank}(s)` the position of the true secret when all candidates
are sorted by the model's probability (1 = most probable), the **exposure** is

.. math:: \operatorname{exposure}(s) = \log_2 |\mathcal R| - \log_2 \operatorname{rank}(s).

It is 0 bits when the secret is the least likely candidate, about 1 bit for a model
that knows nothing, and :math:`\log_2|\mathcal R|` when the secret is the model's top
choice — then greedy decoding after the prefix *extracts* it.

The candidates' probabilities are computed exactly by expanding the tree of digit
prefixes level by level (:func:`candidate_log_probs`): :math:`|\mathcal A|^{m}` candidates
of :math:`m` characters cost only about :math:`|\mathcal A|^{m-1}\cdot 1.1` short forward
passes, instead of :math:`|\mathcal A|^m` full ones.

:func:`deduplicate` (exact duplicates after normalising whitespace) is the simplest
defence: a canary repeated :math:`k` times is kept once.
"""

from __future__ import annotations

import hashlib
import math
import random
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from llmbook.interfaces import Tokenizer, block_size

__all__ = [
    "Canary",
    "make_canaries",
    "insert_canaries",
    "deduplicate",
    "candidate_log_probs",
    "exposure",
    "greedy_continuation",
    "CanaryReport",
    "evaluate_canaries",
]


@dataclass(frozen=True)
class Canary:
    """A canary: ``prefix + secret``, inserted ``copies`` times into the training text."""

    prefix: str
    secret: str
    copies: int

    @property
    def text(self) -> str:
        return self.prefix + self.secret


def make_canaries(
    prefixes: Sequence[str],
    copies: Sequence[int],
    *,
    length: int = 5,
    seed: int = 0,
    alphabet: str = "0123456789",
) -> list[Canary]:
    """One canary per prefix, with a random secret of ``length`` characters of ``alphabet``."""
    if len(prefixes) != len(copies):
        raise ValueError(
            f"got {len(prefixes)} prefixes but {len(copies)} copy counts; give one count per prefix"
        )
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if any(k < 0 for k in copies):
        raise ValueError(f"copy counts must be >= 0, got {list(copies)}")
    rng = random.Random(seed)
    return [
        Canary(p, "".join(rng.choice(alphabet) for _ in range(length)), int(k))
        for p, k in zip(prefixes, copies)
    ]


def insert_canaries(
    texts: Sequence[str], canaries: Iterable[Canary], *, seed: int = 0
) -> list[str]:
    """A copy of ``texts`` with each canary's text inserted ``copies`` times at random places."""
    out = list(texts)
    rng = random.Random(seed)
    for c in canaries:
        for _ in range(c.copies):
            out.insert(rng.randrange(len(out) + 1), c.text)
    return out


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def deduplicate(texts: Iterable[str]) -> list[str]:
    """Drop exact duplicates (after Unicode NFKC and whitespace normalisation), keep order."""
    seen: set[bytes] = set()
    out = []
    for t in texts:
        h = hashlib.blake2b(_normalise(t).encode("utf-8"), digest_size=16).digest()
        if h not in seen:
            seen.add(h)
            out.append(t)
    return out


def _ids(tokenizer: Tokenizer, text: str, what: str, add_bos: bool = False) -> list[int]:
    ids = list(tokenizer.encode(text, add_bos=add_bos))
    unk = getattr(tokenizer, "unk_id", None)
    if unk is not None and unk in ids[int(add_bos) :]:
        raise ValueError(
            f"the {what} {text!r} contains characters the tokenizer does not know; fit the "
            "tokenizer on the training text *with* the canaries inserted, plus the whole "
            "secret alphabet (e.g. CharTokenizer.fit(texts + ['0123456789']))"
        )
    return ids


@torch.no_grad()
def candidate_log_probs(
    model: nn.Module,
    tokenizer: Tokenizer,
    prefix: str,
    *,
    length: int,
    alphabet: str = "0123456789",
    add_bos: bool = True,
    batch_size: int = 1024,
) -> np.ndarray:
    """Natural-log probability of every ``length``-character string over ``alphabet``.

    The model sees ``<bos>`` (with ``add_bos=True``, as texts start in
    :func:`llmbook.data.lmdata.encode_corpus`) and ``prefix``, then the candidate.
    The result has :math:`|\\text{alphabet}|^{\\text{length}}` entries in lexicographic
    order of the candidates (``"00000", "00001", …`` for digits), so the index of a
    secret is its value in base ``len(alphabet)``.  Exact, computed level by level.
    """
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    sym = [_ids(tokenizer, ch, "alphabet character") for ch in alphabet]
    if any(len(s) != 1 for s in sym):
        raise ValueError("every alphabet character must be exactly one token (use a CharTokenizer)")
    sym_ids = torch.tensor([s[0] for s in sym])
    base = _ids(tokenizer, prefix, "prefix", add_bos)
    block = block_size(model)
    if len(base) + length > block:
        raise ValueError(
            f"prefix ({len(base)} tokens) plus secret ({length}) exceeds block_size {block}; "
            "use a shorter prefix"
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    a = len(alphabet)
    seqs = torch.tensor([base], dtype=torch.long)  # [n_prefixes, len]
    logp = torch.zeros(1, dtype=torch.float64)
    for _ in range(length):
        level = []
        for i in range(0, seqs.size(0), batch_size):
            chunk = seqs[i : i + batch_size].to(device)
            logits, _ = model(chunk)
            lp = torch.log_softmax(logits[:, -1, :].double(), dim=-1).cpu()
            level.append(lp[:, sym_ids])  # [chunk, a]
        step = torch.cat(level)  # [n_prefixes, a]
        logp = (logp[:, None] + step).reshape(-1)
        seqs = torch.cat(
            [seqs.repeat_interleave(a, dim=0), sym_ids.repeat(seqs.size(0))[:, None]], dim=1
        )
    model.train(was_training)
    return logp.numpy()


def exposure(log_probs: np.ndarray, index: int) -> tuple[float, int]:
    """``(exposure in bits, rank)`` of candidate ``index`` among ``log_probs``.

    rank = 1 + the number of candidates strictly more probable than the secret.
    """
    if not 0 <= index < len(log_probs):
        raise IndexError(f"index {index} out of range for {len(log_probs)} candidates")
    rank = 1 + int(np.sum(log_probs > log_probs[index]))
    return math.log2(len(log_probs)) - math.log2(rank), rank


@torch.no_grad()
def greedy_continuation(
    model: nn.Module, tokenizer: Tokenizer, prefix: str, length: int, *, add_bos: bool = True
) -> str:
    """The ``length`` characters greedy decoding produces after (``<bos>`` and) ``prefix``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = _ids(tokenizer, prefix, "prefix", add_bos)
    out: list[int] = []
    for _ in range(length):
        x = torch.tensor([ids + out], dtype=torch.long, device=device)
        logits, _ = model(x[:, -block_size(model) :])
        out.append(int(logits[0, -1].argmax()))
    model.train(was_training)
    return str(tokenizer.decode(out))


@dataclass(frozen=True)
class CanaryReport:
    """Exposure of one canary after training."""

    prefix: str
    secret: str
    copies: int
    rank: int
    exposure: float
    max_exposure: float
    extracted: bool


def evaluate_canaries(
    model: nn.Module,
    tokenizer: Tokenizer,
    canaries: Sequence[Canary],
    *,
    alphabet: str = "0123456789",
    add_bos: bool = True,
) -> list[CanaryReport]:
    """Exposure, rank and greedy extraction of every canary."""
    reports = []
    for c in canaries:
        if any(ch not in alphabet for ch in c.secret):
            raise ValueError(
                f"secret {c.secret!r} has characters outside the alphabet {alphabet!r}"
            )
        lp = candidate_log_probs(
            model, tokenizer, c.prefix, length=len(c.secret), alphabet=alphabet, add_bos=add_bos
        )
        index = 0
        for ch in c.secret:
            index = index * len(alphabet) + alphabet.index(ch)
        exp, rank = exposure(lp, index)
        guess = greedy_continuation(model, tokenizer, c.prefix, len(c.secret), add_bos=add_bos)
        reports.append(
            CanaryReport(
                c.prefix, c.secret, c.copies, rank, exp, math.log2(len(lp)), guess == c.secret
            )
        )
    return reports
