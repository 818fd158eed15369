"""第 4 章的练习：语言模型的数学（参考答案与隐藏的检查）。

编程题的检查用固定种子的小张量，与 PyTorch（``F.cross_entropy``、自动求导、
``torch.optim.Adam``）或 ``llmbook`` 自己的实现（``warmup_cosine``、``apply_rope``、
``RMSNorm``、``dpo_loss``、``TransformerLM``）比较。

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch4 import s1_3, s4_6, s7  # noqa: F401
