"""The book's longer experiments: scaling runs, the long-range recall task and the sentiment study with its baselines."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
