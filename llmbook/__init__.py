"""llmbook — the package behind 《字字有据：从 n-gram 到中文 GPT 的可运行讲义》.

Every chapter of the book imports its code from here.  The package is grouped by concern,
in layers that only import downward (``tests/test_layers.py`` enforces it)::

    cli, __main__                       command line (train / generate / eval / serve / doctor)
    book/  experiments/                 support for the book; the longer experiments
    applications/  serving/             retrieval, summarization, seq2seq; the HTTP server
    training/                           trainer, checkpoints, DDP, compute, fine-tuning, SFT
    evaluation/                         LM and task metrics, verse form, word vectors, fairness …
    generation/                         decoding: greedy, sampling, beam search, KV cache
    models/                             n-gram, RNN/LSTM, attention, Transformer, GPT, LoRA, HF
    text/                               cleaning, segmentation, tokenizers, chat format, embeddings
    data/                               data registry and shipped checkpoints, corpora, LM streams
    utils, interfaces                   seeding, devices, progress bars; shared protocols

Chapter → modules (what each chapter builds; later chapters import the same functions):

==========================  ==================================================================
Chapter                     Modules
==========================  ==================================================================
1 背景介绍                  ``data.poetry``, ``data.people_daily``, ``data.timeline``,
                            ``text.chinese``, ``models.ngram``
2 核心概念与联系            ``text.chinese``, ``text.tokenizers``, ``text.embeddings``, ``text.sgns``,
                            ``text.bpe``, ``evaluation.wordvec``, ``experiments.tokcompare``
3 核心算法原理与具体操作步骤  ``models.rnn``, ``models.attention``, ``models.positional``,
                            ``models.transformer``, ``data.lmdata``, ``training.trainer``,
                            ``experiments.recall``, ``experiments.artifacts``
4 数学模型和公式            ``evaluation.lm``, ``models.rnn``, ``training.trainer``,
                            ``models.positional``, ``models.gpt``, ``models.hf``,
                            ``evaluation.throughput``, ``training.dpo``, ``training.grpo``
5 项目实践                  ``models.gpt``, ``training.trainer``, ``training.checkpoint``,
                            ``generation.decoding``, ``evaluation.poems``, ``cli``,
                            ``experiments.ablation``
6 实际应用场景              ``models.classifier``, ``models.lora``, ``training.finetune``,
                            ``training.sft``, ``evaluation.instructions``,
                            ``experiments.sentiment``, ``applications.*``, ``data.mcq``,
                            ``evaluation.multiple_choice``, ``evaluation.poem_rewards``,
                            ``training.dpo``, ``training.grpo``, ``training.policy``,
                            ``serving.*``
7 工具和资源推荐            ``models.hf``, ``data.quality``, ``evaluation.fairness``
8 总结：未来发展趋势与挑战  ``experiments.scaling``, ``training.compute``,
                            ``evaluation.fairness``, ``evaluation.privacy``,
                            ``evaluation.interpret``, ``data.quality``
9 附录：常见问题与解答      ``training.compute``, ``data.quality``, ``evaluation.fairness``
==========================  ==================================================================

Every chapter checks its own prose with ``book.claims.claim`` (hidden cells that CI runs),
and loads its long-trained results from artifacts that ``python -m llmbook.experiments build
NAME`` (``experiments.artifacts``) rebuilds from ``configs/artifacts/NAME.toml``.

Submodules are imported lazily, so ``import llmbook`` is fast and ``llmbook.models.gpt``
works after it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from llmbook._lazy import lazy_submodules  # noqa: E402
from llmbook.utils import count_parameters, get_device, set_seed  # noqa: E402

__all__ = [
    "__version__",
    "set_seed",
    "get_device",
    "count_parameters",
    "setup_notebook",
    "glue",
    "claim",
]


def setup_notebook(seed: int = 0) -> None:
    """One call at the top of every chapter: seed everything, Chinese fonts, quiet logs."""
    from llmbook.book.notebook import setup_notebook as _setup

    _setup(seed)


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Store ``value`` for ``{glue:}`name``` in the book's prose (no-op outside the build)."""
    from llmbook.book.notebook import glue as _glue

    return _glue(name, value, display)


def claim(text: str, holds: bool, **values: Any) -> None:
    """Check a sentence of the book against this run (:func:`llmbook.book.claims.claim`).

    Returns nothing, so a hidden cell that ends with a claim prints nothing either.
    """
    from llmbook.book.claims import claim as _claim

    _claim(text, holds, **values)


__getattr__ = lazy_submodules(__name__)  # llmbook.models, llmbook.data.poetry, …
