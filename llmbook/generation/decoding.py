r"""Text generation from a causal language model: greedy, sampling and beam search.

Every strategy repeats one step: compute the logits of the next token given the text so
far, turn them into a choice, append it.  With a **KV cache** (models that have
``new_cache``, such as :class:`llmbook.models.gpt.GPT`) the step feeds only the newest
token and reuses the keys and values of all earlier ones; without it the whole sequence is
run again.  Both give the same tokens (a test checks it); the cache is just faster.

Logit processing, in this order:

* **repetition penalty** :math:`\rho` (Keskar et al., 2019): the logit :math:`z` of a token
  that already occurs in the sequence becomes :math:`z/\rho` if :math:`z>0`, else
  :math:`z\rho` — with :math:`\rho>1` repeats become less likely;
* **temperature** :math:`\tau`: :math:`p \propto \exp(z/\tau)`; :math:`\tau<1` sharpens,
  :math:`\tau>1` flattens;
* **top-k**: keep the :math:`k` most likely tokens;
* **top-p** (nucleus, Holtzman et al., 2020): keep the smallest set of most likely tokens
  whose probabilities sum to at least :math:`p`.

Prompts: characters outside the tokenizer's vocabulary are encoded as ``<unk>`` (with a
warning that names them); a prompt longer than the model's context is cropped to its last
``block_size`` tokens (with a warning).
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.data.lmdata import right_pad
from llmbook.interfaces import Tokenizer, block_size

__all__ = [
    "GenerationError",
    "GenerationTimeout",
    "generate",
    "generate_text",
    "process_logits",
    "beam_search",
    "beam_search_steps",
    "NextLogits",
    "STRATEGIES",
]


STRATEGIES = ("greedy", "sample", "beam")


class GenerationError(ValueError):
    """Bad generation parameters or prompt; the message says which and how to fix it."""


class GenerationTimeout(GenerationError):
    """Generation passed its ``deadline`` and was stopped (e.g. a server's per-request limit)."""


def _check_deadline(deadline: float | None, produced: int) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise GenerationTimeout(
            f"generation stopped after {produced} new tokens: it passed its deadline; "
            "ask for fewer tokens or allow more time"
        )


def _validate(
    strategy: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
    num_beams: int,
) -> None:
    # Type checks first, so that a string, a bool or NaN/inf is a GenerationError naming
    # the parameter instead of a TypeError from a comparison or NaN logits deep inside
    # sampling (found by tests/test_properties.py).
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise GenerationError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not _is_real(temperature) or not temperature > 0:
        raise GenerationError(
            f"temperature must be > 0, got {temperature!r}; for deterministic output use "
            "strategy='greedy' instead of temperature 0"
        )
    if temperature < MIN_TEMPERATURE:  # logits / temperature would overflow to inf - inf
        raise GenerationError(
            f"temperature must be >= {MIN_TEMPERATURE:g}, got {temperature!r}; for the "
            "most likely token use strategy='greedy'"
        )
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise GenerationError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
        raise GenerationError(f"top_p must be None or in (0, 1], got {top_p!r}")
    if not _is_real(repetition_penalty) or not repetition_penalty > 0:
        raise GenerationError(
            f"repetition_penalty must be > 0 and finite (1.0 = off, > 1 discourages repeats), got {repetition_penalty!r}"
        )
    if not _is_int(num_beams) or num_beams < 1:
        raise GenerationError(f"num_beams must be an int >= 1, got {num_beams!r}")


#: Smallest accepted temperature: below it ``logits / temperature`` overflows float32.
MIN_TEMPERATURE = 1e-6


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    """A finite real number (not a bool, not NaN or infinity)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def process_logits(
    logits: Tensor,
    seqs: Tensor | None = None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> Tensor:
    """Apply repetition penalty, temperature, top-k and top-p to ``logits`` ``[B, V]``.

    Removed tokens get ``-inf``.  ``seqs`` (``[B, L]``) are the tokens so far, needed for
    the repetition penalty.
    """
    logits = logits.float().clone()
    if repetition_penalty != 1.0 and seqs is not None and seqs.numel():
        seen = torch.gather(logits, 1, seqs)
        seen = torch.where(seen > 0, seen / repetition_penalty, seen * repetition_penalty)
        logits.scatter_(1, seqs, seen)
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token if the tokens *before* it already reach top_p (the first is kept)
        drop = probs.cumsum(dim=-1) - probs >= top_p
        # keep the first explicitly: a top_p below float32's range (1e-300) becomes 0.0 in
        # the comparison and dropped every token, giving NaN (found by tests/test_properties.py)
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


class _Stepper:
    """Next-token logits for growing sequences, with a KV cache while they fit the context."""

    def __init__(self, model: nn.Module, use_cache: bool) -> None:
        self.model = model
        self.block = block_size(model)
        self.use_cache = use_cache and hasattr(model, "new_cache")
        self.cache: Any = None

    def __call__(self, seqs: Tensor) -> Tensor:
        if self.use_cache and seqs.size(1) <= self.block:
            if self.cache is None:
                self.cache = self.model.new_cache(seqs.size(0))  # type: ignore[operator]
                logits, _ = self.model(seqs, cache=self.cache)
            else:
                logits, _ = self.model(seqs[:, self.cache.length :], cache=self.cache)
        else:  # no cache, or the text outgrew the context: run the last block_size tokens
            self.cache = None
            logits, _ = self.model(seqs[:, -self.block :])
        return logits[:, -1, :].float()

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)


def _crop_prompt(idx: Tensor, block: int) -> Tensor:
    if idx.size(1) > block:
        warnings.warn(
            f"the prompt has {idx.size(1)} tokens, more than the model's context of {block}; "
            f"only its last {block} tokens are used",
            stacklevel=3,
        )
        idx = idx[:, -block:]
    return idx


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    *,
    strategy: str = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    deadline: float | None = None,
) -> Tensor:
    """Continue every row of ``idx`` (``[B, T]`` token ids) by up to ``max_new_tokens``.

    ``strategy``: ``"greedy"`` (most likely token; ``temperature``/``top_k``/``top_p``
    are ignored), ``"sample"`` (draw from the processed distribution, reproducible with
    ``generator``) or ``"beam"`` (:func:`beam_search` with ``num_beams``).  A row that
    produces ``eos_id`` stops; its remaining positions are filled with ``eos_id``, and
    generation ends early when every row has stopped.  Returns ``[B, T + n]``.

    ``deadline`` is a :func:`time.monotonic` time: past it, the loop stops between two
    tokens and raises :class:`GenerationTimeout` (a server uses it to bound the work a
    request can cause, not just how long the client waits).
    """
    _validate(strategy, max_new_tokens, temperature, top_k, top_p, repetition_penalty, num_beams)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise GenerationError(
            f"idx must be a [batch, time] tensor with at least one token (e.g. <bos>), got {tuple(idx.shape)}"
        )
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        idx = _crop_prompt(idx.to(device), block_size(model))
        if strategy == "beam":
            return beam_search(
                model,
                idx,
                max_new_tokens,
                num_beams=num_beams,
                repetition_penalty=repetition_penalty,
                length_penalty=length_penalty,
                eos_id=eos_id,
                use_cache=use_cache,
                deadline=deadline,
            )
        step = _Stepper(model, use_cache)
        seqs = idx
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=device)
        for produced in range(max_new_tokens):
            _check_deadline(deadline, produced)
            logits = step(seqs)
            if strategy == "greedy":
                logits = process_logits(logits, seqs, repetition_penalty=repetition_penalty)
                nxt = logits.argmax(dim=-1)
            else:
                logits = process_logits(
                    logits,
                    seqs,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    repetition_penalty=repetition_penalty,
                )
                nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done |= nxt == eos_id
            seqs = torch.cat([seqs, nxt[:, None]], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return seqs
    finally:
        model.train(was_training)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    repetition_penalty: float = 1.0,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    use_cache: bool = True,
    deadline: float | None = None,
) -> Tensor:
    r"""Beam search: keep the ``num_beams`` most probable continuations of every row.

    A finished hypothesis (it produced ``eos_id``) is scored
    :math:`\log p / \text{len}^{\alpha}` with :math:`\alpha` = ``length_penalty``;
    a row stops when it has ``num_beams`` finished hypotheses.  Returns the best
    hypothesis per row, padded with ``eos_id`` (or cut to the shortest common length).
    The search itself is :func:`beam_search_steps`; this function feeds it ``model``'s
    next-token logits (with the KV cache when ``use_cache``).
    """
    step = _Stepper(model, use_cache)
    return beam_search_steps(
        step,
        idx,
        max_new_tokens,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
        length_penalty=length_penalty,
        eos_id=eos_id,
        reorder=step.reorder,
        deadline=deadline,
    )


#: ``next_logits(seqs [N, T]) -> [N, V]``: the logits of the token after each sequence.
NextLogits = Callable[[Tensor], Tensor]


@torch.no_grad()
def beam_search_steps(
    next_logits: NextLogits,
    idx: Tensor,
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    repetition_penalty: float = 1.0,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    reorder: Callable[[Tensor], None] | None = None,
    deadline: float | None = None,
) -> Tensor:
    r"""The beam search of :func:`beam_search` for any model, given as ``next_logits``.

    ``next_logits`` maps the ``[B * num_beams, T]`` current hypotheses (row ``b``'s beams
    are rows ``b * num_beams …``) to their next-token logits ``[B * num_beams, V]``; an
    encoder–decoder passes a function that runs its decoder on the encoded source
    (:func:`llmbook.applications.seq2seq.beam_search`).  After every step the surviving
    hypotheses are reordered: ``reorder(index)`` (if given) is told which old row each new
    row continues, e.g. to reorder a KV cache.  Each step keeps, per row, the best
    ``num_beams`` of all continuations that do not end in ``eos_id`` (looking at the best
    ``2 * num_beams``, so that beams ending here cannot crowd out the others).
    """
    if not isinstance(num_beams, int) or num_beams < 1:
        raise GenerationError(f"num_beams must be an int >= 1, got {num_beams!r}")
    B, T = idx.shape
    K = num_beams
    device = idx.device
    seqs = idx.repeat_interleave(K, dim=0)  # [B*K, T]
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first one is live at first
    finished: list[list[tuple[float, Tensor]]] = [[] for _ in range(B)]
    row_done = [False] * B
    for t in range(max_new_tokens):
        _check_deadline(deadline, t)
        logits = next_logits(seqs)
        logits = process_logits(logits, seqs, repetition_penalty=repetition_penalty)
        logp = F.log_softmax(logits, dim=-1)  # [B*K, V]
        V = logp.size(-1)
        cand = (scores.view(-1, 1) + logp).view(B, K * V)
        top_scores, top_ids = cand.topk(2 * K, dim=-1)  # room for beams that end here
        new_scores = torch.full((B, K), float("-inf"), device=device)
        new_src = torch.zeros(B, K, dtype=torch.long, device=device)
        new_tok = torch.zeros(B, K, dtype=torch.long, device=device)
        for b in range(B):
            j = 0
            for s, flat in zip(top_scores[b].tolist(), top_ids[b].tolist()):
                if s == float("-inf"):
                    break
                src, tok = divmod(flat, V)
                if eos_id is not None and tok == eos_id:
                    if not row_done[b]:
                        hyp = torch.cat([seqs[b * K + src], torch.tensor([tok], device=device)])
                        finished[b].append((s / (t + 1) ** length_penalty, hyp))
                    continue
                if j < K:
                    new_scores[b, j], new_src[b, j], new_tok[b, j] = s, src, tok
                    j += 1
                if j == K:
                    break
            if len(finished[b]) >= K:
                row_done[b] = True
        index = (torch.arange(B, device=device)[:, None] * K + new_src).view(-1)
        seqs = torch.cat([seqs.index_select(0, index), new_tok.view(-1, 1)], dim=1)
        if reorder is not None:
            reorder(index)
        scores = new_scores
        if all(row_done):
            break
    n_new = seqs.size(1) - T
    out = []
    for b in range(B):
        hyps = list(finished[b])
        if not row_done[b] or not hyps:  # unfinished beams compete too
            for k in range(K):
                if scores[b, k] > float("-inf"):
                    hyps.append(
                        (float(scores[b, k]) / max(1, n_new) ** length_penalty, seqs[b * K + k])
                    )
        out.append(max(hyps, key=lambda h: h[0])[1])
    result, _ = right_pad(out, eos_id if eos_id is not None else 0)
    return result.to(device)


def _encode_prompt(tokenizer: Tokenizer, prompt: str) -> list[int]:
    if not isinstance(prompt, str):
        raise GenerationError(f"prompt must be a str, got {type(prompt).__name__}")
    ids = tokenizer.encode(prompt)
    unk = (
        [ch for ch, i in zip(prompt, ids) if i == tokenizer.unk_id]
        if len(ids) == len(prompt)
        else []
    )
    if tokenizer.unk_id in ids:
        warnings.warn(
            f"the prompt has characters outside the vocabulary {unk or ''}; they are encoded "
            "as <unk>, which the model rarely saw in training",
            stacklevel=3,
        )
    return [tokenizer.bos_id, *ids]


def generate_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str | Sequence[str] = "",
    max_new_tokens: int = 64,
    *,
    strategy: str = "sample",
    num_samples: int = 1,
    seed: int | None = 0,
    stop_at: str | None = "\n",
    use_cache: bool = True,
    **kwargs: Any,
) -> list[str]:
    """Generate text for one prompt (or several) and return the decoded strings.

    Each result is the prompt followed by the continuation, up to (not including) the
    first ``stop_at`` string (default ``"\\n"``, the end of a poem in the book's corpus).
    The model sees ``<bos>`` + the prompt.  ``num_samples`` continuations are drawn per
    prompt (results are grouped by prompt, in order); prompts of equal length are
    generated as one batch.  ``seed`` makes sampling reproducible.  Other keyword
    arguments go to :func:`generate`.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise GenerationError(f"num_samples must be an int >= 1, got {num_samples!r}")
    stop_id = None
    if stop_at:
        stop_ids = tokenizer.encode(stop_at)
        if len(stop_ids) == 1 and stop_ids[0] != tokenizer.unk_id:
            stop_id = stop_ids[0]
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(seed)
    encoded = [_encode_prompt(tokenizer, p) for p in prompts]
    # Prompts of the same length are generated together, as one batch.
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(i)
    results: dict[int, list[str]] = {}
    for length, members in groups.items():
        idx = torch.tensor(
            [encoded[i] for i in members for _ in range(num_samples)], dtype=torch.long
        )
        seqs = generate(
            model,
            idx,
            max_new_tokens,
            strategy=strategy,
            eos_id=stop_id,
            use_cache=use_cache,
            generator=gen,
            **kwargs,
        ).tolist()
        n_prompt = min(length, block_size(model))
        for j, i in enumerate(members):
            texts = []
            for row in seqs[j * num_samples : (j + 1) * num_samples]:
                text = tokenizer.decode(row[n_prompt:])
                if stop_at and stop_at in text:
                    text = text[: text.index(stop_at)]
                texts.append(prompts[i] + text)
            results[i] = texts
    return [t for i in range(len(prompts)) for t in results[i]]
