"""Language-model data: a corpus as one long array of token ids, and random windows of it.

A causal language model is trained on windows ``x = ids[i : i+T]`` with targets
``y = ids[i+1 : i+T+1]`` (the next token at every position).  The whole corpus is encoded
once into a 1-D integer array; saved with :func:`save_ids` it can be opened again as a
**memory-mapped** array (:func:`load_ids`), so that a corpus larger than memory costs no
loading time: the operating system pages in only the windows that are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmbook.interfaces import Tokenizer

__all__ = [
    "encode_corpus",
    "save_ids",
    "load_ids",
    "WindowSampler",
    "id_dtype",
    "right_pad",
]


def id_dtype(vocab_size: int) -> type[np.unsignedinteger[Any]]:
    """Smallest unsigned dtype for ids below ``vocab_size`` (``uint16`` up to 65,536)."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def encode_corpus(
    texts: Iterable[str], tokenizer: Tokenizer, sep: str = "\n", add_bos: bool = True
) -> np.ndarray:
    """Encode ``texts`` into one 1-D id array: ``[<bos>] text sep [<bos>] text sep …``.

    ``sep`` (default ``"\\n"``) ends every text, as in the book's bits-per-character
    protocol, where a model predicts each poem's characters and then ``"\\n"``.  With
    ``add_bos=True`` (default) every text also starts with ``<bos>``, the context the
    evaluation gives the first character, so training and evaluation see the same thing.
    """
    if isinstance(texts, str):
        raise TypeError("encode_corpus expects an iterable of texts, got one str; use [text]")
    sep_ids = tokenizer.encode(sep) if sep else []
    if sep and tokenizer.unk_id in sep_ids:
        raise ValueError(
            f"the separator {sep!r} is not in the tokenizer's vocabulary; fit the tokenizer "
            f"on texts that contain it, e.g. CharTokenizer.fit([t + {sep!r} for t in texts])"
        )
    out: list[int] = []
    n = 0
    for text in texts:
        if add_bos:
            out.append(tokenizer.bos_id)
        out.extend(tokenizer.encode(text))
        out.extend(sep_ids)
        n += 1
    if n == 0:
        raise ValueError("encode_corpus got no texts; pass at least one")
    return np.asarray(out, dtype=id_dtype(tokenizer.vocab_size))


def save_ids(path: str | Path, ids: np.ndarray) -> Path:
    """Save a 1-D id array as ``.npy`` (no pickle) for memory-mapped loading."""
    path = Path(path)
    arr = np.asarray(ids)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got shape {arr.shape} {arr.dtype}")
    np.save(path, arr, allow_pickle=False)
    return path if path.suffix == ".npy" else path.with_name(path.name + ".npy")


def load_ids(path: str | Path, mmap: bool = True) -> np.ndarray:
    """Open an id array written by :func:`save_ids`, memory-mapped by default."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no token-id file at {path}; create it with save_ids()")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        # NumPy's own messages ("mmap length is greater than file size", "contains pickled
        # data" for garbage) neither name the file nor the fix (found by tests/test_faults.py)
        raise ValueError(
            f"{path} is not a valid token-id file ({e}): it is truncated, corrupted or not "
            "written by save_ids(); delete it and re-create it with save_ids() (the CLI "
            "rebuilds it on every run)"
        ) from e
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{path} holds an array of shape {arr.shape} and dtype {arr.dtype}, expected 1-D "
            "integer token ids; re-create it with save_ids()"
        )
    return arr


class WindowSampler:
    """Random training windows of a 1-D id array, reproducible and resumable.

    Each call returns ``(x, y)`` of shape ``[batch_size, block_size]`` with
    ``y[:, t] = x[:, t+1]`` in the corpus.  The random generator's state is part of the
    trainer's checkpoint (:meth:`state_dict`), so a resumed run draws exactly the windows
    the uninterrupted run would have drawn.
    """

    def __init__(self, ids: np.ndarray, block_size: int, seed: int = 0) -> None:
        if ids.ndim != 1:
            raise ValueError(f"token ids must be a 1-D array, got shape {ids.shape}")
        if len(ids) < block_size + 2:
            raise ValueError(
                f"the corpus has {len(ids)} tokens, fewer than block_size + 2 = "
                f"{block_size + 2}; use a smaller block_size or more text"
            )
        self.ids = ids
        self.block_size = block_size
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.block_size
        starts = self.rng.integers(0, len(self.ids) - T - 1, size=batch_size)
        offsets = starts[:, None] + np.arange(T + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(self.ids[offsets], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict[str, Any]:
        return dict(self.rng.bit_generator.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def right_pad(
    rows: Sequence[Sequence[int] | torch.Tensor], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id sequences of different lengths into one batch, padded on the right.

    Returns ``(ids [B, T], lengths [B])`` with ``T`` the longest row: ``ids[i, :lengths[i]]``
    is row ``i`` and the rest is ``pad_id`` (use ``-100`` to pad targets that a loss must
    ignore).  Rows may be lists of ints or 1-D tensors; the result is ``long`` on the CPU.

    >>> right_pad([[5, 6, 7], [8]], pad_id=0)
    (tensor([[5, 6, 7],
            [8, 0, 0]]), tensor([3, 1]))
    """
    if not rows:
        raise ValueError("right_pad got no rows; pass at least one sequence of ids")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return ids, lengths
