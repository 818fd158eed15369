"""Byte-level byte-pair encoding written from scratch (section 2.7).

The tokenizer works in three stages, each a few lines below:

1. **Bytes as characters.**  Text is encoded as UTF-8 (a Chinese character is three
   bytes) and every byte is shown as one printable character by GPT-2's table
   :func:`bytes_to_unicode` (the space byte becomes ``"Ġ"``, byte ``0xe4`` becomes ``"ä"``),
   so that tokens are ordinary strings.
2. **Pre-tokenisation.**  :func:`pretokenize` cuts the text into runs of letters, runs of
   digits, runs of other symbols and whitespace, with GPT-2's regular expression
   (:data:`GPT2_PATTERN`); merges never cross these boundaries.  This is what Hugging Face
   ``tokenizers`` does with ``ByteLevel(add_prefix_space=False, use_regex=True)``; the
   two agree on every character in Python's Unicode database (``tests/test_bpe.py``), and
   differ only on code points unassigned there, which the ``regex`` module and Hugging
   Face's regex engine classify by different Unicode versions.
3. **Merges.**  Training starts from the 256 bytes and repeatedly merges the most frequent
   adjacent pair of tokens into a new token.  :func:`train_bpe_reference` is the textbook
   loop (recount every pair after every merge); :func:`train_bpe` gives the same merges
   quickly by keeping the pair counts up to date and remembering which words contain each
   pair.  Ties (pairs with equal counts) go to the pair whose two token ids are smallest,
   compared left id first — the rule of Hugging Face's ``BpeTrainer``, whose token ids are
   the special tokens, then the 256 byte characters in code-point order, then the merged
   tokens in the order they were made.  Both functions return a :class:`ByteBPE`.

:class:`ByteBPE` follows the package's tokenizer interface (ids ``0..3`` are ``<pad>``,
``<unk>``, ``<bos>``, ``<eos>``): ``encode`` applies the learned merges to each
pre-token, lowest-ranked (earliest learned) pair first, leftmost first on a tie, exactly
as Hugging Face's BPE model does; ``decode(encode(s)) == s`` for every string, and there
is never an ``<unk>``.  :meth:`ByteBPE.pieces` shows the tokens readably: whole
characters as characters, the bytes of a character split between tokens as ``<e4>``.

>>> tok = train_bpe(["人民日报，人民日报。"], vocab_size=300)
>>> tok.pieces("人民日报")
['人民日报']
>>> tok.decode(tok.encode("人民 news"))
'人民 news'
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import regex

from llmbook.text.tokenizers import SPECIAL_TOKENS, BaseTokenizer, _check_text, _check_texts

__all__ = [
    "GPT2_PATTERN",
    "ALPHABET",
    "bytes_to_unicode",
    "to_byte_chars",
    "from_byte_chars",
    "readable_bytes",
    "pretokenize",
    "word_counts",
    "train_bpe_reference",
    "train_bpe",
    "ByteBPE",
]

#: GPT-2's pre-tokenisation pattern: English contractions, letters (with one leading
#: space), digits, other symbols, and whitespace (a run of spaces before a word leaves its
#: last space to the word).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_SPLIT = regex.compile(GPT2_PATTERN)
_N_SPECIAL = len(SPECIAL_TOKENS)
_FORMAT = "llmbook-bytebpe"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from the 256 byte values to 256 printable characters.

    Bytes that are already printable, non-space Latin-1 characters (``!``..``~``,
    ``¡``..``¬``, ``®``..``ÿ``: 188 of them) stand for themselves; the other 68 (control
    bytes, the space, ``0x7f``–``0xa0`` and ``0xad``) are given the characters from
    U+0100 on, in byte order.  So the space byte 32 is ``"Ġ"`` (U+0120) and ``"\\n"`` is
    ``"Ċ"``.
    """
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR: dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
#: The 256 byte characters in the order they get ids (after the special tokens).
ALPHABET: tuple[str, ...] = tuple(sorted(BYTE_TO_CHAR.values()))


def to_byte_chars(text: str) -> str:
    """``text`` as UTF-8 bytes, each byte written as its :func:`bytes_to_unicode` character."""
    return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))


def from_byte_chars(chars: str) -> bytes:
    """The bytes that a string of byte characters stands for."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in chars)
    except KeyError as err:
        raise ValueError(
            f"{chars!r} contains {err.args[0]!r}, which is not a byte character"
        ) from None


def pretokenize(text: str) -> list[str]:
    """Split ``text`` with :data:`GPT2_PATTERN` and write each piece as byte characters.

    >>> pretokenize("人民日报，2022年 ok")
    ['äººæ°ĳæĹ¥æĬ¥', 'ï¼Į', '2022', 'å¹´', 'Ġok']
    """
    return [to_byte_chars(piece) for piece in _SPLIT.findall(text)]


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each pre-token occurs in ``texts`` (the training data of BPE)."""
    docs = _check_texts(texts, "BPE training")
    counts: Counter[str] = Counter()
    for t in docs:
        counts.update(pretokenize(t))
    if not counts:
        raise ValueError("BPE training: the texts are all empty; there is nothing to learn from")
    return counts


def _check_vocab_size(vocab_size: object) -> int:
    minimum = _N_SPECIAL + len(ALPHABET)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be an int >= {minimum} (4 special tokens + 256 bytes), "
            f"got {vocab_size!r}"
        )
    return vocab_size


def _start(texts: Iterable[str], vocab_size: int) -> tuple[list[str], list[list[int]], list[int]]:
    """The initial vocabulary and the training words as lists of token ids (with counts)."""
    _check_vocab_size(vocab_size)
    counts = word_counts(texts)
    tokens = [*SPECIAL_TOKENS, *ALPHABET]
    index = {t: i for i, t in enumerate(tokens)}
    words = [[index[c] for c in w] for w in counts]
    return tokens, words, list(counts.values())


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace every occurrence of the pair ``(a, b)`` in ``word``, left to right."""
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _add_token(tokens: list[str], index: dict[str, int], a: int, b: int) -> int:
    """The id of the token ``a + b``, made new unless another merge already spelled it."""
    s = tokens[a] + tokens[b]
    if s not in index:
        index[s] = len(tokens)
        tokens.append(s)
    return index[s]


def train_bpe_reference(texts: Iterable[str], vocab_size: int) -> ByteBPE:
    """Learn BPE merges the textbook way: count all pairs, merge the most frequent, repeat.

    Every round recounts every adjacent pair in every word (weighted by how often the word
    occurs), so it is slow — use it on small corpora and to check :func:`train_bpe`.
    Stops when the vocabulary has ``vocab_size`` tokens or no pair is left.
    """
    tokens, words, counts = _start(texts, vocab_size)
    index = {t: i for i, t in enumerate(tokens)}
    merges: list[tuple[int, int]] = []
    while len(tokens) < vocab_size:
        pairs: Counter[tuple[int, int]] = Counter()
        for word, n in zip(words, counts, strict=True):
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        # most frequent first; on a tie the pair with the smaller ids
        a, b = min(pairs, key=lambda p: (-pairs[p], p))
        new = _add_token(tokens, index, a, b)
        merges.append((a, b))
        words = [_merge_word(w, a, b, new) for w in words]
    return ByteBPE(tokens, merges)


def train_bpe(texts: Iterable[str], vocab_size: int) -> ByteBPE:
    """The same merges as :func:`train_bpe_reference`, without recounting everything.

    ``pair_count[p]`` holds the current count of pair ``p`` and ``where[p]`` the words it
    was ever seen in.  A merge rewrites only the words in ``where[p]``, subtracts their
    old pairs from the counts and adds their new ones.  The next pair comes from a heap of
    ``(-count, pair)`` entries; an entry whose count is out of date (counts only fall,
    except for pairs with the new token, which get fresh entries) is pushed back with its
    current count, so the pair taken is always the true maximum, ties to the smallest ids.
    """
    tokens, words, counts = _start(texts, vocab_size)
    index = {t: i for i, t in enumerate(tokens)}
    pair_count: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for wi, (word, n) in enumerate(zip(words, counts, strict=True)):
        for pair in zip(word, word[1:]):
            pair_count[pair] += n
            where.setdefault(pair, set()).add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(tokens) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        current = pair_count.get(pair, 0)
        if -neg != current:  # stale entry: put it back with its true count
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        a, b = pair
        new = _add_token(tokens, index, a, b)
        merges.append(pair)
        grown: set[tuple[int, int]] = set()
        for wi in sorted(where.pop(pair)):
            word, n = words[wi], counts[wi]
            merged = _merge_word(word, a, b, new)
            if len(merged) == len(word):
                continue
            for p in zip(word, word[1:]):
                pair_count[p] -= n
            for p in zip(merged, merged[1:]):
                pair_count[p] += n
                if new in p:
                    where.setdefault(p, set()).add(wi)
                    grown.add(p)
            words[wi] = merged
        del pair_count[pair]
        for p in sorted(grown):
            heapq.heappush(heap, (-pair_count[p], p))
    return ByteBPE(tokens, merges)


def readable_bytes(data: bytes) -> str:
    """``data`` with whole UTF-8 characters as themselves and stray bytes as ``<e4>``.

    >>> readable_bytes("中".encode("utf-8")[:2] + "文".encode("utf-8"))
    '<e4><b8>文'
    """
    out = []
    i = 0
    while i < len(data):
        for k in (1, 2, 3, 4):
            try:
                ch = data[i : i + k].decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(ch)
            i += k
            break
        else:
            out.append(f"<{data[i]:02x}>")
            i += 1
    return "".join(out)


class ByteBPE(BaseTokenizer):
    """A byte-level BPE tokenizer: a token list and the merges that made it.

    ``tokens[i]`` is the token with id ``i`` written in byte characters
    (:func:`bytes_to_unicode`): the four special tokens, the 256 bytes in code-point order,
    then one token per merge (two merges that spell the same string share one token).
    ``merges[r] = (a, b)`` is the pair of ids merged at rank ``r``.
    """

    kind: ClassVar[str] = "bytebpe"

    def __init__(self, tokens: Sequence[str], merges: Sequence[tuple[int, int]]) -> None:
        tokens = list(tokens)
        start = [*SPECIAL_TOKENS, *ALPHABET]
        if tokens[: len(start)] != start:
            raise ValueError(
                "a ByteBPE vocabulary starts with the 4 special tokens and the 256 byte "
                "characters in code-point order; this one does not (train it with train_bpe)"
            )
        if len(set(tokens)) != len(tokens):
            raise ValueError("the vocabulary has duplicate tokens")
        self.tokens: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        #: ``(a, b) -> (rank, id of the merged token)``
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        made = set(range(len(start)))
        for r, m in enumerate(merges):
            if len(m) != 2 or not all(isinstance(x, int) and 0 <= x < len(tokens) for x in m):
                raise ValueError(f"merge {r} {m!r} does not name two token ids")
            a, b = int(m[0]), int(m[1])
            new = self.stoi.get(tokens[a] + tokens[b])
            if a not in made or b not in made or new is None or (a, b) in self.ranks:
                raise ValueError(
                    f"merge {r} ({tokens[a]!r} + {tokens[b]!r}) does not follow from the "
                    "merges before it; the file is damaged or not a ByteBPE"
                )
            self.ranks[(a, b)] = (r, new)
            made.add(new)
        if len(made) != len(tokens):
            raise ValueError("some tokens are not made by any merge; the file is damaged")
        self.merges: list[tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        self._cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ encoding
    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _encode_word(self, word: str) -> list[int]:
        """Apply the merges to one pre-token: lowest rank first, leftmost first on ties."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids = [self.stoi[c] for c in word]
        none = (len(self.merges), -1)
        ranks = [self.ranks.get(p, none) for p in zip(ids, ids[1:])]
        while ranks:
            best = min(ranks)
            if best[1] < 0:  # no pair left that a merge knows
                break
            i = ranks.index(best)
            ids[i : i + 2] = [best[1]]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = self.ranks.get((ids[i - 1], ids[i]), none)
            if i < len(ranks):
                ranks[i] = self.ranks.get((ids[i], ids[i + 1]), none)
        if len(self._cache) < 200_000:
            self._cache[word] = ids
        return list(ids)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text`` (never ``<unk>``; text spelling ``<eos>`` is just bytes)."""
        ids = [self.bos_id] if add_bos else []
        for word in pretokenize(_check_text(text)):
            ids.extend(self._encode_word(word))
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` in byte characters (``"Ġ"`` for a space …)."""
        return [self.tokens[i] for i in self.encode(text)]

    def _bytes(self, i: int) -> bytes:
        if not isinstance(i, int) or not 0 <= i < len(self.tokens):
            raise ValueError(
                f"id {i!r} is out of range for a vocabulary of size {len(self.tokens)}"
            )
        if i < _N_SPECIAL:
            return SPECIAL_TOKENS[i].encode("utf-8")
        return from_byte_chars(self.tokens[i])

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """The text of ``ids``; bytes that do not form a character become ``\\ufffd``."""
        data = b"".join(
            self._bytes(int(i)) for i in ids if not (skip_special and int(i) < _N_SPECIAL)
        )
        return data.decode("utf-8", errors="replace")

    def pieces(self, text: str) -> list[str]:
        """Each token of ``text`` as the characters it forms, stray bytes as ``<e4>``.

        >>> ByteBPE([*SPECIAL_TOKENS, *ALPHABET], []).pieces("中a")
        ['<e4>', '<b8>', '<ad>', 'a']
        """
        return [readable_bytes(self._bytes(i)) for i in self.encode(text)]

    def token_to_id(self, tok: str) -> int:
        try:
            return self.stoi[tok]
        except KeyError:
            raise KeyError(
                f"token {tok!r} is not in the vocabulary; tokens are written in byte "
                "characters (see tokenize())"
            ) from None

    def id_to_token(self, i: int) -> str:
        if not isinstance(i, int) or not 0 <= i < len(self.tokens):
            raise KeyError(f"id {i!r} is out of range: valid ids are 0..{len(self.tokens) - 1}")
        return self.tokens[i]

    def truncated(self, vocab_size: int) -> ByteBPE:
        """The tokenizer this training would have given at a smaller ``vocab_size``.

        Training is greedy, so a smaller vocabulary is a prefix of the merges.
        """
        _check_vocab_size(vocab_size)
        if vocab_size > self.vocab_size:
            raise ValueError(
                f"vocab_size {vocab_size} is larger than this tokenizer's {self.vocab_size}"
            )
        n = 0
        made = _N_SPECIAL + len(ALPHABET)
        while made < vocab_size:
            _, new = self.ranks[self.merges[n]]
            made = max(made, new + 1)
            n += 1
        return ByteBPE(self.tokens[:vocab_size], self.merges[:n])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the tokens and merges as UTF-8 JSON."""
        data = {"format": _FORMAT, "kind": self.kind, "tokens": self.tokens, "merges": self.merges}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ByteBPE:
        """Read a tokenizer written by :meth:`save`; a damaged or foreign file raises ValueError."""
        try:
            data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a ByteBPE file (not UTF-8 JSON: {err})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(
                f'{path} is not a ByteBPE file (no "format": {_FORMAT!r}); a Hugging Face '
                "tokenizer.json loads with BPETokenizer.load"
            )
        tokens, merges = data.get("tokens"), data.get("merges")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f'{path}: "tokens" must be a list of strings')
        if not isinstance(merges, list) or not all(isinstance(m, list) for m in merges):
            raise ValueError(f'{path}: "merges" must be a list of [id, id] pairs')
        try:
            return cls(tokens, [tuple(m) for m in merges])  # type: ignore[misc]
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
