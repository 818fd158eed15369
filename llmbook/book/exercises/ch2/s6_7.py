"""Exercises of sections 2.6, 2.7 (chapter 2)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises.ch2._helpers import (
    _pair,
)


def _test_sgns_loss(fn: Callable[..., Any]) -> int:
    import torch

    from llmbook.text.sgns import SkipGramNS

    def reference(
        v: npt.NDArray[np.float64], up: npt.NDArray[np.float64], negs: list[npt.NDArray[np.float64]]
    ) -> float:
        model = SkipGramNS(len(negs) + 2, len(v)).double()
        with torch.no_grad():
            model.inp.weight[0] = torch.tensor(v)
            model.out.weight[1] = torch.tensor(up)
            for k, u in enumerate(negs):
                model.out.weight[2 + k] = torch.tensor(u)
        loss = model(torch.tensor([0]), torch.tensor([1]), torch.arange(2, len(negs) + 2)[None])
        return float(loss)

    rng = np.random.default_rng(0)
    cases: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[Any], str]] = [
        (
            rng.normal(size=4),
            rng.normal(size=4),
            [rng.normal(size=4) for _ in range(3)],
            "随机的 4 维向量，3 个负例",
        ),
        (
            rng.normal(size=8) * 0.1,
            rng.normal(size=8) * 0.1,
            [rng.normal(size=8) * 0.1],
            "接近 0 的小向量，1 个负例",
        ),
        (
            np.array([10.0, 0.0]),
            np.array([-100.0, 0.0]),
            [np.array([100.0, 1.0])] * 2,
            "点积达到 ±1000：要数值稳定",
        ),
        (
            np.array([3.0, 4.0]),
            np.array([30.0, 40.0]),
            [np.array([-30.0, -40.0])],
            "正例、负例都判断得非常好（损失接近 0）",
        ),
    ]
    n = 0
    with torch.no_grad():
        for v, up, negs, case in cases:
            expect_close(fn(v, up, negs), reference(v, up, negs), case, 1e-6)
            n += 1
    return n


@exercise("2.6.1", "一个训练对的负采样损失", test=_test_sgns_loss)
def sgns_loss(v: npt.ArrayLike, u_pos: npt.ArrayLike, u_negs: Sequence[npt.ArrayLike]) -> float:
    v = np.asarray(v, dtype=float)
    pos = float(np.asarray(u_pos, dtype=float) @ v)
    neg = [float(np.asarray(u, dtype=float) @ v) for u in u_negs]
    # -log σ(x) = log(1 + e^{-x})；-log σ(-x) = log(1 + e^{x})，logaddexp 不会溢出
    return float(np.logaddexp(0.0, -pos) + sum(np.logaddexp(0.0, s) for s in neg))


def _test_keep_probs(fn: Callable[..., Any]) -> int:
    cases: list[tuple[dict[str, int], float, str]] = [
        ({"的": 5000, "在": 1500, "经济": 300, "足球": 20, "囧": 1}, 1e-4, "五个词，t = 1e-4"),
        ({"的": 5000, "在": 1500, "经济": 300, "足球": 20, "囧": 1}, 1e-2, "同样的计数，t = 1e-2"),
        ({"的": 10}, 1e-3, "只有一个词（f = 1）"),
        (
            {f"w{i}": 1 for i in range(50)} | {"的": 950},
            1e-3,
            "一个极常见的词和 50 个只出现一次的词",
        ),
    ]
    for counts, t, case in cases:
        got = fn(counts, t)
        if not isinstance(got, Mapping) or set(got) != set(counts):
            raise ExerciseFailure(
                f"{case}：应返回以 {sorted(counts)} 为键的字典，你的函数返回 {got!r}"
            )
        total = sum(counts.values())
        for w, c in counts.items():
            r = t / (c / total)
            expect_close(got[w], min(1.0, math.sqrt(r) + r), f"{case}，词 {w!r}（{c} 次）", 1e-9)
    return len(cases)


@exercise("2.6.2", "高频词下采样的保留概率", test=_test_keep_probs)
def keep_probs(counts: Mapping[str, int], t: float) -> dict[str, float]:
    total = sum(counts.values())
    out = {}
    for w, c in counts.items():
        r = t / (c / total)
        out[w] = min(1.0, math.sqrt(r) + r)
    return out


answer(
    "2.6.3",
    "负采样损失的梯度",
    r"""
记 $s_o=\mathbf u_o^\top\mathbf v_c$，$s_k=\mathbf u_{n_k}^\top\mathbf v_c$。用到两个导数：
$\sigma'(x)=\sigma(x)(1-\sigma(x))$，于是 $\frac{d}{dx}[-\log\sigma(x)]=-(1-\sigma(x))=\sigma(x)-1$，
$\frac{d}{dx}[-\log\sigma(-x)]=\sigma(x)$。由链式法则：

$$
\frac{\partial L}{\partial\mathbf v_c}=(\sigma(s_o)-1)\,\mathbf u_o+\sum_{k=1}^{K}\sigma(s_k)\,\mathbf u_{n_k},\qquad
\frac{\partial L}{\partial\mathbf u_o}=(\sigma(s_o)-1)\,\mathbf v_c,\qquad
\frac{\partial L}{\partial\mathbf u_{n_k}}=\sigma(s_k)\,\mathbf v_c.
$$

梯度下降走的是负梯度方向，学习率为 $\eta$ 时

$$
\mathbf v_c\leftarrow\mathbf v_c+\eta\,(1-\sigma(s_o))\,\mathbf u_o-\eta\sum_k\sigma(s_k)\,\mathbf u_{n_k}.
$$

第一项把 $\mathbf v_c$ 朝真实上下文词的向量 $\mathbf u_o$ 推，推的力度 $1-\sigma(s_o)$ 在模型已经判断对（$s_o$ 很大）
时趋于 0；第二项把它从每个负例的 $\mathbf u_{n_k}$ 推开，力度 $\sigma(s_k)$ 在负例已经被判断为“不相关”
（$s_k$ 很小）时趋于 0。同理 $\mathbf u_o$ 被拉向 $\mathbf v_c$，$\mathbf u_{n_k}$ 被推离 $\mathbf v_c$。这就是
2.5 节所说的“推一点、再推开一点”。

负例按 $f(w)^{3/4}$ 抽取，绝大多数是“的”“在”“和”这类高频词，而真实的上下文词里也总少不了它们。因此不管
中心词是什么，更新量里都有一部分是“朝几个高频词的 $\mathbf u$ 推、再从几个高频词的 $\mathbf u$ 推开”，这部分对
所有词都差不多，是一个公共分量；只有词自己独有的上下文才让它离开这个公共方向。一个词出现的次数少，
独有部分的累积就少，它的向量便停在公共方向附近。
""",
)


# ---------------------------------------------------------------------- 2.7 字节级 BPE

answer(
    "2.7.1",
    "平局规则改成取编号大的一对",
    r"""
在 `tiny` 语料上跑这个实验，16 次合并的前五步都在 5 次的平局中进行：原规则（取编号小的一对）先拼
`<b0><91>`、`<ba><ba>`，再在前面补上首字节，第 3、4 步得到“人”“民”；新规则先拼 `<e6><b0>`，紧接着补上
末字节，第 2 步就得到“民”，再拼 `<e4><ba>`、补上末字节，第 4 步得到“人”。第 5 步两边都是“人民”。

从第 6 步起两者分道扬镳。编号大的词元是最近合并出来的，所以新规则总是优先接着延长刚造出的词元：它从
“日”的末字节开始，接连造出 `<97><a5>`、`<97><a5><e6>`、`<97><a5><e6><8a>` 这样跨字的片段，第 10 步同样
得到“日报”，但走的是另一条路；随后把“日报”与“社”的字节一路接成“日报社”（第 13 步），最后三步拼的是“，”和“：”。原规则则
在第 10 步得到“日报”，第 13 步得到“社”，第 14 步得到“人民日报”，最后两步是只出现一次的字节对。

所以 16 次合并后的词表变了：两边都有“人”“民”“人民”“日报”，但原规则有“社”和“人民日报”，新规则有
“日报社”“，”“：”，中间的字节片段几乎全不相同。即使一直合并到没有词元对可合（两边都是 39 次，每个预分词
单元都成了一个词元），两个词表也不同：原规则造出了“社”“社论”“大”“会”，新规则没有；新规则造出了
“日报社论”“人民代表”“人民生”，原规则没有。
平局规则是算法定义的一部分；在小语料和大语料的尾部，次数相同的词元对非常多，要和 `tokenizers` 学到
逐条相同的合并，必须用和它相同的规则。
""",
)

answer(
    "2.7.2",
    "不做预分词会怎样",
    r"""
在《人民日报》前 300 句上做 300 次合并，整句当作一个单元时，只出现了一个跨标点的词元：第 202 次合并
得到的“说，”（当时出现 54 次）；其余 299 个新词元与按预分词训练得到的完全相同。原因是前几百次合并几乎都
在把字节拼回高频汉字，还轮不到跨字、跨标点的组合。继续合并到 1000 次，这类词元就多了起来：“，在”“，是”“，中国”
“。中国”“时，”“指出，”“。他说，”“，我们”等等，与题中的“，人民”同类的组合比比皆是；语料的一个条目里常有
好几句话，连“。他”这样跨过句号的词元也出现了。

这样的词元对语言模型大多是坏事：

- 同一个词因为前后的标点不同而被切成不同的词元（“中国”“，中国”“。中国”），模型要分别学习它们，证据被
  拆散，泛化变差；
- 词表是有限的，“，在”“。他说，”这样的组合占掉的名额，本可以留给真正的词；
- 词元跨过了句子和分句的边界，一个词元的意义变得含混，也让生成时的分句和标点不够灵活。

好处只有一点：序列更短（每词元覆盖的字更多），在按词元计算量的比较中可能略占便宜。GPT-2 引入预分词，
正是为了避免英文里“dog.”“dog!”“dog?”各占一个词元的浪费。
""",
)

answer(
    "2.7.3",
    "按字数对齐计算量",
    r"""
先看现有的数字：每个模型训练 500 步，每步 32 个 64 词元的窗口，读了约 102 万个词元。字级模型每个词元
一个字，读了约 102 万个字；1k BPE 每个词元只有 0.834 个字，只读了约 85 万个字，窗口也只覆盖约 53 个字。
也就是说，在按词元对齐的实验里，1k BPE 读到的文字反而更少，却得到了更低的 bpc（7.78 对字级的 8.20）。

按字对齐时，若给字级模型按 1k BPE 的每词元字数换算步数，它只训练 $500\times0.834\approx417$ 步（或者
等价地，让 1k BPE 训练 $500/0.834\approx600$ 步）。预计：

- 字级模型的 bpc 会**升高**：这些模型都远没有训练到收敛，损失还在随步数下降，少训练六分之一的步数
  只会更差；
- 1k BPE 的 bpc 不变（或在 600 步的版本里进一步降低）；
- 两者的差距因此**扩大**而不是缩小。这说明 1k BPE 的优势不是来自“读了更多文字”——这一点与 4k、8k
  BPE 不同——而是来自别的原因：它的词表只有 1000 个词元，500 步里每个嵌入行和输出行得到的更新比字级的
  4623 个多得多；生僻字的三个字节与别的字共享首字节和中间字节，模型可以先预测首字节（相当于先猜
  “大概是哪一类字”），把字级 softmax 里得不到训练的稀有类别分解成几步常见的预测。

这些是预测，要靠实验检验：用 `llmbook.experiments.tokcompare.news_split()` 得到同样的训练集和验证集，
用 `fit_tokenizers` 拟合字级分词器，按 `build_tokcompare` 中的做法构造同样的 GPT 和 `TrainConfig`，只把
`max_steps` 改成 417，训练后用 `llmbook.evaluation.lm.bits_per_char` 在验证集上计算 bpc（字级有极少的 `<unk>`，
严格比较时还要像成果中那样加上拼写代价），与表中的 8.20 和 7.78 比较。
""",
)


def _test_merge_once(fn: Callable[..., Any]) -> int:
    from llmbook.text.bpe import ALPHABET, pretokenize, train_bpe_reference

    n = 0
    hand: list[tuple[dict[tuple[str, ...], int], dict[str, int], Any, str]] = [
        (
            {("a", "a", "a"): 2, ("a", "b"): 1},
            {"a": 0, "b": 1},
            (("a", "a"), {("aa", "a"): 2, ("a", "b"): 1}),
            "重叠的 (a, a) 从左到右合并",
        ),
        (
            {("x", "y"): 5, ("y", "z", "y", "z"): 1},
            {"x": 0, "y": 1, "z": 2},
            (("x", "y"), {("xy",): 5, ("y", "z", "y", "z"): 1}),
            "词元对按词的出现次数加权",
        ),
        (
            {("b", "a"): 1, ("a", "b"): 1},
            {"b": 0, "a": 1},
            (("b", "a"), {("ba",): 1, ("a", "b"): 1}),
            "平局按 (rank[左], rank[右]) 取小者，不按字符串",
        ),
        (
            {("a", "b"): 3, ("ab",): 1},
            {"a": 0, "b": 1, "ab": 2},
            (("a", "b"), {("ab",): 4}),
            "合并后相同的词次数相加",
        ),
        (
            {("人",): 3, ("民",): 1},
            {"人": 0, "民": 1},
            (None, {("人",): 3, ("民",): 1}),
            "没有词元对",
        ),
    ]
    for words, rank, want, case in hand:
        before = dict(words)
        got = fn(words, rank)
        got_pair, got_words = _pair(got, f"{case}（words={before}）", "(pair, new_words)")
        expect(
            (got_pair, dict(got_words) if isinstance(got_words, Mapping) else got_words),
            want,
            f"{case}（words={before}, rank={rank}）",
        )
        expect(words, before, f"{case}：不应修改传入的 words")
        n += 1
    tiny = ["人民日报社论：人民生活", "日报社，人民代表大会", "人民日报", "人民"]
    ref = train_bpe_reference(tiny, 4 + 256 + 8)
    want_pairs = [(ref.tokens[a], ref.tokens[b]) for a, b in ref.merges]
    words = dict(Counter(tuple(w) for t in tiny for w in pretokenize(t)))
    rank = {t: i for i, t in enumerate(ALPHABET)}
    for step, want_pair in enumerate(want_pairs, 1):
        got_pair, words = _pair(
            fn(words, rank), f"2.7 节的 tiny 语料，第 {step} 次合并", "(pair, new_words)"
        )
        if got_pair is not None:
            got_pair = tuple(got_pair)
        expect(
            got_pair,
            want_pair,
            f"2.7 节的 tiny 语料（与 train_bpe_reference 比较），第 {step} 次合并",
        )
        rank.setdefault(want_pair[0] + want_pair[1], len(rank))
    return n + 1


@exercise("2.7.4", "BPE 的一步合并", test=_test_merge_once)
def merge_once(
    words: Mapping[tuple[str, ...], int], rank: Mapping[str, int]
) -> tuple[tuple[str, str] | None, dict[tuple[str, ...], int]]:
    pairs: Counter[tuple[str, str]] = Counter()
    for w, n in words.items():
        for pair in zip(w, w[1:]):
            pairs[pair] += n
    if not pairs:
        return None, dict(words)
    a, b = min(pairs, key=lambda p: (-pairs[p], rank[p[0]], rank[p[1]]))
    new: Counter[tuple[str, ...]] = Counter()
    for w, n in words.items():
        out, i = [], 0
        while i < len(w):
            if w[i : i + 2] == (a, b):
                out.append(a + b)
                i += 2
            else:
                out.append(w[i])
                i += 1
        new[tuple(out)] += n
    return (a, b), dict(new)
