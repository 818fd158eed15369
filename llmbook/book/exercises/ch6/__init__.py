"""Exercises of chapter 6 (applications): reference solutions, checkers and answers.

Coding exercises are checked against the package's own functions (LoRA in
:mod:`llmbook.models.lora`, the SFT targets of :mod:`llmbook.training.sft`,
:func:`llmbook.generation.repetition.distinct_n`, BM25 in
:mod:`llmbook.applications.retrieval`, int8 quantisation in :mod:`llmbook.models.quant`,
the KV cache, :func:`llmbook.evaluation.multiple_choice.chance_p_value`, GRPO's
advantages) or against values computed by hand.  Every case is a tiny inline example.

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch6 import s1_4, s5_9, s10_11, s12  # noqa: F401
