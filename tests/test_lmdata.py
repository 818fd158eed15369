"""llmbook.data.lmdata.right_pad: the one padding helper every batch of the package goes through."""

from __future__ import annotations

import pytest
import torch

from llmbook.data.lmdata import right_pad


def test_right_pad_keeps_every_row_and_pads_the_rest() -> None:
    rows = [[5, 6, 7], [8], [], [9, 10]]
    ids, lengths = right_pad(rows, pad_id=0)
    assert ids.dtype == lengths.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 0, 2]
    for row, n, expected in zip(ids, lengths, rows):
        assert row[:n].tolist() == expected


def test_right_pad_accepts_tensors_and_loss_padding() -> None:
    ids, lengths = right_pad([torch.tensor([1, 2]), torch.tensor([3])], pad_id=-100)
    assert ids.tolist() == [[1, 2], [3, -100]] and lengths.tolist() == [2, 1]


def test_right_pad_needs_rows() -> None:
    with pytest.raises(ValueError, match="no rows"):
        right_pad([], pad_id=0)
