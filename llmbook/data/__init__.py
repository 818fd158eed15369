"""Data, offline and verified: the file registry and shipped checkpoints, one module per corpus, LM token streams, the model timeline and data-quality filters."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
