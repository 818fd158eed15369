"""第 1 章的练习：语言模型的由来、n-gram、bpc 与本书结构（参考答案与隐藏的检查）。

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch1 import (
    s1_4,  # noqa: F401
    s4_paths,  # noqa: F401
)
