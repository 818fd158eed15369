"""Generation: cached == uncached, equality with HF generate, logit processors, bad input."""

from __future__ import annotations

import math
import time
from functools import partial

import pytest
import torch
from conftest import tiny_gpt

from llmbook.evaluation.poems import form_accuracy, is_regular_poem
from llmbook.generation.decoding import (
    GenerationError,
    GenerationTimeout,
    generate,
    generate_text,
    process_logits,
)
from llmbook.models.gpt import GPT
from llmbook.text.tokenizers import CharTokenizer

POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


# weights x 8: peaky, varied distributions that expose bugs; kwargs override the config
tiny = partial(tiny_gpt, vocab_size=40, block_size=32, n_layer=2, n_embd=32, scale=8.0)


PROMPT = torch.tensor([[2, 5, 7, 11], [2, 13, 17, 19]])


@pytest.mark.parametrize(
    "kw",
    [
        dict(strategy="greedy"),
        dict(strategy="greedy", repetition_penalty=1.5),
        dict(strategy="sample"),
        dict(strategy="sample", temperature=0.7, top_k=5),
        dict(strategy="sample", top_p=0.8, repetition_penalty=1.3),
        dict(strategy="beam", num_beams=3),
        dict(strategy="beam", num_beams=3, eos_id=3, repetition_penalty=1.2),
    ],
)
def test_cached_and_uncached_generation_give_identical_tokens(kw: dict) -> None:
    model = tiny()
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(0)
        outs.append(generate(model, PROMPT, 20, use_cache=use_cache, generator=g, **kw))
    assert torch.equal(outs[0], outs[1])


def test_generation_beyond_the_context_slides_the_window() -> None:
    model = tiny(block_size=12)
    a = generate(model, PROMPT, 30, use_cache=True)
    b = generate(model, PROMPT, 30, use_cache=False)
    assert a.shape == (2, 34) and torch.equal(a, b)


def test_greedy_is_argmax_of_the_full_forward_pass() -> None:
    model = tiny()
    out = generate(model, PROMPT[:1], 8)
    seq = PROMPT[:1]
    for _ in range(8):
        nxt = model(seq)[0][:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    assert torch.equal(out, seq)


def test_beam_with_one_beam_is_greedy() -> None:
    model = tiny()
    assert torch.equal(
        generate(model, PROMPT, 10, strategy="beam", num_beams=1), generate(model, PROMPT, 10)
    )


@torch.no_grad()
def _sequence_logprob(model: GPT, seq: torch.Tensor, n_prompt: int) -> float:
    logp = model(seq[None, :-1])[0].log_softmax(-1)[0]
    return float(sum(logp[t - 1, seq[t]] for t in range(n_prompt, len(seq))))


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy() -> None:
    model = tiny()
    for row in PROMPT:
        greedy = generate(model, row[None], 6)[0]
        beam = generate(model, row[None], 6, strategy="beam", num_beams=4)[0]
        assert _sequence_logprob(model, beam, 4) >= _sequence_logprob(model, greedy, 4) - 1e-5


def _hf(model: GPT):  # type: ignore[no-untyped-def]
    from tests.test_gpt import to_hf

    return to_hf(model)


def test_greedy_and_beam_equal_huggingface_generate() -> None:
    pytest.importorskip("transformers")
    model = tiny()
    hf = _hf(model)
    ours = generate(model, PROMPT, 12)
    theirs = hf.generate(
        PROMPT,
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
        attention_mask=torch.ones_like(PROMPT),
    )
    assert torch.equal(ours, theirs)
    ours_b = generate(model, PROMPT[:1], 8, strategy="beam", num_beams=3)
    theirs_b = hf.generate(
        PROMPT[:1],
        max_new_tokens=8,
        do_sample=False,
        num_beams=3,
        pad_token_id=0,
        attention_mask=torch.ones_like(PROMPT[:1]),
    )
    assert torch.equal(ours_b, theirs_b)


def test_eos_stops_a_row_and_pads_it() -> None:
    model = tiny()
    free = generate(model, PROMPT, 15)
    eos = int(free[0, 6])  # a token that row 0 produces at step 3
    out = generate(model, PROMPT, 15, eos_id=eos)
    row = out[0].tolist()
    first = row.index(eos, 4)
    assert all(t == eos for t in row[first:])


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_deadline_stops_generation_between_tokens(
    strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its deadline the loop stops itself, so a server's timed-out work ends too."""
    import llmbook.generation.decoding as g

    model = tiny()
    late = time.monotonic() + 60
    free = generate(
        model, PROMPT, 10, strategy=strategy, generator=torch.Generator(), deadline=late
    )
    same = generate(model, PROMPT, 10, strategy=strategy, generator=torch.Generator())
    assert torch.equal(free, same)  # a deadline that is not reached changes nothing
    steps: list[int] = []
    original = g._Stepper.__call__

    def counted(self: object, seqs: torch.Tensor) -> torch.Tensor:
        steps.append(seqs.size(1))
        time.sleep(0.02)
        return original(self, seqs)  # type: ignore[arg-type]

    monkeypatch.setattr(g._Stepper, "__call__", counted)
    with pytest.raises(GenerationTimeout, match="passed its deadline"):
        generate(model, PROMPT, 1000, strategy=strategy, deadline=time.monotonic() + 0.2)
    assert 1 <= len(steps) < 100  # stopped long before 1000 tokens
    assert issubclass(GenerationTimeout, GenerationError)


def test_process_logits_top_k_top_p_temperature_penalty() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    k2 = process_logits(logits, top_k=2)
    assert torch.isinf(k2[0, 2:]).all() and torch.isfinite(k2[0, :2]).all()
    p = process_logits(logits, top_p=0.8).softmax(-1)[0]  # 0.5 + 0.3 reaches 0.8
    torch.testing.assert_close(p, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    p = process_logits(logits, top_p=0.81).softmax(-1)[0]  # needs the third token too
    assert p[2] > 0 and p[3] == 0
    assert process_logits(logits, top_p=0.1).softmax(-1)[0, 0] == 1.0  # top token always kept
    t = process_logits(logits, temperature=0.5)
    torch.testing.assert_close(t, logits / 0.5)
    z = torch.tensor([[2.0, -2.0, 1.0]])
    r = process_logits(z, torch.tensor([[0, 1]]), repetition_penalty=2.0)
    torch.testing.assert_close(r, torch.tensor([[1.0, -4.0, 1.0]]))


def test_sampling_follows_the_distribution() -> None:
    torch.manual_seed(0)
    model = tiny()
    probs = model(PROMPT[:1])[0][0, -1].softmax(-1)
    g = torch.Generator().manual_seed(1)
    out = generate(model, PROMPT[:1].repeat(4000, 1), 1, strategy="sample", generator=g)[:, -1]
    freq = torch.bincount(out, minlength=40).float() / 4000
    assert (freq - probs).abs().max() < 0.03


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(temperature=0.0, strategy="sample"), "temperature must be > 0"),
        (dict(top_k=0, strategy="sample"), "top_k must be None or an int >= 1"),
        (dict(top_p=1.5, strategy="sample"), r"top_p must be None or in \(0, 1\]"),
        (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
        (dict(strategy="nucleus"), "strategy must be one of"),
        (dict(num_beams=0, strategy="beam"), "num_beams must be an int >= 1"),
    ],
)
def test_bad_parameters_are_clear_errors(kw: dict, msg: str) -> None:
    with pytest.raises(GenerationError, match=msg):
        generate(tiny(), PROMPT, 3, **kw)
    with pytest.raises(GenerationError, match="max_new_tokens must be an int >= 0"):
        generate(tiny(), PROMPT, -1)
    with pytest.raises(GenerationError, match="at least one token"):
        generate(tiny(), torch.zeros(1, 0, dtype=torch.long), 3)


@pytest.fixture(scope="module")
def poem_model() -> tuple[GPT, CharTokenizer]:
    return tiny_gpt(texts=[POEM + "\n"], block_size=24)


def test_generate_text_stops_at_newline_and_keeps_prompt(
    poem_model: tuple[GPT, CharTokenizer],
) -> None:
    model, tok = poem_model
    texts = generate_text(model, tok, ["床前", "明月"], 20, num_samples=3, seed=0)
    assert len(texts) == 6
    assert all("\n" not in t for t in texts)
    assert texts[0].startswith("床前") and texts[3].startswith("明月")
    assert texts == generate_text(model, tok, ["床前", "明月"], 20, num_samples=3, seed=0)


def test_out_of_vocabulary_prompt_is_unk_with_a_warning(
    poem_model: tuple[GPT, CharTokenizer],
) -> None:
    model, tok = poem_model
    with pytest.warns(UserWarning, match=r"outside the vocabulary \['春'\].*<unk>"):
        (text,) = generate_text(model, tok, "春光", 3)
    assert text.startswith("春光")


def test_long_prompt_is_cropped_with_a_warning(poem_model: tuple[GPT, CharTokenizer]) -> None:
    model, tok = poem_model
    with pytest.warns(UserWarning, match="only its last 24 tokens are used"):
        (text,) = generate_text(model, tok, POEM * 2, 5, strategy="greedy", stop_at=None)
    assert text.startswith(POEM * 2)


def test_form_metric_on_real_and_broken_poems() -> None:
    assert is_regular_poem(POEM)
    assert is_regular_poem("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", 5)
    assert not is_regular_poem(POEM, chars_per_line=7)
    assert not is_regular_poem("床前明月光，疑是地上霜。举头望明月，低头思。")  # short line
    assert not is_regular_poem("床前明月光，疑是地上霜。举头望明月，")  # unfinished
    assert not is_regular_poem("")
    seven = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
    assert form_accuracy([POEM, seven, "床前明月光，疑"]) == pytest.approx(2 / 3)
    assert math.isclose(form_accuracy([seven], 7), 1.0)
    with pytest.raises(ValueError, match="at least one text"):
        form_accuracy([])


ORACLE_CASES = [
    dict(repetition_penalty=1.3),
    dict(repetition_penalty=0.7),  # < 1 encourages repeats
    dict(temperature=0.7),
    dict(top_k=1),
    dict(top_k=7),
    dict(top_k=60),  # more than the vocabulary: nothing removed
    dict(top_p=0.3),
    dict(top_p=0.9),
    dict(repetition_penalty=1.3, temperature=0.7, top_k=10, top_p=0.9),
    dict(repetition_penalty=1.2, temperature=1.5, top_k=25, top_p=0.5),
]


@pytest.mark.parametrize(
    "kw", ORACLE_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
def test_process_logits_matches_transformers_processors(kw: dict) -> None:
    """Oracle: Hugging Face's logits processors, chained in the order ``generate`` uses
    (repetition penalty, then temperature, top-k, top-p), on random logits.

    Common semantics, checked here: the penalty divides positive and multiplies negative
    logits of every token id that occurs in ``seqs`` (once, however often it occurs); HF
    penalises its whole ``input_ids`` (prompt included, as our ``generate`` passes
    prompt + generated tokens) unless ``prompt_ignore_length`` is set, which has no
    counterpart here.  Top-k keeps ties with the k-th logit; a top_k above the vocabulary
    keeps everything.  Top-p drops a token when the probability mass *above* it already
    reaches top_p (HF: the mass from the bottom up to and including it is <= 1 - top_p),
    so a token exactly at the boundary is dropped by both, and the top token is always kept.
    """
    lp = pytest.importorskip("transformers.generation.logits_process")
    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(64, 50, generator=g)
    seqs = torch.randint(0, 50, (64, 12), generator=g)  # with repeats
    chain = []
    if "repetition_penalty" in kw:
        chain.append(lp.RepetitionPenaltyLogitsProcessor(penalty=kw["repetition_penalty"]))
    if "temperature" in kw:
        chain.append(lp.TemperatureLogitsWarper(kw["temperature"]))
    if "top_k" in kw:
        chain.append(lp.TopKLogitsWarper(top_k=kw["top_k"]))
    if "top_p" in kw:
        chain.append(lp.TopPLogitsWarper(top_p=kw["top_p"]))
    theirs = lp.LogitsProcessorList(chain)(seqs, logits.clone())
    ours = process_logits(logits, seqs, **kw)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))  # -inf in the same places
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # and the same finite values
    if set(kw) == {"top_k"} and kw["top_k"] < 50:
        assert (torch.isfinite(ours).sum(-1) == kw["top_k"]).all()  # no ties in random logits


@pytest.mark.parametrize("top_p", [0.5, 0.8, 0.81, 0.95])
def test_top_p_boundary_matches_transformers(top_p: float) -> None:
    """Masses 0.5, 0.3, 0.15, 0.05: top_p 0.5, 0.8 and 0.95 sit exactly on a boundary."""
    lp = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    theirs = lp.TopPLogitsWarper(top_p=top_p)(None, logits.clone())
    assert torch.equal(torch.isinf(process_logits(logits, top_p=top_p)), torch.isinf(theirs))
