"""The package's two interfaces: block_size() of a language model, and the Tokenizer protocol."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from llmbook.applications.seq2seq import SyllableTokenizer
from llmbook.interfaces import Tokenizer, block_size
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.models.rnn import RNNLM, RNNLMConfig
from llmbook.text.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer


def test_block_size_of_the_book_models() -> None:
    assert (
        block_size(GPT(GPTConfig(vocab_size=11, block_size=7, n_layer=1, n_head=1, n_embd=8))) == 7
    )
    assert block_size(RNNLM(RNNLMConfig(vocab_size=11, block_size=5))) == 5


@dataclass
class _NoBlock:
    vocab_size: int = 3


class _WithConfig(torch.nn.Module):
    def __init__(self, config: object) -> None:
        super().__init__()
        self.config = config


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (torch.nn.Linear(2, 2), "Linear has no attribute 'config'"),
        (_WithConfig(_NoBlock()), r"_WithConfig.config has no attribute 'block_size'"),
        (_WithConfig(type("C", (), {"block_size": 0})()), r"block_size=0; .*positive int"),
        (_WithConfig(type("C", (), {"block_size": "8"})()), r"block_size='8'"),
        (_WithConfig(type("C", (), {"block_size": True})()), r"block_size=True"),
    ],
)
def test_block_size_errors_name_the_class_and_what_is_missing(model: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        block_size(model)


def test_every_tokenizer_satisfies_the_protocol() -> None:
    texts = ["床前明月光", "疑是地上霜"]
    tokenizers = [
        CharTokenizer.fit(texts),
        WordTokenizer.fit_tokens([["床前", "明月光"]]),
        BPETokenizer.train(texts * 3, vocab_size=270, min_frequency=1),
        SyllableTokenizer(["<pad>", "<unk>", "<bos>", "<eos>", "ming2", "yue4"]),
    ]
    for tok in tokenizers:
        assert isinstance(tok, Tokenizer), type(tok).__name__
        assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert not isinstance(object(), Tokenizer)
