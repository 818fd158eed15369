"""The BERT-style encoder: equal to Hugging Face's BertForMaskedLM, bidirectional, masking."""

from __future__ import annotations

import pytest
import torch

from llmbook.models.bert import Bert, BertClassifier, BertConfig, mask_tokens
from llmbook.training.mlm import MaskedLM, fill_mask, masked_accuracy

CFG = BertConfig(vocab_size=50, max_positions=16, n_layer=2, n_head=2, n_embd=16)


def _ids(B: int = 2, T: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(CFG.n_special, CFG.vocab_size - 1, (B, T), generator=g)


def _hf_copy(model: Bert):  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    c = model.config
    hf_cfg = transformers.BertConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.n_embd,
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        intermediate_size=c.ffn_hidden,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=c.max_positions,
        type_vocab_size=c.n_segments,
        layer_norm_eps=c.norm_eps,
        pad_token_id=c.pad_id,
    )
    hf = transformers.BertForMaskedLM(hf_cfg).eval()
    sd = model.state_dict()
    new = {
        "bert.embeddings.word_embeddings.weight": sd["wte.weight"],
        "bert.embeddings.position_embeddings.weight": sd["wpe.weight"],
        "bert.embeddings.token_type_embeddings.weight": sd["wse.weight"],
        "bert.embeddings.LayerNorm.weight": sd["ln_emb.weight"],
        "bert.embeddings.LayerNorm.bias": sd["ln_emb.bias"],
        "cls.predictions.transform.dense.weight": sd["mlm_dense.weight"],
        "cls.predictions.transform.dense.bias": sd["mlm_dense.bias"],
        "cls.predictions.transform.LayerNorm.weight": sd["mlm_ln.weight"],
        "cls.predictions.transform.LayerNorm.bias": sd["mlm_ln.bias"],
        "cls.predictions.bias": sd["mlm_bias"],
        "cls.predictions.decoder.bias": sd["mlm_bias"],
        "cls.predictions.decoder.weight": sd["wte.weight"],
    }
    for i in range(c.n_layer):
        p, b = f"bert.encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[b + f"attn.c_attn.{kind}"].chunk(3, dim=0)
            new[p + f"attention.self.query.{kind}"] = q
            new[p + f"attention.self.key.{kind}"] = k
            new[p + f"attention.self.value.{kind}"] = v
            new[p + f"attention.output.dense.{kind}"] = sd[b + f"attn.c_proj.{kind}"]
            new[p + f"attention.output.LayerNorm.{kind}"] = sd[b + f"ln_1.{kind}"]
            new[p + f"intermediate.dense.{kind}"] = sd[b + f"c_fc.{kind}"]
            new[p + f"output.dense.{kind}"] = sd[b + f"c_proj.{kind}"]
            new[p + f"output.LayerNorm.{kind}"] = sd[b + f"ln_2.{kind}"]
    hf_sd = hf.state_dict()
    missing = [k for k in hf_sd if k not in new and "position_ids" not in k]
    assert not missing, missing
    hf.load_state_dict({**hf_sd, **{k: v for k, v in new.items() if k in hf_sd}})
    return hf


def _randomised(seed: int = 0) -> Bert:
    torch.manual_seed(seed)
    model = Bert(CFG).eval()
    with torch.no_grad():  # LayerNorms and biases away from 1 / 0, so a mix-up shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_logits_equal_huggingface_bert_for_masked_lm() -> None:
    model = _randomised()
    hf = _hf_copy(model)
    idx = _ids()
    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf(input_ids=idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # with padding: real positions agree under each model's attention mask
    mask = torch.ones_like(idx, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        ours, _ = model(idx, attention_mask=mask)
        theirs = hf(input_ids=idx, attention_mask=mask.long()).logits
    torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-4, rtol=1e-4)


def test_attention_is_bidirectional() -> None:
    model = _randomised(1)
    idx = _ids(1, 8)
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1 - CFG.n_special) % (
        CFG.vocab_size - 1 - CFG.n_special
    ) + CFG.n_special
    with torch.no_grad():
        a, b = model.hidden_states(idx), model.hidden_states(changed)
    # a later token changes every earlier output (a GPT's earlier outputs would not move)
    assert (a[0, :-1] - b[0, :-1]).abs().amax(-1).min() > 1e-6
    maps = model.attention_maps(idx)
    assert maps.shape == (CFG.n_layer, 1, CFG.n_head, 8, 8)
    assert maps.triu(1).abs().sum() > 0  # weight above the diagonal: it looks ahead
    torch.testing.assert_close(maps.sum(-1), torch.ones(CFG.n_layer, 1, CFG.n_head, 8))


def test_padding_does_not_change_real_positions() -> None:
    model = _randomised(2)
    idx = _ids(1, 6)
    padded = torch.cat([idx, torch.full((1, 4), CFG.pad_id)], dim=1)
    mask = padded != CFG.pad_id
    with torch.no_grad():
        short = model.hidden_states(idx)
        long = model.hidden_states(padded, attention_mask=mask)
    torch.testing.assert_close(long[:, :6], short, atol=1e-5, rtol=1e-5)
    # the classifier pools only real positions: padding does not change its output
    clf = BertClassifier.from_bert(model, ["a", "b"], pooling="mean").eval()
    with torch.no_grad():
        l1, _ = clf(idx, torch.tensor([6]))
        l2, _ = clf(padded, torch.tensor([6]))
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)


def test_masking_proportions_on_a_large_sample() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(CFG.n_special, CFG.vocab_size - 1, (200, 500), generator=g)
    ids[:, 0] = CFG.cls_id
    ids[:, -20:] = CFG.pad_id
    inputs, labels = mask_tokens(ids, CFG, generator=g)
    chosen = labels != -100
    ordinary = ids >= CFG.n_special
    assert not chosen[~ordinary].any()  # never [CLS] or padding
    assert (inputs[~ordinary] == ids[~ordinary]).all()
    assert abs(chosen.sum() / ordinary.sum() - 0.15) < 0.005
    assert (labels[chosen] == ids[chosen]).all()
    assert (labels[~chosen] == -100).all()
    assert (inputs[~chosen] == ids[~chosen]).all()  # unchosen positions are untouched
    n = chosen.sum()
    masked = (inputs == CFG.mask_token) & chosen
    same = (inputs == ids) & chosen
    other = chosen & ~masked & ~same
    assert abs(masked.sum() / n - 0.8) < 0.01
    # a random replacement equals the original with probability 1 / (ordinary vocabulary)
    n_ord = CFG.vocab_size - 1 - CFG.n_special
    assert abs(same.sum() / n - (0.1 + 0.1 / n_ord)) < 0.01
    assert abs(other.sum() / n - 0.1 * (1 - 1 / n_ord)) < 0.01
    assert (inputs[other] >= CFG.n_special).all() and (inputs[other] != CFG.mask_token).all()


def test_mask_tokens_errors() -> None:
    with pytest.raises(ValueError, match="mask_prob"):
        mask_tokens(_ids(), CFG, mask_prob=1.5)
    with pytest.raises(ValueError, match="token ids must lie"):
        mask_tokens(torch.tensor([[5, 99]]), CFG)
    with pytest.raises(TypeError, match="LongTensor"):
        mask_tokens(torch.zeros(2, 3), CFG)


def test_clear_errors() -> None:
    model = Bert(CFG)
    with pytest.raises(ValueError, match="longer than max_positions 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="another tokenizer"):
        model(torch.tensor([[4, 50]]))
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        model(torch.tensor([4, 5]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(_ids(), attention_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(n_embd=10, n_head=4)
    with pytest.raises(ValueError, match="mask_id"):
        BertConfig(vocab_size=10, mask_id=10)


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from llmbook.training.checkpoint import load_checkpoint, save_checkpoint

    model = _randomised(3)
    save_checkpoint(tmp_path / "bert", model)
    loaded, _, _ = load_checkpoint(tmp_path / "bert")
    assert isinstance(loaded, Bert) and loaded.config == model.config
    idx = _ids()
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    clf = BertClassifier.from_bert(model, ["负面", "正面"]).eval()
    save_checkpoint(tmp_path / "clf", clf)
    loaded_clf, _, _ = load_checkpoint(tmp_path / "clf")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded_clf(idx, torch.tensor([10, 4]))[0], clf(idx, torch.tensor([10, 4]))[0]
        )


def test_mlm_training_with_the_trainer_learns_and_resumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from llmbook.training.trainer import TrainConfig, train

    ids = np.tile(np.arange(CFG.n_special, CFG.n_special + 12), 100)  # a periodic "text"
    common = dict(batch_size=8, block_size=16, lr=3e-3, warmup_steps=2, eval_interval=4)
    common |= dict(eval_batches=2, seed=0, progress=False, ckpt_interval=4)

    def run(out: str, resume: bool = False, stop_at: int = 0) -> list[float]:
        torch.manual_seed(0)
        model = MaskedLM(CFG)
        cfg = TrainConfig(max_steps=16, out_dir=str(tmp_path / out), resume=resume, **common)
        res = train(model, ids, ids, cfg, callback=lambda r: r["step"] == stop_at)
        return [h["val_loss"] for h in res.history if h["val_loss"] is not None]

    full = run("a")
    assert full[-1] < full[0] < np.log(CFG.vocab_size)  # below a uniform guess, and falling
    run("b", stop_at=8)  # interrupted after step 8 (a checkpoint was just written) ...
    resumed = run("b", resume=True)  # ... and resumed: the same masks and windows
    assert resumed == pytest.approx(full, abs=1e-5)
    # eval-mode masks are a function of the batch: the validation loss is reproducible
    model = MaskedLM(CFG).eval()
    x = torch.from_numpy(ids[:32].reshape(2, 16)).long()
    inputs, labels = model.make_batch(x)
    assert torch.equal(labels, model.make_batch(x)[1])
    assert (inputs[:, 0] == CFG.cls_id).all()
    assert 0.0 <= masked_accuracy(model.bert, *mask_tokens(_ids(8, 16), CFG)) <= 1.0


def test_fill_mask_returns_top_k_probabilities() -> None:
    from llmbook.text.tokenizers import CharTokenizer

    tok = CharTokenizer.fit(["中华人民共和国"])
    cfg = BertConfig(vocab_size=len(tok) + 1, max_positions=16, n_layer=1, n_head=2, n_embd=8)
    out = fill_mask(Bert(cfg), tok, "中华□民共和□", top_k=3)
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    probs = [p for _, p in out[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    with pytest.raises(ValueError, match="placeholder"):
        fill_mask(Bert(cfg), tok, "中华人民")
