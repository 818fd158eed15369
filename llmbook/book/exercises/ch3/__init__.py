"""第 3 章的练习：RNN、LSTM、GRU、注意力与编码器（参考答案与隐藏的检查）。

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch3 import (
    s1_4,  # noqa: F401
    s1_gru,  # noqa: F401
    s4_cross,  # noqa: F401
    s5,  # noqa: F401
)
