"""Evaluation: language-model metrics, task metrics (BLEU, ROUGE, accuracy), verse-form checks, word vectors, fairness, privacy and interpretability."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
