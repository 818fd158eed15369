"""Continuous batching: one decode step serves every running request at once.

A single worker thread owns the model.  Requests become *sequences* (one per prompt and
choice) that wait in a bounded queue; the worker admits them into free *slots* of one
shared KV cache (``max_batch_size`` rows of the model's full context), runs the prompt of
each new sequence alone (the prefill, with the model's own forward and cache), and then
advances every admitted sequence by one token per step, as one batch.  A sequence leaves
its slot as soon as it stops (end of text, a stop string, ``max_tokens``, the end of the
context, its deadline, or a client that went away), and a waiting one takes the slot at
the next step: no request waits for the longest one in its batch.

The sequences of a batch have different lengths, so the decode step
(:func:`ragged_decode_step`) gives each row its own position and masks the cache beyond
it; the model's own forward keeps one length for the whole batch.  Its attention is the
same function as :class:`llmbook.models.gpt.CausalSelfAttention` (a test checks that the
tokens equal :func:`llmbook.generation.decoding.generate`'s).

**Seeded sampling does not depend on the batch.**  Every sequence owns a
:class:`torch.Generator`, seeded from the request's ``seed`` and the choice's index, and
draws exactly one uniform number per token, which picks the token by inverting the
cumulative distribution.  Which other requests share the batch changes neither the
random numbers nor their order; it can only change the logits in the last bits of a
float (matrix products of another shape), which moves a choice only if a uniform number
falls within about 1e-7 of a boundary between two tokens.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbook.generation.decoding import MIN_TEMPERATURE, process_logits
from llmbook.interfaces import Tokenizer, block_size
from llmbook.models.gpt import GPT, Block, CausalSelfAttention, KVCache
from llmbook.models.modern import apply_rope

__all__ = [
    "Batcher",
    "EngineClosed",
    "Event",
    "QueueFull",
    "SamplingParams",
    "Sequence",
    "choice_seed",
    "ragged_decode_step",
]


class QueueFull(RuntimeError):
    """The waiting queue is full (the server answers 429)."""


class EngineClosed(RuntimeError):
    """The batcher is shutting down (the server answers 503)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  #: below MIN_TEMPERATURE: greedy
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """What the worker reports about a sequence: new ``text``, ``done`` or ``error``."""

    kind: str
    text: str = ""
    finish_reason: str | None = None  #: "stop" or "length" (done); a code (error)
    tokens: int = 0  #: tokens generated so far


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` of a request (choice 0 uses ``seed`` itself)."""
    return (seed + index * 0x9E3779B97F4A7C15) % 2**63


@dataclass(eq=False)
class Sequence:
    """One prompt being continued; the worker thread alone changes it after submission."""

    prompt_ids: list[int]
    params: SamplingParams
    deadline: float  #: time.monotonic() after which generation stops
    emit: Callable[[Event], None]  #: called from the worker thread
    new_ids: list[int] = field(default_factory=list)
    sent: int = 0  #: characters of the completion already reported
    slot: int = -1
    cancelled: bool = False  #: set by the client side: stop at the next step
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        self.generator.manual_seed(self.params.seed)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.new_ids)


def _ragged_attention(
    attn: CausalSelfAttention,
    x: Tensor,
    keys: Tensor,
    values: Tensor,
    where: tuple[Tensor, Tensor],
    mask: Tensor,
    rope: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """One new token per row attends to its own row of the shared cache."""
    B, _, C = x.shape
    H, H_kv, D = attn.n_head, attn.n_kv_head, attn.head_dim
    q, k, v = attn.c_attn(x).split([H * D, H_kv * D, H_kv * D], dim=2)
    q, k, v = q.view(B, 1, H, D), k.view(B, 1, H_kv, D), v.view(B, 1, H_kv, D)
    if attn.q_norm is not None and attn.k_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H(_kv), 1, D]
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    slots, pos = where
    keys[slots, :, pos] = k[:, :, 0]  # row b writes its key at its own position
    values[slots, :, pos] = v[:, :, 0]
    L = mask.size(-1)
    y = F.scaled_dot_product_attention(
        q, keys[slots, :, :L], values[slots, :, :L], attn_mask=mask, enable_gqa=H_kv != H
    )
    return attn.c_proj(y.transpose(1, 2).reshape(B, 1, C))


@torch.no_grad()
def ragged_decode_step(
    model: GPT, cache: KVCache, slots: Tensor, positions: Tensor, tokens: Tensor
) -> Tensor:
    """Next-token logits ``[B, V]`` for ``B`` sequences of different lengths, in one pass.

    Row ``b`` feeds ``tokens[b]`` at position ``positions[b]`` of cache row ``slots[b]``,
    whose first ``positions[b]`` entries hold that sequence's earlier keys and values;
    its key and value are written there and it attends to positions ``0 … positions[b]``.
    """
    x = model.wte(tokens)[:, None]  # [B, 1, C]
    rope = None
    if model.wpe is not None:
        x = x + model.wpe(positions)[:, None]
    else:  # per-row angles [B, 1, 1, D] broadcast over heads
        rope = (model.rope_cos[positions][:, None, None], model.rope_sin[positions][:, None, None])
    L = int(positions.max()) + 1
    mask = (torch.arange(L, device=x.device)[None] <= positions[:, None])[:, None, None]
    for i, block in enumerate(model.blocks):
        assert isinstance(block, Block)
        attn = block.attn
        h = block.ln_1(x)
        x = x + _ragged_attention(attn, h, cache.k[i], cache.v[i], (slots, positions), mask, rope)
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.ln_f(x))[:, 0].float()


def sample_token(logits: Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """One token from ``logits`` ``[V]``: greedy at temperature 0, else one uniform draw."""
    if params.temperature < MIN_TEMPERATURE:
        return int(logits.argmax())
    top_p = params.top_p if params.top_p < 1.0 else None
    z = process_logits(logits.cpu()[None], temperature=params.temperature, top_p=top_p)[0]
    cdf = z.double().softmax(-1).cumsum(0)
    u = torch.rand((), generator=generator, dtype=torch.float64)
    return int(torch.searchsorted(cdf, u * cdf[-1], right=True).clamp(max=cdf.numel() - 1))


class Batcher:
    """The worker thread that batches every running sequence per decode step.

    ``submit`` is called from the event loop; events go back through each sequence's
    ``emit``.  ``max_queue`` bounds the sequences waiting for a slot (:class:`QueueFull`
    beyond it); an idle worker waits ``batch_wait_s`` for more requests before it starts.
    A model other than :class:`GPT` is served one sequence at a time without a cache.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        *,
        max_batch_size: int = 8,
        max_queue: int = 64,
        batch_wait_s: float = 0.005,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.block = block_size(model)
        self.max_batch_size = max_batch_size if isinstance(model, GPT) else 1
        self.max_queue = max_queue
        self.batch_wait_s = batch_wait_s
        self.cache = model.new_cache(self.max_batch_size) if isinstance(model, GPT) else None
        self._waiting: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._free = list(range(self.max_batch_size - 1, -1, -1))
        self._cond = threading.Condition()
        self._closed = False
        self.steps = 0  #: decode steps run
        self.rows = 0  #: sequences advanced, summed over the steps (rows / steps: batch size)
        self._thread = threading.Thread(target=self._run, name="llmbook-batcher", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- event-loop side
    def submit(self, seqs: list[Sequence]) -> None:
        with self._cond:
            if self._closed:
                raise EngineClosed("the server is shutting down")
            if len(self._waiting) + len(seqs) > self.max_queue:
                raise QueueFull(f"{len(self._waiting)} sequences are waiting already")
            self._waiting.extend(seqs)
            self._cond.notify()

    @property
    def load(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "running": len(self._active)}

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # ---------------------------------------------------------------- worker side
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._active or self._closed):
                    self._cond.wait()
                if self._closed:
                    break
                if not self._active:  # idle: let concurrent requests arrive together
                    end = time.monotonic() + self.batch_wait_s
                    while len(self._waiting) < len(self._free) and time.monotonic() < end:
                        self._cond.wait(max(0.0, end - time.monotonic()))
                admitted = []
                while self._waiting and self._free:
                    seq = self._waiting.popleft()
                    if not self._retire_early(seq):
                        seq.slot = self._free.pop()
                        admitted.append(seq)
            try:
                for seq in admitted:
                    self._active.append(seq)
                    self._advance(seq, self._prefill(seq))
                self._step()
            except Exception as e:  # a bug must not kill the worker: fail what it ran
                for seq in list(self._active):
                    self._finish(seq, Event("error", f"generation failed: {e}", "server_error"))
        with self._cond:
            for seq in [*self._waiting, *self._active]:
                seq.emit(Event("error", "the server is shutting down", "shutdown"))
            self._waiting.clear()

    def _retire_early(self, seq: Sequence) -> bool:
        """Drop a sequence that was cancelled or timed out while it waited."""
        if seq.cancelled:
            seq.emit(Event("done", finish_reason="cancelled"))
            return True
        if time.monotonic() > seq.deadline:
            seq.emit(Event("error", "the request waited past its time limit", "timeout"))
            return True
        return False

    def _prefill(self, seq: Sequence) -> Tensor:
        ids = torch.tensor([seq.prompt_ids], device=self._device())
        if self.cache is None:
            return self.model(ids[:, -self.block :])[0][0, -1].float()
        own = self.model.new_cache(1, ids.size(1))  # type: ignore[operator]
        with torch.no_grad():
            logits, _ = self.model(ids, cache=own)
        for layer in range(len(own.k)):
            self.cache.k[layer][seq.slot, :, : ids.size(1)] = own.k[layer][0]
            self.cache.v[layer][seq.slot, :, : ids.size(1)] = own.v[layer][0]
        return logits[0, -1].float()

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _step(self) -> None:
        now = time.monotonic()
        for seq in list(self._active):  # stop between tokens: cancelled, or out of time
            if seq.cancelled:
                self._finish(seq, Event("done", finish_reason="cancelled", tokens=len(seq.new_ids)))
            elif now > seq.deadline:
                msg = f"generation stopped after {len(seq.new_ids)} tokens: time limit reached"
                self._finish(seq, Event("error", msg, "timeout", len(seq.new_ids)))
        if not self._active:
            return
        seqs = list(self._active)
        dev = self._device()
        with torch.no_grad():
            if self.cache is not None and isinstance(self.model, GPT):
                logits = ragged_decode_step(
                    self.model,
                    self.cache,
                    torch.tensor([s.slot for s in seqs], device=dev),
                    torch.tensor([s.length - 1 for s in seqs], device=dev),
                    torch.tensor([s.new_ids[-1] for s in seqs], device=dev),
                )
            else:
                rows = [torch.tensor([(s.prompt_ids + s.new_ids)[-self.block :]]) for s in seqs]
                logits = torch.cat([self.model(r.to(dev))[0][:, -1].float() for r in rows])
        self.steps += 1
        self.rows += len(seqs)
        for seq, row in zip(seqs, logits):
            self._advance(seq, row)

    def _advance(self, seq: Sequence, logits: Tensor) -> None:
        """Sample ``seq``'s next token, report the new text, retire it if it is done."""
        tok = sample_token(logits, seq.params, seq.generator)
        seq.new_ids.append(tok)
        text = self.tokenizer.decode(seq.new_ids)
        reason = None
        if tok == self.tokenizer.eos_id:
            reason = "stop"
        cut = min((i for i in (text.find(s) for s in seq.params.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        elif len(seq.new_ids) >= seq.params.max_tokens or seq.length >= self.block:
            reason = reason or "length"
        # hold back what could be the start of a stop string
        hold = 0 if reason else max((len(s) - 1 for s in seq.params.stop), default=0)
        end = max(seq.sent, len(text) - hold)
        if end > seq.sent:
            seq.emit(Event("text", text[seq.sent : end], tokens=len(seq.new_ids)))
            seq.sent = end
        if reason:
            self._finish(seq, Event("done", finish_reason=reason, tokens=len(seq.new_ids)))

    def _finish(self, seq: Sequence, event: Event) -> None:
        if seq in self._active:
            self._active.remove(seq)
            with self._cond:
                self._free.append(seq.slot)
        seq.emit(event)
