"""Tokenizers behind one interface: characters, jieba words and byte-pair encoding.

Every tokenizer in the book maps text to a list of integer ids and back; code that uses
one annotates it with :class:`llmbook.interfaces.Tokenizer` (re-exported here), the
protocol they all satisfy:

* ids ``0..3`` are the special tokens ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``
  (attributes ``pad_id``, ``unk_id``, ``bos_id``, ``eos_id``);
* ``encode(text, add_bos=False, add_eos=False) -> list[int]``;
* ``decode(ids, skip_special=True) -> str``;
* ``token_to_id(tok)`` / ``id_to_token(i)``, ``vocab_size``;
* ``save(path)`` / ``Cls.load(path)`` as JSON.

:class:`CharTokenizer` treats every Unicode character as a token, the natural unit of
written Chinese; :class:`WordTokenizer` segments with jieba; :class:`BPETokenizer` learns
sub-word units with Hugging Face ``tokenizers``.  Characters that were not seen when the
vocabulary was built are encoded as ``<unk>`` (so ``decode(encode(t)) == t`` only holds
for texts whose characters are all in the vocabulary; the BPE tokenizer works on bytes
and round-trips every string).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from llmbook.interfaces import Tokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "ROLE_TOKENS",
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    "Tokenizer",
    "BaseTokenizer",
    "VocabTokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "compare_tokenizers",
]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
#: Special tokens, in id order: ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
#: Chat role tokens (:mod:`llmbook.text.chat`), appended to a vocabulary when needed;
#: ``decode(skip_special=True)`` drops them like the four above.
ROLE_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
_SKIPPED = frozenset(SPECIAL_TOKENS + ROLE_TOKENS)

T = TypeVar("T", bound="VocabTokenizer")


def _check_texts(texts: Iterable[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(
            f"{what} expects an iterable of strings, got a single str; wrap it in a list: [text]"
        )
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{what}: item {i} is {type(t).__name__}, expected str")
    if not out:
        raise ValueError(f"{what}: the corpus is empty; pass at least one text")
    return out


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}")
    return text


class BaseTokenizer:
    """What the book's tokenizers share: the special ids, ``len()`` and ``repr``.

    Every subclass satisfies :class:`llmbook.interfaces.Tokenizer`, the type that code
    using a tokenizer annotates with; this base class is also how a checkpoint recognises
    a tokenizer class it may load.
    """

    pad_id: ClassVar[int] = 0
    unk_id: ClassVar[int] = 1
    bos_id: ClassVar[int] = 2
    eos_id: ClassVar[int] = 3
    kind: ClassVar[str] = "base"

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into token strings (before mapping to ids)."""
        raise NotImplementedError

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        raise NotImplementedError

    def token_to_id(self, tok: str) -> int:
        raise NotImplementedError

    def id_to_token(self, i: int) -> str:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to ``path`` (JSON), to be read by ``Cls.load(path)``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class VocabTokenizer(BaseTokenizer):
    """A tokenizer with an explicit token list: ``itos[i]`` is the token with id ``i``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"the vocabulary must start with the special tokens {SPECIAL_TOKENS}; "
                "build it with .fit(texts)"
            )
        if len(set(tokens)) != len(tokens):
            dup = [t for t, c in Counter(tokens).items() if c > 1][:5]
            raise ValueError(f"the vocabulary has duplicate tokens: {dup}")
        self.itos: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        #: Token frequencies seen by :meth:`fit` (empty for a loaded tokenizer).
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------ building
    @classmethod
    def _split(cls, text: str) -> list[str]:
        raise NotImplementedError

    @classmethod
    def fit(
        cls: type[T], texts: Iterable[str], min_freq: int = 1, max_size: int | None = None
    ) -> T:
        """Build the vocabulary from ``texts``.

        Tokens are ordered by decreasing frequency (ties: by first occurrence), after the
        four special tokens.  Tokens seen fewer than ``min_freq`` times are dropped and,
        with ``max_size``, only the ``max_size`` most frequent are kept (``max_size``
        counts the special tokens too); dropped tokens encode as ``<unk>``.
        """
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an int >= 1, got {min_freq!r}")
        if max_size is not None and (
            not isinstance(max_size, int) or max_size <= len(SPECIAL_TOKENS)
        ):
            raise ValueError(
                f"max_size must be None or an int > {len(SPECIAL_TOKENS)} (it includes the "
                f"special tokens), got {max_size!r}"
            )
        docs = _check_texts(texts, f"{cls.__name__}.fit")
        counts: Counter[str] = Counter()
        for t in docs:
            counts.update(cls._split(t))
        for s in SPECIAL_TOKENS:
            counts.pop(s, None)
        # Counter.most_common is stable for ties: insertion (first-seen) order is kept.
        items = [(tok, c) for tok, c in counts.most_common() if c >= min_freq]
        if max_size is not None:
            items = items[: max_size - len(SPECIAL_TOKENS)]
        tok = cls(list(SPECIAL_TOKENS) + [t for t, _ in items])
        tok.counts = dict(items)
        return tok

    # ------------------------------------------------------------------ mapping
    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def tokenize(self, text: str) -> list[str]:
        return self._split(_check_text(text))

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``; tokens outside the vocabulary become ``unk_id``."""
        get, unk = self.stoi.get, self.unk_id
        ids = [get(t, unk) for t in self.tokenize(text)]
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    _joiner: ClassVar[str] = ""

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``; special and role tokens are dropped unless ``skip_special=False``."""
        n = len(self.itos)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"id {i} is out of range for a vocabulary of size {n}")
            if skip_special and self.itos[i] in _SKIPPED:
                continue
            out.append(self.itos[i])
        return self._joiner.join(out)

    def token_to_id(self, tok: str) -> int:
        try:
            return self.stoi[tok]
        except KeyError:
            raise KeyError(
                f"token {tok!r} is not in the vocabulary ({self.vocab_size} tokens); "
                "encode() maps unknown tokens to <unk>, or refit with more text"
            ) from None

    def id_to_token(self, i: int) -> str:
        if not isinstance(i, int) or not 0 <= i < len(self.itos):
            raise KeyError(f"id {i!r} is out of range: valid ids are 0..{len(self.itos) - 1}")
        return self.itos[i]

    def __contains__(self, tok: object) -> bool:
        return tok in self.stoi

    # ------------------------------------------------------------------ persistence
    def _extra(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as UTF-8 JSON."""
        data = {"kind": self.kind, "tokens": self.itos, **self._extra()}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Read a tokenizer written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("kind") != cls.kind:
            raise ValueError(
                f"{path} holds a {data.get('kind')!r} tokenizer, not {cls.kind!r}; "
                f"load it with the matching class"
            )
        return cls._from_json(data)

    @classmethod
    def _from_json(cls: type[T], data: dict[str, Any]) -> T:
        return cls(data["tokens"])


class CharTokenizer(VocabTokenizer):
    """One token per Unicode character.

    >>> tok = CharTokenizer.fit(["床前明月光"])
    >>> tok.decode(tok.encode("明月"))
    '明月'
    >>> tok.encode("明日")  # 日 was never seen: <unk>
    [6, 1]
    """

    kind: ClassVar[str] = "char"

    @classmethod
    def _split(cls, text: str) -> list[str]:
        return list(text)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        ids = [get(c, unk) for c in _check_text(text)]
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids


class WordTokenizer(VocabTokenizer):
    """Words from jieba's precise mode (HMM on); decoding joins the words with no space.

    ``encode`` of a word outside the vocabulary gives ``<unk>``, so unlike
    :class:`CharTokenizer` a whole word — not just a character — is lost.  Use
    :meth:`fit_tokens` to build the vocabulary from an already segmented corpus (for
    example the People's Daily gold segmentation).
    """

    kind: ClassVar[str] = "word"

    @classmethod
    def _split(cls, text: str) -> list[str]:
        from llmbook.text.chinese import segment

        return segment(text)

    @classmethod
    def fit_tokens(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> WordTokenizer:
        """Like :meth:`fit`, from lists of words instead of raw text."""
        lists = list(token_lists)
        if not lists:
            raise ValueError("WordTokenizer.fit_tokens: the corpus is empty")
        for i, toks in enumerate(lists):
            if isinstance(toks, str):
                raise TypeError(
                    f"fit_tokens: item {i} is a str; pass lists of words (use fit for text)"
                )
        joined = ["\x00".join(t) for t in lists]
        tok = _SplitOnNul.fit(joined, min_freq=min_freq, max_size=max_size)
        out = cls(tok.itos)
        out.counts = tok.counts
        return out


class _SplitOnNul(VocabTokenizer):
    @classmethod
    def _split(cls, text: str) -> list[str]:
        return [w for w in text.split("\x00") if w]


class BPETokenizer(BaseTokenizer):
    """Byte-level byte-pair encoding trained with Hugging Face ``tokenizers``.

    Text is first turned into UTF-8 bytes (a Chinese character is three bytes), and BPE
    learns merges of frequent byte sequences up to ``vocab_size`` tokens.  Because the
    256 byte values are always in the vocabulary there is never an ``<unk>``, and
    ``decode(encode(text)) == text`` for every string.
    """

    kind: ClassVar[str] = "bpe"

    def __init__(self, hf_tokenizer: Any) -> None:
        self._tok = hf_tokenizer
        # Text that spells a special token ("<pad>", "<eos>" …) is encoded as ordinary
        # bytes, not as the special id: otherwise decode() drops it and user text could
        # inject control tokens (found by tests/test_properties.py).
        self._tok.encode_special_tokens = True
        for i, s in enumerate(SPECIAL_TOKENS):
            if hf_tokenizer.token_to_id(s) != i:
                raise ValueError(f"the Hugging Face tokenizer must map {s!r} to id {i}")

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2
    ) -> BPETokenizer:
        """Learn a BPE vocabulary of (at most) ``vocab_size`` tokens from ``texts``."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        docs = _check_texts(texts, "BPETokenizer.train")
        minimum = len(SPECIAL_TOKENS) + 256
        if not isinstance(vocab_size, int) or vocab_size <= minimum:
            raise ValueError(
                f"vocab_size must be an int > {minimum} (4 special tokens + 256 bytes), got {vocab_size!r}"
            )
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(docs, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def tokenize(self, text: str) -> list[str]:
        """The BPE pieces of ``text``, decoded back to readable strings.

        A piece that ends inside a multi-byte character is shown with ``\\ufffd``.
        """
        ids = self._tok.encode(_check_text(text)).ids
        return [self._tok.decode([i]) for i in ids]

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids: list[int] = list(self._tok.encode(_check_text(text)).ids)
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        n = self.vocab_size
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < n:
                raise ValueError(f"id {i} is out of range for a vocabulary of size {n}")
        if not skip_special:
            # decode the pieces between special tokens, keep the special tokens as text
            out: list[str] = []
            run: list[int] = []
            for i in ids:
                if i < len(SPECIAL_TOKENS):
                    out.append(self._tok.decode(run))
                    out.append(SPECIAL_TOKENS[i])
                    run = []
                else:
                    run.append(i)
            out.append(self._tok.decode(run))
            return "".join(out)
        return str(self._tok.decode([i for i in ids if i >= len(SPECIAL_TOKENS)]))

    def token_to_id(self, tok: str) -> int:
        i = self._tok.token_to_id(tok)
        if i is None:
            raise KeyError(
                f"token {tok!r} is not in the BPE vocabulary (tokens are byte-level strings; "
                "use tokenize() to see them)"
            )
        return int(i)

    def id_to_token(self, i: int) -> str:
        tok = self._tok.id_to_token(i) if isinstance(i, int) else None
        if tok is None:
            raise KeyError(f"id {i!r} is out of range: valid ids are 0..{self.vocab_size - 1}")
        return str(tok)

    def save(self, path: str | Path) -> None:
        """Write the Hugging Face tokenizer JSON (loadable by ``tokenizers`` too)."""
        Path(path).write_text(self._tok.to_str(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_file(str(path)))


def compare_tokenizers(
    tokenizers: dict[str, Tokenizer], texts: Sequence[str]
) -> list[dict[str, Any]]:
    """Vocabulary size, tokens per character and unknown-token rate of each tokenizer on ``texts``."""
    docs = _check_texts(texts, "compare_tokenizers")
    n_chars = sum(len(t) for t in docs)
    if n_chars == 0:
        raise ValueError("compare_tokenizers: the texts are all empty")
    rows = []
    for name, tok in tokenizers.items():
        n_tok = n_unk = 0
        for t in docs:
            ids = tok.encode(t)
            n_tok += len(ids)
            n_unk += sum(1 for i in ids if i == tok.unk_id)
        rows.append(
            {
                "tokenizer": name,
                "vocab_size": tok.vocab_size,
                "tokens": n_tok,
                "tokens_per_char": n_tok / n_chars,
                "unk_rate": n_unk / n_tok if n_tok else 0.0,
            }
        )
    return rows
