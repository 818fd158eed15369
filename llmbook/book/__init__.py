"""Support for the book itself: notebook set-up, Chinese fonts for figures, the offline guard and ``doctor``; no algorithm imports it."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
