"""Serving a trained model over HTTP."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
