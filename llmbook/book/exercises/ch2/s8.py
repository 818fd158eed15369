"""Exercises of section 2.8 (GloVe, chapter 2)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect_close


def _test_entry_loss(fn: Callable[..., Any]) -> int:
    import torch

    from llmbook.text.glove import GloVe

    def reference(
        w: Any, wc: Any, b: float, bc: float, x: float, x_max: float, alpha: float
    ) -> float:
        model = GloVe(1, len(w)).double()
        with torch.no_grad():
            model.w[0], model.w_ctx[0] = torch.tensor(w), torch.tensor(wc)
            model.b[0], model.b_ctx[0] = b, bc
            loss = model.loss(
                torch.tensor([0]),
                torch.tensor([0]),
                torch.tensor([x], dtype=torch.float64),
                x_max,
                alpha,
            )
        return float(loss)

    rng = np.random.default_rng(8)
    cases: list[tuple[Any, Any, float, float, float, float, float, str]] = [
        (
            rng.normal(size=4),
            rng.normal(size=4),
            0.3,
            -0.2,
            7.0,
            100.0,
            0.75,
            "x = 7 < x_max：权重小于 1",
        ),
        (
            rng.normal(size=3),
            rng.normal(size=3),
            1.0,
            2.0,
            250.0,
            100.0,
            0.75,
            "x = 250 ≥ x_max：权重为 1",
        ),
        (
            np.array([1.0, 2.0]),
            np.array([0.5, 0.25]),
            0.0,
            0.0,
            1.0,
            10.0,
            1.0,
            "x = 1（log x = 0），α = 1",
        ),
        (
            np.array([0.5, 0.5]),
            np.array([1.0, 1.0]),
            0.5,
            1.0,
            math.e**2,
            100.0,
            0.5,
            "模型恰好等于 log x：损失为 0",
        ),
        (
            rng.normal(size=5) * 0.01,
            rng.normal(size=5) * 0.01,
            0.0,
            0.0,
            0.5,
            100.0,
            0.75,
            "x = 0.5（距离加权后的计数可以小于 1）",
        ),
    ]
    for w, wc, b, bc, x, x_max, alpha, case in cases:
        expect_close(
            fn(w, wc, b, bc, x, x_max, alpha), reference(w, wc, b, bc, x, x_max, alpha), case, 1e-9
        )
    return len(cases)


@exercise("2.8.1", "GloVe 一个非零元的加权损失", test=_test_entry_loss)
def glove_entry_loss(
    w: npt.ArrayLike,
    w_ctx: npt.ArrayLike,
    b: float,
    b_ctx: float,
    x: float,
    x_max: float = 100.0,
    alpha: float = 0.75,
) -> float:
    f = min(1.0, (x / x_max) ** alpha)
    diff = (
        float(np.dot(np.asarray(w, dtype=float), np.asarray(w_ctx, dtype=float)))
        + b
        + b_ctx
        - math.log(x)
    )
    return f * diff**2


def _test_cooc(fn: Callable[..., Any]) -> int:
    from llmbook.text.glove import cooccurrence

    cases: list[tuple[list[list[str]], int, str]] = [
        ([["甲", "乙", "丙"]], 1, "一句三个词，窗口 1"),
        ([["甲", "乙", "丙", "甲"]], 3, "同一个词出现两次，窗口 3（甲和甲相距 3）"),
        ([["我", "爱", "北京"], ["北京", "是", "首都"]], 5, "两句：窗口不跨句"),
        ([["的", "的", "的"], ["孤"]], 2, "重复的词与只有一个词的句子"),
    ]
    for sents, window, case in cases:
        got = fn(sents, window)
        if not isinstance(got, Mapping):
            raise ExerciseFailure(f"{case}：应返回以 (词, 词) 为键的字典，你的函数返回 {got!r}")
        ref = cooccurrence(sents, window=window, min_count=1)
        want = {
            (a, b): ref.value(a, b) for a in ref.words for b in ref.words if ref.value(a, b) > 0
        }
        got_pos = {k: v for k, v in got.items() if v}
        if set(got_pos) != set(want):
            raise ExerciseFailure(
                f"{case}：非零的词对应为 {sorted(want)}，你的函数给出 {sorted(got_pos)}"
            )
        for k, v in want.items():
            expect_close(got[k], v, f"{case}，词对 {k}", 1e-9)
    return len(cases)


@exercise("2.8.2", "按距离加权的共现计数", test=_test_cooc)
def cooc_counts(sentences: Sequence[Sequence[str]], window: int) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    for s in sentences:
        for i, a in enumerate(s):
            for j in range(i + 1, min(len(s), i + window + 1)):
                out[a, s[j]] += 1.0 / (j - i)
                out[s[j], a] += 1.0 / (j - i)
    return dict(out)


answer(
    "2.8.3",
    "偏置吸收了词频，点积剩下的是 PMI",
    r"""
设模型恰好拟合：$\mathbf w_i^\top\tilde{\mathbf w}_j+b_i+\tilde b_j=\log X_{ij}$。点互信息是

$$
\mathrm{PMI}(i,j)=\log\frac{P(i,j)}{P(i)P(j)}=\log X_{ij}-\log X_i-\log X_j+\log X,
$$

其中 $X_i=\sum_k X_{ik}$，$X=\sum_{i,j}X_{ij}$。取 $b_i=\log X_i-\tfrac12\log X$、$\tilde b_j=\log X_j-\tfrac12\log X$，
代入得 $\mathbf w_i^\top\tilde{\mathbf w}_j=\log X_{ij}-\log X_i-\log X_j+\log X=\mathrm{PMI}(i,j)$。
也就是说，偏置的一种取法正好吸收掉两个词各自的频率，点积只需表示 PMI。训练并不保证偏置恰好取这个值
（偏置与点积之间可以互相转移一部分，例如所有 $b_i$ 加常数 $c$、所有 $\tilde b_j$ 减 $c$ 不改变预测），
所以实际得到的是“PMI 加上与 $i$ 或 $j$ 有关的修正”，这就是本节测得点积与 PMI 高度相关而不相等的原因。
跳字模型负采样在最优点满足 $\mathbf v_i^\top\mathbf u_j=\mathrm{PMI}(i,j)-\log K$ {cite}`levy2014neural`：
两族方法分解的是同一类矩阵，只是加权方式和对零计数的处理不同。
""",
)

answer(
    "2.8.4",
    "为什么要看概率之比",
    r"""
$P(k\mid w)$ 本身混着两个因素：$k$ 与 $w$ 有多相关，以及 $k$ 本身有多常见。“的”几乎出现在每个词附近，
$P(\text{的}\mid w)$ 对任何 $w$ 都很大，但它什么也没告诉我们。比值 $P(k\mid w_1)/P(k\mid w_2)$ 把 $k$
的常见程度约掉了：与两个词都相关或都无关的探针词，比值接近 1；只与 $w_1$ 相关的，比值远大于 1；只与
$w_2$ 相关的，远小于 1。于是比值刻画的是 $w_1$ 与 $w_2$ **之间的差别**，这正是类比题里的“男—女”方向。
GloVe 要求 $(\mathbf w_{1}-\mathbf w_{2})^\top\tilde{\mathbf w}_k$ 表示 $\log$ 比值，向量的差就承载了这种差别。
比值的弱点是小计数：$X_{w_2k}$ 只有一两次时比值波动很大，甚至为无穷，所以本节只用两个词都常见的探针词，
GloVe 也用 $f(X_{ij})$ 压低小计数的权重。
""",
)

answer(
    "2.8.5",
    "W 与 W̃ 为什么都要",
    r"""
共现矩阵是对称的（$X_{ij}=X_{ji}$），目标函数对交换 $\mathbf W\leftrightarrow\tilde{\mathbf W}$、
$\mathbf b\leftrightarrow\tilde{\mathbf b}$ 不变；两组向量只因随机初始化和训练顺序不同而不同，地位是对等的。
它们各自是同一目标的一个带噪声的解，相加相当于把两个略有差别的解平均（再乘 2，余弦不受影响），
噪声部分互相抵消一些，论文报告这样略有提高 {cite}`pennington2014glove`。跳字模型则不同：中心词与
上下文词的角色不对称（窗口、下采样、负例分布都只作用在一侧），两组向量并不对等，通常只保留输入向量。
验证的办法：用 `GloVeResult.model.vectors("word")` 只取 $\mathbf W$，和 $\mathbf W+\tilde{\mathbf W}$
各自跑一遍类比与相似度评测；再按词频分档，看同一个词的 $\mathbf w_i$ 与 $\tilde{\mathbf w}_i$ 的余弦：
更新次数少的生僻词，随机初始化和训练顺序留下的差别应当更大。
""",
)
