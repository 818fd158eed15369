"""Few-shot prompts in the training format, continuation scores, sampling to a stop mark, repeats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmbook.evaluation.prompting import (
    continuation_logprobs,
    few_shot_ids,
    sample_until,
    token_losses,
)
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.text.tokenizers import CharTokenizer

POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
]
TOK = CharTokenizer.fit([p + "\n" for p in POEMS])


def _model(block: int = 40) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=block, n_layer=1, n_head=2, n_embd=16)
    return GPT(cfg).eval()


def test_few_shot_ids_is_the_training_stream_format() -> None:
    nl = TOK.encode("\n")
    ids = few_shot_ids(TOK, [POEMS[0]], "春眠")
    assert ids == [TOK.bos_id, *TOK.encode(POEMS[0]), *nl, TOK.bos_id, *TOK.encode("春眠")]
    assert few_shot_ids(TOK, []) == [TOK.bos_id]
    with pytest.raises(TypeError, match="wrap it"):
        few_shot_ids(TOK, POEMS[0])
    with pytest.raises(ValueError, match="demonstration 1 is empty"):
        few_shot_ids(TOK, [POEMS[0], ""])


def test_continuation_logprobs_matches_a_direct_computation() -> None:
    model = _model()
    ctx = few_shot_ids(TOK, [], "床前")
    cont = TOK.encode("明月")
    got = continuation_logprobs(model, [ctx, ctx[:1]], [cont, cont])
    full = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = F.log_softmax(model(full[:, :-1])[0], dim=-1)[0]
    want = sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
    assert got[0] == pytest.approx(want, abs=1e-4)
    assert got[0] != pytest.approx(got[1])
    with pytest.raises(ValueError, match="one continuation per context"):
        continuation_logprobs(model, [ctx], [cont, cont])
    with pytest.raises(ValueError, match="empty context"):
        continuation_logprobs(model, [[]], [cont])


def test_continuation_logprobs_cuts_long_contexts_from_the_left() -> None:
    model = _model(block=8)
    ctx = few_shot_ids(TOK, [POEMS[0]], "春")
    cont = TOK.encode("眠不")
    got = continuation_logprobs(model, [ctx], [cont])[0]
    want = continuation_logprobs(model, [ctx[-7:]], [cont])[0]
    assert got == pytest.approx(want, abs=1e-5)


def test_sample_until_stops_at_the_mark_and_is_reproducible() -> None:
    model = _model()
    prompts = [few_shot_ids(TOK, [], ""), few_shot_ids(TOK, [], "春")]
    a = sample_until(model, TOK, prompts, "，", max_new_tokens=6, seed=1)
    b = sample_until(model, TOK, prompts, "，", max_new_tokens=6, seed=1)
    assert a == b and len(a) == 2
    assert all("，" not in s and len(s) <= 6 for s in a)
    with pytest.raises(ValueError, match="one token"):
        sample_until(model, TOK, prompts, "，。")
    with pytest.raises(ValueError, match="block_size"):
        sample_until(model, TOK, prompts, "，", max_new_tokens=40)


def test_token_losses_matches_cross_entropy() -> None:
    model = _model()
    seqs = torch.tensor([few_shot_ids(TOK, [POEMS[0][:6]], POEMS[0][:6])] * 2)
    loss, hit = token_losses(model, seqs)
    assert loss.shape == hit.shape == (2, seqs.size(1) - 1)
    with torch.no_grad():
        want = F.cross_entropy(model(seqs[:1, :-1])[0][0], seqs[0, 1:], reduction="none")
    assert np.allclose(loss[0], want.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        token_losses(_model(block=6), seqs)
    with pytest.raises(ValueError, match="T >= 2"):
        token_losses(model, seqs[:, :1])
