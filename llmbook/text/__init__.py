"""Chinese text: cleaning and segmentation, tokenizers, and word embeddings."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
