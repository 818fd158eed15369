"""Exercises of chapter 8 (summary and outlook): reference solutions and their checkers.

The checkers compare against the package's own functions — :mod:`llmbook.evaluation.lm`,
:func:`llmbook.experiments.scaling.fit_loglog`, :mod:`llmbook.training.compute`,
:func:`llmbook.evaluation.fairness.weat`, :func:`llmbook.evaluation.privacy.exposure`,
:func:`llmbook.data.quality.jaccard`, :mod:`llmbook.generation.watermark` — or against values
computed by hand.

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch8 import s1_4, s5_8, s9  # noqa: F401
