"""Exercises of section 8.9 (long context, hallucination and safety)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from llmbook.book.exercises import answer, exercise, expect_close
from llmbook.book.exercises.ch8._helpers import _raises


def _test_watermark_z(fn: Callable[..., Any]) -> int:
    from llmbook.generation.watermark import count_green, green_mask, z_score

    def keyed(vocab: int, gamma: float, key: int) -> Callable[[int, int], bool]:
        return lambda prev, tok: bool(green_mask(prev, vocab, gamma, key)[tok])

    cases: list[tuple[list[int], int, float, int]] = [
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 20, 0.25, 1),
        ([5, 5, 5, 5, 5, 5], 10, 0.5, 7),
        ([3, 1], 8, 0.25, 2),
        (list(range(40)) + list(range(40)), 50, 0.1, 3),
        ([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2], 12, 0.75, 11),
    ]
    n = 0
    for ids, vocab, gamma, key in cases:
        want = z_score(*count_green(ids, vocab, gamma, key), gamma)
        case = f"{len(ids)} 个词元，词表 {vocab}，γ = {gamma}"
        expect_close(fn(ids, keyed(vocab, gamma, key), gamma), want, case)
        n += 1
    every = [0, 1, 2, 3, 4]  # every token green: z = sqrt(T (1 - γ) / γ)
    expect_close(
        fn(every, lambda a, b: True, 0.25),
        math.sqrt(4 * 0.75 / 0.25),
        "全部是绿词元（4 个被计分的词元，γ = 0.25）",
    )
    expect_close(
        fn(every, lambda a, b: False, 0.5), -2.0, "没有绿词元（4 个被计分的词元，γ = 0.5）"
    )
    _raises(fn, ValueError, "只有一个词元（无法计分）", [3], lambda a, b: True, 0.25)
    _raises(fn, ValueError, "γ = 1（绿表不能是整个词表）", [1, 2, 3], lambda a, b: True, 1.0)
    return n + 4


@exercise("8.9.1", "水印的 z 分数", test=_test_watermark_z)
def watermark_z(ids: Sequence[int], is_green: Callable[[int, int], bool], gamma: float) -> float:
    """z-score of the green-list watermark: ``is_green(prev, tok)`` for each ``ids[1:]``."""
    if not 0 < gamma < 1:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    if len(ids) < 2:
        raise ValueError("need at least two tokens: each one is scored against its predecessor")
    total = len(ids) - 1
    green = sum(bool(is_green(a, b)) for a, b in zip(ids, ids[1:]))
    return (green - gamma * total) / math.sqrt(total * gamma * (1 - gamma))


answer(
    "8.9.2",
    "Llama 3 70B 的 KV 缓存",
    r"""
每个词元的 KV 缓存是 $2\,n_\text{layer}\,n_\text{kv}\,d_\text{head}\cdot b$ 字节。

- **GQA（8 个键值头）**：$2\times 80\times 8\times 128\times 2 = 327{,}680$ 字节 $=320$ KiB/词元。
  128k（$131{,}072$）个词元：$320\text{ KiB}\times 131{,}072 = 40$ GiB——一条请求就要半张 80 GB 显卡。
- **不用 GQA（64 个头都存）**：乘以 $64/8=8$，即 2.5 MiB/词元，128k 词元要 320 GiB，放不进任何单卡。
- **8 比特缓存**：$b=1$，再减半到 20 GiB。

权重本身（700 亿参数，bf16）约 140 GB，与之相比，几条长请求的缓存就和权重一样大；所以长上下文服务的并发数主要受缓存限制，GQA、MLA、缓存量化、分页管理（vLLM）都在压这一项。
""",
)

answer(
    "8.9.3",
    "位置插值为什么要微调",
    r"""
位置插值把位置 $m$ 换成 $m\,L_\text{train}/L$：所有角度仍落在训练见过的范围内，但**相邻两个位置的角度差缩小了** $L/L_\text{train}$ 倍。RoPE 的高频维度（$\theta_i$ 大的那些）本来靠“相邻词元转过一个明显的角度”来分辨近邻的先后；插值之后，相邻的字看起来像挤在同一个位置附近，模型在训练长度**之内**也认不清局部顺序，所以未经微调时损失在所有位置都变差（本节的测量正是如此：插值 4 倍后，前 80 个位置的损失也比原模型高得多）。

Chen 等人的做法是在插值后的位置上用长序列继续训练几百到一千步，让注意力适应更密的角度。检验的实验：用 `extend_context(model, 320, interpolate=True)` 得到模型，在训练集的 320 词元窗口上训练 200 步（学习率取预训练末期的量级），再用 `nll_by_position` 在测试集上画出四段的损失；对照组是不插值直接在 320 长度上微调同样步数。预期插值组收敛更快、末段损失更低。代价是每一步的注意力算力按 $n^2$ 增长，且要有足够长的训练文本。
""",
)

answer(
    "8.9.4",
    "教模型说“不知道”",
    r"""
一个直接的做法：在 SFT 数据里加入“不知道”的样本——对编造的对句（用 `fabricated_couplets` 构造，确认不在语料中）回答“不知道这两句的出处”，其余保持原样。

风险有两个方向：

1. **过度拒答**：模型可能学会对一切作者问题都答“不知道”，因为它本来就分不清哪些诗自己记得。本节测到真题答对的概率只有约 2–3%，那么最“诚实”的策略几乎总是拒答——有用性随之下降。
2. **学到表面特征**：若编造的对句有明显的痕迹（例如打乱字序后读不通），模型学会的是“读不通就拒答”，而不是“没见过就拒答”；换成拼接两首真诗的句子（`mode="mix"`，每一句都是真的）就可能失效。

测量：在留出集上分别统计真题的答对率、拒答率，以及两种编造对句的拒答率（`classify_answers`）；理想的结果是编造题拒答率高、真题拒答率低且答对率不降。再看拒答是否与模型对自己答案的概率（`answer_logprobs`）相关——如果相关，说明它利用了“自己有多确定”这一信号。
""",
)
