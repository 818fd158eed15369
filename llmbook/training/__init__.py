"""Training: the trainer and its learning-rate schedule, checkpoints, distributed data parallelism, compute estimates, fine-tuning and SFT."""

from llmbook._lazy import lazy_submodules

__getattr__ = lazy_submodules(__name__)
