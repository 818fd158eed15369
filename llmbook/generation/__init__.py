"""Decoding: greedy, sampling (temperature, top-k, top-p, repetition penalty) and beam search, with a KV cache."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
