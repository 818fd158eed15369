"""GGUF export (llmbook.models.gguf): round trips, metadata read by gguf's reader, names, CLI.

What is checked: the ``gguf`` package's own reader loads every file and finds the keys,
types and tensor names llama.cpp's conventions prescribe; the model rebuilt from the file
gives the original's logits.  llama.cpp itself is not run (no binary here).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_gpt

from llmbook.cli import main
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.modern import apply_rope, rope_tables
from llmbook.models.positional import RotaryEmbedding
from llmbook.text.tokenizers import CharTokenizer

gguf = pytest.importorskip("gguf")

from llmbook.models.gguf import (  # noqa: E402
    from_gguf,
    gguf_arch,
    read_gguf,
    rope_permute,
    rope_unpermute,
    to_gguf,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["床前明月光，疑是地上霜。", "举头望明月 低头思故乡\n"]
CONFIGS = {
    "gpt2": dict(n_layer=2),
    "gpt2-nobias-untied": dict(bias=False, tie_weights=False, mlp_hidden=24),
    "gpt2-gqa": dict(n_kv_head=1),
    "llama": dict(GPTConfig.llama(**dict(n_layer=2, n_head=4, n_embd=32)).to_dict()),
    "llama-bias-untied": dict(
        GPTConfig.llama(n_head=4, n_embd=32, n_kv_head=1, bias=True, tie_weights=False).to_dict()
    ),
    "llama-theta-mlp": dict(
        GPTConfig.llama(n_head=2, n_embd=16, rope_theta=500000.0, mlp_hidden=40).to_dict()
    ),
}


def _model(name: str) -> tuple[GPT, CharTokenizer]:
    cfg = {k: v for k, v in CONFIGS[name].items() if k != "vocab_size"}
    cfg.setdefault("block_size", 16)
    return tiny_gpt(texts=TEXTS, noise=0.1, **cfg)


def _value(reader: Any, key: str) -> tuple[Any, Any]:
    """``(value, GGUFValueType)`` of ``key``, decoded from the reader's raw parts."""
    field = reader.get_field(key)
    assert field is not None, f"{key} is missing"
    kind = gguf.GGUFValueType(field.types[0])
    T = gguf.GGUFValueType

    def one(i: int, t: Any) -> Any:
        part = field.parts[i]
        return bytes(part).decode() if t == T.STRING else part[0].item()

    if kind == T.ARRAY:
        return [one(i, field.types[1]) for i in field.data], (kind, field.types[1])
    return one(field.data[0], kind), kind


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trip_gives_the_same_logits(name: str, tmp_path: Path) -> None:
    model, tok = _model(name)
    summary = to_gguf(model, tok, tmp_path / "m.gguf")
    assert summary.arch == ("gpt2" if name.startswith("gpt2") else "llama")
    assert summary.size_bytes == (tmp_path / "m.gguf").stat().st_size
    assert not list(tmp_path.glob("*.part"))
    back, tok2 = from_gguf(tmp_path / "m.gguf")
    assert back.config == GPTConfig.from_dict(model.config.to_dict() | {"dropout": 0.0})
    assert tok2.itos == tok.itos
    idx = torch.tensor([tok.encode(TEXTS[1])[:16], tok.encode(TEXTS[0])[:16]])
    torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=1e-5, rtol=0)


def test_bias_false_gpt2_is_written_with_zero_biases(tmp_path: Path) -> None:
    """llama.cpp's gpt2 graph requires every bias; zeros compute the same function."""
    model, tok = _model("gpt2-nobias-untied")
    to_gguf(model, tok, tmp_path / "m.gguf")
    _, tensors = read_gguf(tmp_path / "m.gguf")
    biases = {k: v for k, v in tensors.items() if k.endswith(".bias")}
    assert "blk.0.attn_qkv.bias" in biases and "output_norm.bias" in biases
    assert all(not v.any() for v in biases.values())
    assert "output.weight" in tensors  # untied
    assert from_gguf(tmp_path / "m.gguf")[0].config.bias is False


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_metadata_read_by_gguf_reader(name: str, tmp_path: Path) -> None:
    model, tok = _model(name)
    c = model.config
    to_gguf(model, tok, tmp_path / "m.gguf", name="tiny")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    T, K = gguf.GGUFValueType, gguf.Keys
    a = name
    assert _value(reader, K.General.ARCHITECTURE) == (a, T.STRING)
    assert _value(reader, K.General.NAME) == ("tiny", T.STRING)
    assert _value(reader, K.General.FILE_TYPE) == (gguf.LlamaFileType.ALL_F32, T.UINT32)
    expected = {
        K.LLM.CONTEXT_LENGTH: c.block_size,
        K.LLM.EMBEDDING_LENGTH: c.n_embd,
        K.LLM.BLOCK_COUNT: c.n_layer,
        K.LLM.FEED_FORWARD_LENGTH: c.ffn_hidden,
        K.LLM.VOCAB_SIZE: tok.vocab_size,
        K.Attention.HEAD_COUNT: c.n_head,
        K.Attention.HEAD_COUNT_KV: c.kv_heads,
    }
    if a == "llama":
        expected[K.Rope.DIMENSION_COUNT] = c.head_dim
    for key, value in expected.items():
        assert _value(reader, key.format(arch=a)) == (value, T.UINT32), key
    eps = K.Attention.LAYERNORM_EPS if a == "gpt2" else K.Attention.LAYERNORM_RMS_EPS
    got, kind = _value(reader, eps.format(arch=a))
    assert kind == T.FLOAT32 and got == pytest.approx(c.norm_eps, rel=1e-6)
    if a == "llama":
        assert _value(reader, K.Rope.FREQ_BASE.format(arch=a)) == (c.rope_theta, T.FLOAT32)
    else:
        assert reader.get_field(K.Rope.FREQ_BASE.format(arch=a)) is None
    # the tokenizer: SentencePiece-style vocabulary, one token per character
    assert _value(reader, K.Tokenizer.MODEL) == ("llama", T.STRING)
    tokens, kinds = _value(reader, K.Tokenizer.LIST)
    assert kinds == (T.ARRAY, T.STRING)
    assert tokens == [("\u2581" if t == " " else t) for t in tok.itos]
    types, kinds = _value(reader, K.Tokenizer.TOKEN_TYPE)
    assert kinds == (T.ARRAY, T.INT32)
    TT = gguf.TokenType
    assert types[:4] == [TT.CONTROL, TT.UNKNOWN, TT.CONTROL, TT.CONTROL]
    assert set(types[4:]) == {TT.NORMAL}
    assert _value(reader, K.Tokenizer.SCORES)[0] == [0.0] * tok.vocab_size
    ids = {
        K.Tokenizer.BOS_ID: tok.bos_id,
        K.Tokenizer.EOS_ID: tok.eos_id,
        K.Tokenizer.UNK_ID: tok.unk_id,
        K.Tokenizer.PAD_ID: tok.pad_id,
    }
    for key, value in ids.items():
        assert _value(reader, key) == (value, T.UINT32), key
    assert _value(reader, K.Tokenizer.ADD_BOS) == (True, T.BOOL)
    assert _value(reader, K.Tokenizer.ADD_EOS) == (False, T.BOOL)
    assert _value(reader, K.Tokenizer.ADD_PREFIX) == (False, T.BOOL)


def _allowed_names(arch: str, n_layer: int) -> set[str]:
    """Every tensor name llama.cpp's ``arch`` knows (gguf's MODEL_TENSORS), as weight/bias."""
    enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    stems = [gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[enum]]
    return {
        s.format(bid=i) + suffix
        for s in stems
        for i in range(n_layer)
        for suffix in (".weight", ".bias")
    }


@pytest.mark.parametrize("name", ["gpt2", "llama", "llama-bias-untied"])
def test_tensor_names_are_llama_cpp_names(name: str, tmp_path: Path) -> None:
    model, tok = _model(name)
    to_gguf(model, tok, tmp_path / "m.gguf")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    names = {t.name for t in reader.tensors}
    arch = gguf_arch(model.config)
    assert names <= _allowed_names(arch, model.config.n_layer)
    C = model.config.n_embd
    if arch == "llama":
        expected = {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight"}
        expected |= {f"blk.0.{n}.weight" for n in ("attn_q", "attn_k", "attn_v", "attn_output")}
        expected |= {f"blk.0.{n}.weight" for n in ("ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
        assert expected <= names and "position_embd.weight" not in names
        assert ("output.weight" in names) == (not model.config.tie_weights)
        kv = model.config.kv_heads * model.config.head_dim
        shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
        assert shapes["blk.0.attn_k.weight"] == [C, kv]  # GGUF order: {in, out}
    else:
        assert {"position_embd.weight", "blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias"} <= names
        assert "output.weight" not in names  # tied: llama.cpp reads token_embd
    types = {t.tensor_type for t in reader.tensors}
    assert types == {gguf.GGMLQuantizationType.F32}


def test_f16_stores_matrices_in_half_precision(tmp_path: Path) -> None:
    model, tok = _model("llama")
    small = to_gguf(model, tok, tmp_path / "h.gguf", dtype="f16")
    big = to_gguf(model, tok, tmp_path / "f.gguf")
    assert small.size_bytes < 0.75 * big.size_bytes
    reader = gguf.GGUFReader(tmp_path / "h.gguf")
    F = gguf.GGMLQuantizationType
    for t in reader.tensors:
        assert t.tensor_type == (F.F16 if len(t.shape) > 1 else F.F32), t.name
    assert reader.get_field("general.file_type").parts[-1][0] == gguf.LlamaFileType.MOSTLY_F16
    back, _ = from_gguf(tmp_path / "h.gguf")
    idx = torch.tensor([tok.encode(TEXTS[0])])
    torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=2e-2, rtol=0)


def test_rope_permutation_matches_neighbour_pair_rope() -> None:
    """llama.cpp's llama RoPE rotates (x_2i, x_2i+1): the permuted W_Q, W_K give equal scores."""
    torch.manual_seed(0)
    H, D, C, T = 2, 8, 16, 6
    wq, wk = torch.randn(H * D, C), torch.randn(H * D, C)
    x = torch.randn(T, C)
    cos, sin = rope_tables(D, T, 10000.0)

    def heads(w: torch.Tensor) -> torch.Tensor:
        return (x @ w.T).view(T, H, D).transpose(0, 1)  # [H, T, D]

    q, k = apply_rope(heads(wq), cos, sin), apply_rope(heads(wk), cos, sin)  # book: halves
    neighbour = RotaryEmbedding(D, max_len=T)  # chapter 3 (= llama.cpp's "normal" RoPE)
    q2, k2 = neighbour(heads(rope_permute(wq, H))), neighbour(heads(rope_permute(wk, H)))
    torch.testing.assert_close(q2 @ k2.transpose(-1, -2), q @ k.transpose(-1, -2))
    assert torch.equal(rope_unpermute(rope_permute(wq, H), H), wq)
    assert torch.equal(rope_permute(torch.arange(8.0), 1), torch.tensor([0.0, 4, 1, 5, 2, 6, 3, 7]))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(qk_norm=True), "qk_norm=True"),
        (dict(n_experts=2), "n_experts=2"),
        (dict(norm="rmsnorm"), "norm='rmsnorm'.*no GGUF architecture"),
        (dict(pos="rope", norm="rmsnorm", mlp="gelu"), "mlp='gelu'"),
    ],
)
def test_unsupported_configs_are_named(
    overrides: dict[str, Any], match: str, tmp_path: Path
) -> None:
    model, tok = tiny_gpt(texts=TEXTS, **overrides)
    with pytest.raises(ValueError, match=match):
        to_gguf(model, tok, tmp_path / "m.gguf")
    assert not list(tmp_path.iterdir())


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    model, tok = _model("gpt2")
    with pytest.raises(ValueError, match="vocab_size"):
        to_gguf(model, CharTokenizer.fit(["别的字"]), tmp_path / "m.gguf")
    with pytest.raises(ValueError, match="dtype"):
        to_gguf(model, tok, tmp_path / "m.gguf", dtype="q8_0")
    with pytest.raises(TypeError, match="CharTokenizer"):
        to_gguf(model, object(), tmp_path / "m.gguf")  # type: ignore[arg-type]
    spm = CharTokenizer.fit(["\u2581 字"])
    with pytest.raises(ValueError, match="U\\+2581"):
        to_gguf(tiny_gpt(vocab_size=spm.vocab_size), spm, tmp_path / "m.gguf")


def test_other_architectures_are_refused_on_reading(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "qwen3")
    writer.add_tensor("token_embd.weight", torch.zeros(4, 2).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="architecture 'qwen3'"):
        from_gguf(tmp_path / "q.gguf")
    meta, tensors = read_gguf(tmp_path / "q.gguf")
    assert meta["general.architecture"] == "qwen3" and tensors["token_embd.weight"].shape == (4, 2)


def test_cli_exports_the_shipped_poetry_gpt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmbook.data.registry import shipped_checkpoint
    from llmbook.training.checkpoint import load_checkpoint

    out = tmp_path / "gpt-poetry.gguf"
    assert main(["export", "--checkpoint", "gpt-poetry", "--gguf", str(out)]) == 0
    printed = capsys.readouterr().out
    m = re.search(r"(\d+) tensors, (\d+) bytes", printed)
    assert m and int(m.group(2)) == out.stat().st_size
    model, tok, _ = load_checkpoint(shipped_checkpoint("gpt-poetry"))
    assert int(m.group(1)) == len(gguf.GGUFReader(out).tensors) == 4 + 12 * model.config.n_layer
    back, tok2 = from_gguf(out)
    assert tok2.itos == tok.itos and back.config.vocab_size == tok.vocab_size
    idx = torch.tensor([tok.encode("床前明月光，疑是地上霜。", add_bos=True)])
    torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=1e-5, rtol=0)


def test_cli_names_an_unsupported_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmbook.training.checkpoint import save_checkpoint

    model, tok = tiny_gpt(texts=TEXTS, **GPTConfig.llama(qk_norm=True, n_embd=16).to_dict())
    save_checkpoint(tmp_path / "ck", model, tok)
    assert main(["export", "--checkpoint", str(tmp_path / "ck"), "--gguf", "x.gguf"]) == 2
    assert "qk_norm=True" in capsys.readouterr().err
