"""Applications built on the models: retrieval, summarization and sequence-to-sequence translation."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
