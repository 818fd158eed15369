"""第 2 章的练习：参考答案与隐藏的检查。

编程题的检查把读者的函数与本包自己的实现（``segmentation_scores``、``FULLWIDTH_ALNUM``、
``CharTokenizer``、``compare_tokenizers``、``Embeddings.analogy``、``SkipGramNS``、
``train_bpe_reference``）或手算的结果逐项比较；只用内联的几句话和几个小向量，不加载语料、
不调用 jieba。

One module per group of sections; importing this package registers them all.
"""

from llmbook.book.exercises.ch2 import s1_5, s6_7, s8  # noqa: F401
