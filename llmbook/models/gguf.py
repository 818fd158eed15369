r"""The book's GPT as a GGUF file, the single-file format of llama.cpp, and back.

A GGUF file is a plain binary container: a header of typed key–value pairs (the
hyper-parameters and the tokenizer's vocabulary) followed by the named tensors.  Reading
one with :func:`read_gguf` or :func:`from_gguf` parses numbers, strings and arrays and
never executes code (unlike a pickle).  The ``gguf`` package of the llama.cpp project
writes and reads the container (``pip install 'llmbook[hf]'`` or ``pip install gguf``);
it is imported only when a function here is called.

**Architectures.**  :func:`gguf_arch` picks llama.cpp's name for a config:

========================================  ==========  ======================================
book switches                             GGUF arch   tensors (``blk.N.`` per block)
========================================  ==========  ======================================
GPT-2 defaults (learned/layernorm/gelu)   ``gpt2``    ``attn_qkv`` (fused), ``ffn_up``,
                                                      ``ffn_down``, ``position_embd``
``GPTConfig.llama()`` (rope/rmsnorm/      ``llama``   ``attn_q``, ``attn_k``, ``attn_v``,
swiglu, any ``n_kv_head``)                            ``ffn_gate``, ``ffn_up``, ``ffn_down``
========================================  ==========  ======================================

QK-norm, mixtures of experts and mixed switches (e.g. learned positions with RMSNorm)
raise ``ValueError``: llama.cpp names other architectures for them (``qwen3``,
``qwen3moe``, …), which this module does not write.  The conventions, taken from
``gguf``'s ``constants.py`` and llama.cpp's ``convert_hf_to_gguf.py``:

* a matrix is stored as PyTorch's ``nn.Linear`` keeps it, ``[out, in]`` in NumPy order
  (GGUF lists the dimensions the other way round, ``{in, out}``), so nothing is
  transposed; ``token_embd`` is ``[V, C]``;
* the weights are **tied** when ``output.weight`` is absent: llama.cpp then reads the
  output layer from ``token_embd.weight``;
* llama.cpp's ``gpt2`` graph needs every bias, so a model with ``bias=False`` is written
  with zero biases (the same function); :func:`from_gguf` turns all-zero biases back
  into ``bias=False``.  Its ``llama`` graph takes the biases as optional tensors;
* **RoPE.**  llama.cpp's ``llama`` architecture rotates neighbouring coordinates
  :math:`(x_{2i}, x_{2i+1})` ("normal" RoPE) while the book (like Hugging Face's Llama)
  rotates :math:`(x_i, x_{i+D/2})`.  As llama.cpp's converter does, the rows of
  :math:`W_Q` and :math:`W_K` (and their biases) inside every head are permuted by
  :func:`rope_permute` so that the neighbour convention computes the same scores
  :math:`q\cdot k` (a test checks this with the neighbour RoPE of chapter 3).

**The tokenizer.**  GGUF has no character-level tokenizer model; the vocabulary is
written as a SentencePiece one (``tokenizer.ggml.model = "llama"``) because llama.cpp's
SentencePiece tokenizer starts from single characters and merges two only when the
merged string is a token — with a character vocabulary it never merges, so it encodes
each character to its id as :class:`~llmbook.text.tokenizers.CharTokenizer` does.  A
space is written as ``▁`` (U+2581), SentencePiece's escape, and no space is prefixed
(``add_space_prefix = false``); ``<bos>`` is added as the book's generation does.
Known difference (from reading llama.cpp's source, not run): a character outside the
vocabulary is ``<unk>`` for the book, but llama.cpp's SentencePiece falls back to byte
tokens ``<0xE6>`` …, which a character vocabulary does not have, so llama.cpp is expected
to fail on such text instead of using ``<unk>``.  Adding 256 byte tokens would change
the model's vocabulary size, so they are not added.

**What is verified here.**  The tests read every file back with ``gguf.GGUFReader``
(keys, value types, tensor names against ``gguf``'s list for the architecture), rebuild
the model with :func:`from_gguf` and compare logits (equal to ``1e-5`` in float32), and
check the RoPE permutation numerically.  No llama.cpp binary is available here: that
llama.cpp loads these files and computes the same logits is **not** verified (the key
and tensor names follow ``gguf``'s ``constants.py`` and llama.cpp's loaders for
``gpt2`` and ``llama``; its kernels would in any case agree only up to rounding).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.modern import swiglu_hidden
from llmbook.text.tokenizers import SPECIAL_TOKENS, CharTokenizer

__all__ = [
    "GGUF_ARCHS",
    "GGUFSummary",
    "gguf_arch",
    "gguf_tensor_names",
    "rope_permute",
    "rope_unpermute",
    "to_gguf",
    "read_gguf",
    "from_gguf",
]

#: the llama.cpp architectures this module writes and reads
GGUF_ARCHS = ("gpt2", "llama")
#: SentencePiece's visible space, which llama.cpp's SPM tokenizer puts for " "
SPM_SPACE = "\u2581"
#: ``tokenizer.ggml.token_type`` values (``gguf.TokenType``)
NORMAL, UNKNOWN, CONTROL = 1, 2, 3
#: ``general.file_type`` (``gguf.LlamaFileType``): all float32, or float16 matrices
FILE_TYPES = {"f32": 0, "f16": 1}


def _require_gguf() -> Any:
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError(
            "llmbook.models.gguf needs the gguf package: pip install 'llmbook[hf]' "
            "(or pip install gguf)"
        ) from e
    return gguf


def gguf_arch(config: GPTConfig) -> str:
    """llama.cpp's architecture name for ``config`` (``"gpt2"`` or ``"llama"``).

    Raises ``ValueError`` naming the switch that neither architecture expresses.
    """
    c = config
    if c.qk_norm:
        raise ValueError(
            "qk_norm=True has no tensor in GGUF's gpt2/llama architectures (llama.cpp's qwen3 "
            "has one, which this export does not write): use qk_norm=False, or convert with "
            "llmbook.models.hf.to_hf and llama.cpp's convert_hf_to_gguf.py"
        )
    if c.n_experts:
        raise ValueError(
            f"n_experts={c.n_experts}: this GGUF export writes dense models only (llama.cpp's "
            "MoE architectures are not written here); use n_experts=0"
        )
    switches = (c.pos, c.norm, c.mlp)
    if switches == ("learned", "layernorm", "gelu"):
        return "gpt2"
    if switches == ("rope", "rmsnorm", "swiglu"):
        return "llama"
    raise ValueError(
        f"pos={c.pos!r}, norm={c.norm!r}, mlp={c.mlp!r} has no GGUF architecture here: "
        "gpt2 needs pos='learned', norm='layernorm', mlp='gelu' (the defaults); llama needs "
        "pos='rope', norm='rmsnorm', mlp='swiglu' (GPTConfig.llama())"
    )


def gguf_tensor_names(config: GPTConfig) -> dict[str, str]:
    """``{book state_dict name: GGUF tensor name}`` of the tensors copied one to one.

    The fused ``c_attn`` of a llama-architecture model is split into ``attn_q``,
    ``attn_k``, ``attn_v`` by :func:`to_gguf` and is not listed here; neither is
    ``lm_head.weight`` of a tied model.
    """
    arch = gguf_arch(config)
    kinds = ("weight", "bias") if arch == "gpt2" or config.bias else ("weight",)
    norm_kinds = kinds if arch == "gpt2" else ("weight",)  # RMSNorm has no bias
    names = {"wte.weight": "token_embd.weight"}
    if arch == "gpt2":
        names["wpe.weight"] = "position_embd.weight"
    names |= {f"ln_f.{k}": f"output_norm.{k}" for k in norm_kinds}
    if not config.tie_weights:
        names["lm_head.weight"] = "output.weight"
    mlp = {"c_fc": "ffn_up", "c_proj": "ffn_down"}
    if arch == "llama":
        mlp = {"c_gate": "ffn_gate"} | mlp
    for i in range(config.n_layer):
        b, g = f"blocks.{i}.", f"blk.{i}."
        pairs = [("ln_1", "attn_norm", norm_kinds), ("ln_2", "ffn_norm", norm_kinds)]
        pairs += [("attn.c_proj", "attn_output", kinds)]
        if arch == "gpt2":
            pairs += [("attn.c_attn", "attn_qkv", kinds)]
        pairs += [(f"mlp.{ours}", theirs, kinds) for ours, theirs in mlp.items()]
        names |= {f"{b}{o}.{k}": f"{g}{t}.{k}" for o, t, ks in pairs for k in ks}
    return names


def rope_permute(w: Tensor, n_head: int) -> Tensor:
    """Reorder the rows of every head from pairs ``(i, i+D/2)`` to pairs ``(2i, 2i+1)``.

    ``w`` holds ``n_head`` heads of ``D`` rows (a weight ``[n_head·D, C]`` or a bias);
    row ``i`` of a head goes to ``2i`` and row ``i+D/2`` to ``2i+1``: llama.cpp's
    ``LlamaModel.permute``.
    """
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def rope_unpermute(w: Tensor, n_head: int) -> Tensor:
    """The inverse of :func:`rope_permute`."""
    shape = w.shape
    return w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).transpose(1, 2).reshape(shape)


def _hparams(config: GPTConfig, arch: str) -> dict[str, tuple[str, Any]]:
    """``{key: (value type, value)}`` of the model's hyper-parameters."""
    c, a = config, arch
    kv: dict[str, tuple[str, Any]] = {
        f"{a}.vocab_size": ("uint32", c.vocab_size),
        f"{a}.context_length": ("uint32", c.block_size),
        f"{a}.embedding_length": ("uint32", c.n_embd),
        f"{a}.block_count": ("uint32", c.n_layer),
        f"{a}.feed_forward_length": ("uint32", c.ffn_hidden),
        f"{a}.attention.head_count": ("uint32", c.n_head),
        f"{a}.attention.head_count_kv": ("uint32", c.kv_heads),
    }
    if arch == "gpt2":
        kv[f"{a}.attention.layer_norm_epsilon"] = ("float32", c.norm_eps)
    else:
        kv[f"{a}.attention.layer_norm_rms_epsilon"] = ("float32", c.norm_eps)
        kv[f"{a}.rope.freq_base"] = ("float32", c.rope_theta)
        kv[f"{a}.rope.dimension_count"] = ("uint32", c.head_dim)
    return kv


def _vocabulary(tokenizer: Any) -> list[str]:
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(
            f"to_gguf writes a CharTokenizer's vocabulary, got {type(tokenizer).__name__}; "
            "GGUF's SentencePiece model reproduces character tokenization only"
        )
    tokens = list(tokenizer.itos)
    if SPM_SPACE in tokenizer.stoi:
        raise ValueError(
            f"the vocabulary holds {SPM_SPACE!r} (U+2581), which GGUF's SentencePiece "
            "vocabulary uses for the space; refit the tokenizer without it"
        )
    return [SPM_SPACE if t == " " else t for t in tokens]


@dataclass(frozen=True)
class GGUFSummary:
    """What :func:`to_gguf` wrote."""

    path: Path
    arch: str
    n_tensors: int
    size_bytes: int
    dtype: str

    def __str__(self) -> str:
        mib = self.size_bytes / 2**20
        return (
            f"wrote {self.path}: {self.n_tensors} tensors, {self.size_bytes} bytes "
            f"({mib:.2f} MiB), architecture {self.arch}, {self.dtype}"
        )


def _gguf_tensors(model: GPT) -> dict[str, Tensor]:
    """Every tensor of the file, by GGUF name, in float32 (Q/K permuted for llama)."""
    cfg = model.config
    arch = gguf_arch(cfg)
    for name, module in model.named_modules():
        if name.endswith(("c_attn", "c_proj", "c_fc", "c_gate")) and type(module) is not nn.Linear:
            raise TypeError("to_gguf needs plain nn.Linear projections; merge LoRA adapters first")
    src = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    out: dict[str, Tensor] = {}
    for ours, theirs in gguf_tensor_names(cfg).items():
        out[theirs] = src[ours] if ours in src else torch.zeros(src[ours[:-4] + "weight"].shape[0])
    if arch == "llama":
        q, kv = cfg.n_embd, cfg.kv_heads * cfg.head_dim
        for i in range(cfg.n_layer):
            for kind in ("weight", "bias") if cfg.bias else ("weight",):
                wq, wk, wv = src[f"blocks.{i}.attn.c_attn.{kind}"].split([q, kv, kv])
                out[f"blk.{i}.attn_q.{kind}"] = rope_permute(wq, cfg.n_head).contiguous()
                out[f"blk.{i}.attn_k.{kind}"] = rope_permute(wk, cfg.kv_heads).contiguous()
                out[f"blk.{i}.attn_v.{kind}"] = wv.contiguous()
    return dict(sorted(out.items(), key=lambda item: _tensor_rank(item[0])))


def _tensor_rank(name: str) -> tuple[int, int]:
    """Embeddings, then the blocks in order, then the output layer (a stable sort key)."""
    if name.startswith("blk."):
        return 1, int(name.split(".")[1])
    return (0 if name.startswith(("token_embd", "position_embd")) else 2), 0


@torch.no_grad()
def to_gguf(
    model: GPT,
    tokenizer: CharTokenizer,
    path: str | os.PathLike[str],
    *,
    name: str = "llmbook-gpt",
    dtype: str = "f32",
) -> GGUFSummary:
    """Write ``model`` and its character ``tokenizer`` to the GGUF file ``path``.

    ``dtype="f16"`` stores the matrices in float16 (vectors such as norms and biases
    stay float32, as in llama.cpp's converter).  Metadata written: ``general.name`` =
    ``name``, the architecture of :func:`gguf_arch`, the hyper-parameters (context,
    embedding and feed-forward length, block count, head counts, norm ε, RoPE base), the
    vocabulary with token types and the ids of ``<bos>``, ``<eos>``, ``<unk>``,
    ``<pad>``.  The file is written next to ``path`` and renamed, so an interrupted
    export leaves no half-written file.  Returns a :class:`GGUFSummary`.
    """
    gguf = _require_gguf()
    if not isinstance(model, GPT):
        raise TypeError(f"to_gguf converts llmbook.models.gpt.GPT, got {type(model).__name__}")
    if dtype not in FILE_TYPES:
        raise ValueError(f"dtype must be one of {sorted(FILE_TYPES)}, got {dtype!r}")
    cfg = model.config
    arch = gguf_arch(cfg)
    tokens = _vocabulary(tokenizer)
    if len(tokens) != cfg.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokens)} tokens but the model's vocab_size is "
            f"{cfg.vocab_size}; pass the tokenizer the model was trained with"
        )
    tensors = _gguf_tensors(model)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        writer.add_name(name)
        writer.add_file_type(FILE_TYPES[dtype])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, (kind, value) in _hparams(cfg, arch).items():
            getattr(writer, f"add_{kind}")(key, value)
        writer.add_string("tokenizer.ggml.model", "llama")
        writer.add_array("tokenizer.ggml.tokens", tokens)
        writer.add_array("tokenizer.ggml.scores", [0.0] * len(tokens))
        types = [CONTROL] * len(SPECIAL_TOKENS) + [NORMAL] * (len(tokens) - len(SPECIAL_TOKENS))
        types[tokenizer.unk_id] = UNKNOWN
        writer.add_array("tokenizer.ggml.token_type", types)
        for key, value in (
            ("bos_token_id", tokenizer.bos_id),
            ("eos_token_id", tokenizer.eos_id),
            ("unknown_token_id", tokenizer.unk_id),
            ("padding_token_id", tokenizer.pad_id),
        ):
            writer.add_uint32(f"tokenizer.ggml.{key}", value)
        writer.add_bool("tokenizer.ggml.add_bos_token", True)
        writer.add_bool("tokenizer.ggml.add_eos_token", False)
        writer.add_bool("tokenizer.ggml.add_space_prefix", False)
        for tname, t in tensors.items():
            array = t.numpy()
            writer.add_tensor(
                tname, array.astype(np.float16) if dtype == "f16" and t.ndim > 1 else array
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return GGUFSummary(path, arch, len(tensors), path.stat().st_size, dtype)


def _field_value(field: Any, gguf: Any) -> Any:
    """A ``ReaderField`` as a Python value (``str``, ``int``, ``float``, ``bool``, list)."""
    types = list(field.types)
    if not types:
        return None
    T = gguf.GGUFValueType

    def one(index: int, kind: Any) -> Any:
        part = field.parts[index]
        if kind == T.STRING:
            return bytes(part).decode("utf-8")
        value = part[0]
        if kind == T.FLOAT32:
            return float(str(value))  # the shortest decimal: 1e-05, not 9.99999974e-06
        return bool(value) if kind == T.BOOL else value.item()

    if types[0] == T.ARRAY:
        if len(types) > 2:  # nested arrays: not used by the files this module reads
            return None
        return [one(i, types[1]) for i in field.data]
    return one(field.data[0], types[0])


def read_gguf(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(metadata, tensors)`` of a GGUF file, read with ``gguf.GGUFReader``.

    ``metadata`` maps every key to a Python value; ``tensors`` maps every tensor name to
    a PyTorch tensor in its stored dtype (float32 or float16) and PyTorch's dimension
    order.  Quantised tensors raise ``ValueError``.  Parsing only: nothing is executed.
    """
    gguf = _require_gguf()
    reader = gguf.GGUFReader(str(path))
    metadata = {name: _field_value(f, gguf) for name, f in reader.fields.items()}
    tensors: dict[str, Tensor] = {}
    plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    for t in reader.tensors:
        if t.tensor_type not in plain:
            raise ValueError(
                f"{path}: tensor {t.name} is {t.tensor_type.name}; read_gguf reads F32 and F16 "
                "tensors only (export the model again without quantisation)"
            )
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dimensions inner-first
        tensors[t.name] = torch.from_numpy(np.array(t.data).reshape(shape))
    del reader  # releases the memory map
    return metadata, tensors


def _config(meta: dict[str, Any], tensors: dict[str, Tensor], path: Any) -> GPTConfig:
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise ValueError(
            f"{path}: architecture {arch!r} is not one the book's GPT rebuilds ({GGUF_ARCHS})"
        )

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise ValueError(f"{path}: the metadata key {arch}.{key} is missing")
        return value

    n_embd, n_head = int(get("embedding_length")), int(get("attention.head_count"))
    kv, ffn = int(get("attention.head_count_kv", n_head)), int(get("feed_forward_length"))
    common: dict[str, Any] = dict(
        vocab_size=int(tensors["token_embd.weight"].shape[0]),
        block_size=int(get("context_length")),
        n_layer=int(get("block_count")),
        n_head=n_head,
        n_embd=n_embd,
        n_kv_head=None if kv == n_head else kv,
        tie_weights="output.weight" not in tensors,
    )
    if arch == "gpt2":
        biases = [t for name, t in tensors.items() if name.endswith(".bias")]
        return GPTConfig(
            **common,
            bias=any(bool(torch.any(t != 0)) for t in biases),
            norm_eps=float(get("attention.layer_norm_epsilon")),
            mlp_hidden=None if ffn == 4 * n_embd else ffn,
        )
    if int(get("rope.dimension_count", n_embd // n_head)) != n_embd // n_head:
        raise ValueError(f"{path}: RoPE on part of each head is not supported by the book's GPT")
    if meta.get(f"{arch}.rope.scaling.type", "none") != "none" or "rope_freqs.weight" in tensors:
        raise ValueError(f"{path}: scaled RoPE (Llama 3.1-style) is not supported")
    bias_names = [f"blk.{i}.{n}.bias" for i in range(common["n_layer"]) for n in _LLAMA_BIASED]
    present = [n in tensors for n in bias_names]
    if any(present) and not all(present):
        raise ValueError(
            f"{path}: biases on some projections only; the book's GPT has one bias switch"
        )
    return GPTConfig.llama(
        **common,
        bias=all(present),
        norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        mlp_hidden=None if ffn == swiglu_hidden(n_embd) else ffn,
    )


_LLAMA_BIASED = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def from_gguf(path: str | os.PathLike[str]) -> tuple[GPT, CharTokenizer]:
    """Rebuild ``(model, tokenizer)`` from a GGUF file of the ``gpt2`` or ``llama`` arch.

    The config comes from the standard keys only (no llmbook-specific metadata), so a
    file written by another tool converts too if it fits the book's GPT.  Dropout is not
    stored in GGUF: the model has ``dropout=0`` and is in eval mode.  The vocabulary must
    start with the book's special tokens ``<pad> <unk> <bos> <eos>``.
    """
    meta, stored = read_gguf(path)
    tensors = {k: v.float() for k, v in stored.items()}
    cfg = _config(meta, tensors, path)
    model = GPT(cfg)
    state: dict[str, Tensor] = {}
    for ours, theirs in gguf_tensor_names(cfg).items():
        if theirs not in tensors:
            raise ValueError(f"{path}: tensor {theirs} is missing")
        state[ours] = tensors.pop(theirs)
    if cfg.tie_weights:
        state["lm_head.weight"] = state["wte.weight"]
    if gguf_arch(cfg) == "llama":
        for i in range(cfg.n_layer):
            for kind in ("weight", "bias") if cfg.bias else ("weight",):
                q, k, v = (tensors.pop(f"blk.{i}.attn_{x}.{kind}", None) for x in "qkv")
                if q is None or k is None or v is None:
                    raise ValueError(f"{path}: blk.{i}.attn_q/k/v.{kind} are missing")
                parts = [rope_unpermute(q, cfg.n_head), rope_unpermute(k, cfg.kv_heads), v]
                state[f"blocks.{i}.attn.c_attn.{kind}"] = torch.cat(parts)
    elif not cfg.bias:  # the zero biases that llama.cpp's gpt2 graph requires
        state = {k: v for k, v in state.items() if not k.endswith(".bias")}
    if tensors:
        raise ValueError(f"{path}: tensors the book's GPT has no place for: {sorted(tensors)[:5]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: the tensors do not fit the config in the metadata ({e})") from e
    tokens = [" " if t == SPM_SPACE else t for t in meta.get("tokenizer.ggml.tokens") or []]
    if len(tokens) != cfg.vocab_size:
        raise ValueError(
            f"{path}: {len(tokens)} tokens in tokenizer.ggml.tokens for {cfg.vocab_size} rows "
            "of token_embd.weight"
        )
    try:
        tokenizer = CharTokenizer(tokens)
    except ValueError as e:
        raise ValueError(f"{path}: not a book character vocabulary ({e})") from e
    return model.eval(), tokenizer
