"""The 3.4 pinyin artifact: a seq2seq run saved by save_pinyin_run loads back unchanged."""

from __future__ import annotations

import pytest
import torch

from llmbook.applications.seq2seq import greedy, train_seq2seq
from llmbook.experiments.pinyin import load_pinyin_run, save_pinyin_run

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [("银行行长", "yin2 hang2 hang2 zhang3"), ("步行回家", "bu4 xing2 hui2 jia1")] * 4


def test_round_trip(tmp_path) -> None:
    run = train_seq2seq(PAIRS, d_model=16, n_heads=2, layers=1, steps=3, progress=False)
    save_pinyin_run(run, tmp_path / "art", config={"steps": 3})
    back = load_pinyin_run(tmp_path / "art")
    assert back.tgt_tokenizer.itos == run.tgt_tokenizer.itos
    assert back.src_tokenizer.encode("银行") == run.src_tokenizer.encode("银行")
    src, tgt = torch.tensor([run.src_tokenizer.encode("银行行长")]), torch.tensor([[2, 4, 5]])
    torch.testing.assert_close(back.model(src, tgt), run.model.eval()(src, tgt))
    torch.testing.assert_close(
        back.model.cross_attention_maps(src, tgt), run.model.cross_attention_maps(src, tgt)
    )
    assert greedy(back, ["步行回家"]) == greedy(run, ["步行回家"])
    assert len(back.losses) == 1  # one mean per 100 steps


def test_missing_folder_says_how_to_build(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="build ch3-pinyin-seq2seq"):
        load_pinyin_run(tmp_path / "nothing")
