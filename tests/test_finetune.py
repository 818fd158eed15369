"""Classification head, SFT loss masking, LoRA on the GPT, and pretraining-data hygiene."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_gpt

from llmbook.data.modern import MIN_LEAK_CHARS, modern_pretraining_texts
from llmbook.evaluation.poems import form_compliance
from llmbook.models.classifier import ClassifierConfig, GPTClassifier
from llmbook.models.gpt import GPT
from llmbook.models.lora import apply_lora, mark_trainable, merge_lora, trainable_share
from llmbook.text.tokenizers import CharTokenizer
from llmbook.training.finetune import encode_batch, finetune_classifier, predict
from llmbook.training.sft import CHAT, collate_sft, poem_instructions, sft_example, train_sft

TEXTS = ["这个东西很好用", "质量太差了", "非常满意，好评", "差评，退货", "好", "不好不好差"]
LABELS = [1, 0, 1, 0, 1, 0]


@pytest.fixture()
def tiny() -> tuple[GPT, CharTokenizer]:
    texts = TEXTS + ["问答：写一首五言绝句，题目静夜思床前明月光\n"]
    return tiny_gpt(texts=texts, block_size=48, n_layer=2, n_embd=32)


def test_classifier_pools_the_gpt_hidden_states(tiny: tuple[GPT, CharTokenizer]) -> None:
    gpt, tok = tiny
    clf = GPTClassifier.from_gpt(gpt, ["负面", "正面"]).eval()
    assert clf.gpt is gpt and clf.config.gpt == gpt.config
    ids, lens = encode_batch(tok, TEXTS[:2], 20)
    h = gpt.hidden_states(ids)
    last = h[torch.arange(2), lens - 1]
    logits, _ = clf(ids, lens)
    torch.testing.assert_close(logits, clf.head(last))


def test_classifier_config_builds_and_checks(tiny: tuple[GPT, CharTokenizer]) -> None:
    from dataclasses import replace

    gpt, _ = tiny
    cfg = ClassifierConfig(gpt.config.to_dict(), ["负面", "正面"], max_len=32)  # type: ignore[arg-type]
    assert cfg.gpt == gpt.config and cfg.labels == ("负面", "正面")  # a dict from JSON is parsed
    clf = GPTClassifier(cfg)  # a fresh GPT body of that config
    assert clf.gpt is not gpt and clf.head.out_features == 2
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassifierConfig(gpt.config, ["正面"])
    with pytest.raises(ValueError, match="pooling"):
        ClassifierConfig(gpt.config, ["负面", "正面"], pooling="cls")
    with pytest.raises(TypeError, match="from_gpt"):
        GPTClassifier(gpt)  # type: ignore[arg-type]
    other = ClassifierConfig(replace(gpt.config, vocab_size=5), ["a", "b"])
    with pytest.raises(ValueError, match="differs"):
        GPTClassifier(other, gpt)


def test_encode_batch_pads_right_and_truncates(tiny: tuple[GPT, CharTokenizer]) -> None:
    _, tok = tiny
    ids, lens = encode_batch(tok, ["好", "质量太差了", ""], max_len=4)
    assert lens.tolist() == [2, 4, 1]
    assert ids[0, 0] == tok.bos_id and ids[0, 2] == tok.pad_id
    with pytest.raises(ValueError, match="max_len"):
        encode_batch(tok, ["x"], 0)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_padding_does_not_change_the_prediction(
    tiny: tuple[GPT, CharTokenizer], pooling: str
) -> None:
    gpt, tok = tiny
    clf = GPTClassifier.from_gpt(gpt, ["负面", "正面"], pooling=pooling).eval()
    alone, lens = encode_batch(tok, ["质量太差了"], 20)
    padded, plens = encode_batch(tok, ["质量太差了", "非常满意，好评，这个东西很好用"], 20)
    a, _ = clf(alone, lens)
    b, _ = clf(padded, plens)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)


def test_classifier_learns_and_lora_share(tiny: tuple[GPT, CharTokenizer]) -> None:
    gpt, tok = tiny
    clf = GPTClassifier.from_gpt(gpt, ["负面", "正面"])
    res = finetune_classifier(
        clf, tok, TEXTS, LABELS, steps=60, batch_size=6, lr=3e-3, progress=False
    )
    assert sum(res.losses[-5:]) / 5 < sum(res.losses[:5]) / 5
    pred, probs = predict(clf, tok, TEXTS)
    assert pred == LABELS
    assert probs.shape == (6, 2)
    names = apply_lora(clf, ["c_attn", "c_proj"], r=2, alpha=4)
    assert len(names) == 3 * 2  # c_attn, attn.c_proj and mlp.c_proj of both blocks
    mark_trainable(clf, ["head."])
    n_train, n_total, _ = trainable_share(clf)
    assert 0 < n_train < n_total
    before, _ = predict(clf, tok, TEXTS)
    merge_lora(clf)
    after, _ = predict(clf, tok, TEXTS)
    assert before == after


def test_sft_masks_the_prompt(tiny: tuple[GPT, CharTokenizer]) -> None:
    _, tok = tiny
    x, y = sft_example(tok, "写一首五言绝句，题目：静夜思", "床前明月光", block_size=48)
    prompt = [tok.bos_id] + tok.encode(CHAT.render("写一首五言绝句，题目：静夜思"))
    answer = tok.encode("床前明月光\n")
    assert len(x) == len(y) == len(prompt) + len(answer) - 1
    assert y[: len(prompt) - 1] == [-100] * (len(prompt) - 1)
    assert y[len(prompt) - 1 :] == answer  # every response token (and the end) is a target
    assert x[len(prompt) :] == answer[:-1]  # teacher forcing: targets are inputs shifted
    with pytest.raises(ValueError, match="exceeds block_size"):
        sft_example(tok, "写" * 40, "床前明月光", block_size=20)
    xb, yb = collate_sft([(x, y), (x[:3], y[:3])], tok.pad_id)
    assert xb[1, 3:].eq(tok.pad_id).all() and yb[1, 3:].eq(-100).all()


def test_masked_loss_ignores_prompt_tokens(tiny: tuple[GPT, CharTokenizer]) -> None:
    gpt, tok = tiny
    x, y = sft_example(tok, "写一首五言绝句，题目：静夜思", "床前明月光", block_size=48)
    xb, yb = collate_sft([(x, y)], tok.pad_id)
    logits, loss = gpt(xb, yb)
    keep = yb[0] != -100
    manual = torch.nn.functional.cross_entropy(logits[0][keep], yb[0][keep])
    torch.testing.assert_close(loss, manual)
    changed = xb.clone()
    changed[0, 1] = tok.token_to_id("好")  # change a prompt token that is not a target
    _, loss2 = gpt(changed, yb)
    assert not torch.allclose(loss, loss2)  # the prompt still conditions the response
    losses = train_sft(
        gpt,
        tok,
        [("写一首五言绝句，题目：静夜思", "床前明月光")],
        steps=15,
        batch_size=2,
        lr=5e-3,
        progress=False,
    )
    assert losses[-1] < losses[0]


def test_form_compliance_and_instructions() -> None:
    assert form_compliance("床前明月光，疑是地上霜。举头望明月，低头思故乡。", "五言绝句")["both"]
    bad = form_compliance("床前明月光，疑是地上霜。举头望明月。", "五言绝句")
    assert not bad["lines"] and bad["chars"]
    with pytest.raises(ValueError, match="form must be"):
        form_compliance("x", "词")

    class P:
        form, title, text = "五言绝句", "静夜思", "床前明月光，疑是地上霜。举头望明月，低头思故乡。"

    assert poem_instructions([P()]) == [("写一首五言绝句，题为静夜思", P.text)]
    tok = CharTokenizer.fit([P.text])
    assert poem_instructions([P()], tokenizer=tok) == []  # instruction characters unknown


def test_no_sentiment_valid_or_test_text_in_pretraining_data() -> None:
    from llmbook.data.sentiment import load_sentiment

    corpus = modern_pretraining_texts("train")
    held_out = [e.text for e in load_sentiment("test")] + [e.text for e in load_sentiment("valid")]
    assert not set(corpus) & set(held_out)
    joined = "\n".join(corpus)
    assert [t for t in held_out if len(t) >= MIN_LEAK_CHARS and t in joined] == []
    train_reviews = {e.text for e in load_sentiment("train")}
    kept = train_reviews & set(corpus)
    assert len(kept) > 0.99 * len(train_reviews)  # only the few near-duplicates are dropped
    assert not set(modern_pretraining_texts("valid")) & set(corpus)


def test_tfidf_baseline_and_snownlp() -> None:
    from llmbook.experiments.sentiment import snownlp_predict, tfidf_logreg

    texts = ["很好用，满意", "质量差，失望", "非常好，推荐", "太差了，退货"] * 5
    labels = [1, 0, 1, 0] * 5
    res = tfidf_logreg(texts, labels, ["满意，推荐", "失望，退货"], folds=2)
    assert len(res.cv_accuracy) == 2 and res.test_predictions == [1, 0]
    assert res.n_parameters > 0
    assert snownlp_predict(["这个东西非常好，很满意", ""]) == [1, 1]


def test_per_review_ms_times_one_review_per_call() -> None:
    from llmbook.experiments.sentiment import per_review_ms

    calls: list[list[str]] = []
    ms = per_review_ms(calls.append, ["好", "差", "一般"])
    assert calls == [["好"], ["差"], ["一般"]] and ms >= 0.0
    with pytest.raises(ValueError, match="at least one text"):
        per_review_ms(calls.append, [])


def test_evaluate_instructions_scores_form(tiny: tuple[GPT, CharTokenizer]) -> None:
    from llmbook.evaluation.instructions import evaluate_instructions

    gpt, tok = tiny
    ev = evaluate_instructions(
        gpt, tok, [("写一首五言绝句，题目：静夜思", "五言绝句", "静夜思")], max_new_tokens=5
    )
    assert len(ev.outputs) == 1 and ev.both_ok in (0.0, 1.0)
    assert 0.0 <= ev.title_char_share <= 1.0
