"""第 7 章的练习：工具、论文与数据集（参考答案与隐藏的检查）。

One module per pair of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch7 import s1_2, s3_4  # noqa: F401
