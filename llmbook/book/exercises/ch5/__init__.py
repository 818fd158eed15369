"""第 5 章的练习：项目实践——从零训练中文 GPT（参考答案与隐藏的检查）。

编程题的检查与 ``llmbook`` 自己的实现（``compute`` 的公式、``warmup_cosine``、
``process_logits``）或 PyTorch（``clip_grad_norm_``、bf16 舍入）比较。

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch5 import s1_2, s3_5  # noqa: F401
