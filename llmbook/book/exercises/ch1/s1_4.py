"""第 1 章 1.1—1.4 节的练习（1.4.4 除外）：参考答案与隐藏的检查。

编程题的参考实现用 :func:`~llmbook.book.exercises.exercise` 注册，检查函数 ``_test_*``
把读者的函数与本包自己的实现（``NGramLM``、``zipf_fit``、``unseen_ngram_rate``）或手算的
数值逐项比较；思考题和推导题用 :func:`~llmbook.book.exercises.answer` 注册参考答案。
检查只用几行内联的小语料，不读取任何数据文件。
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises._common import _expect_raises

_POEMS = ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡", "明月几时有", "把酒问青天"]


def _expect_inf(got: Any, case: str, sign: int = 1) -> None:
    ok = isinstance(got, (int, float)) and math.isinf(got) and (got > 0) == (sign > 0)
    if not ok:
        want = "float('inf')" if sign > 0 else "float('-inf')"
        raise ExerciseFailure(f"{case}：应为 {want}，你的函数返回 {got!r}")


# ---------------------------------------------------------------------- 1.1 问题的由来

answer(
    "1.1.1",
    "链式法则的证明",
    r"""
对长度 $T$ 做归纳。$T=1$ 时等式就是 $P(w_1)=P(w_1)$。设长度为 $T-1$ 时成立。由条件概率的定义
$P(A\mid B)=P(A,B)/P(B)$，取 $A=\{w_T\}$、$B=\{w_1,\dots,w_{T-1}\}$，得

$$
P(w_1,\dots,w_T)=P(w_T\mid w_1,\dots,w_{T-1})\,P(w_1,\dots,w_{T-1})
$$

（若 $P(w_1,\dots,w_{T-1})=0$，两边都是 0，等式仍然成立）。把归纳假设
$P(w_1,\dots,w_{T-1})=\prod_{t=1}^{T-1}P(w_t\mid w_{<t})$ 代入右边第二个因子，就得到
$P(w_1,\dots,w_T)=\prod_{t=1}^{T}P(w_t\mid w_{<t})$。

证明只用到了条件概率的定义，没有对语言做任何假定，所以链式法则对**任何**联合分布都严格成立，
它不是建模假设，只是把一个联合概率换了一种写法。若把结束符 `</s>` 也当作一个要预测的符号，
末尾再乘上 $P(\texttt{</s>}\mid w_1,\dots,w_T)$，句子“在这里结束”的概率也就算进去了，
不同长度的句子才能放在同一个分布里比较。

近似出现在下一步：n-gram 模型把 $P(w_t\mid w_{<t})$ 换成 $P(w_t\mid w_{t-n+1},\dots,w_{t-1})$，
即假设距离超过 $n-1$ 的上文对下一个字没有影响（马尔可夫假设），再用计数加平滑去估计这个较短的
条件概率；神经网络模型保留全部上文，但用一个参数有限的函数去近似条件概率。误差都来自对条件概率
的近似和估计，而不是来自分解本身。
""",
)


def _test_score_text(fn: Callable[..., Any]) -> int:
    from llmbook.models.ngram import NGramLM

    n = 0

    def toy(history: Sequence[str], w: str) -> float:
        """P(</s> | h) = len(h)/(len(h)+1)；其余概率平分给“甲”“乙”。"""
        stop = len(history) / (len(history) + 1)
        if w == "</s>":
            return stop
        return (1 - stop) / 2 if w in ("甲", "乙") else 0.0

    want = math.log(0.5) + math.log(0.25) + math.log(1 / 6) + math.log(3 / 4)
    expect_close(fn(toy, "甲乙甲"), want, "依赖全部上文长度的玩具模型，文本 '甲乙甲'", 1e-9)
    n += 1
    _expect_inf(fn(toy, "甲丙"), "玩具模型，'丙' 的概率为 0，文本 '甲丙'", sign=-1)
    n += 1
    kn = NGramLM(3, "kn", discount=0.75).fit(_POEMS)

    def p_kn(history: Sequence[str], w: str) -> float:
        return kn.prob(w, list(history))

    for text in ("明月光", "低头望故乡", "明", ""):
        expect_close(
            fn(p_kn, text), kn.sentence_logprob(text), f"三元 KN 模型，文本 {text!r}", 1e-9
        )
        n += 1
    mle = NGramLM(2, "mle").fit(_POEMS)

    def p_mle(history: Sequence[str], w: str) -> float:
        return mle.prob(w, list(history))

    expect_close(fn(p_mle, "明月光"), mle.sentence_logprob("明月光"), "二元 MLE，'明月光'", 1e-9)
    n += 1
    _expect_inf(fn(p_mle, "月明"), "二元 MLE，没见过的组合 '月明'", sign=-1)
    return n + 1


@exercise("1.1.2", "用链式法则给句子打分", test=_test_score_text)
def score_text(cond_prob: Callable[[tuple[str, ...], str], float], text: str) -> float:
    logp = 0.0
    for t, w in enumerate([*text, "</s>"]):
        p = cond_prob(tuple(text[:t]), w)
        if p <= 0:
            return float("-inf")
        logp += math.log(p)
    return logp


answer(
    "1.1.3",
    "为什么固定划分、只在验证集上调参",
    r"""
**各章各自随机划分的问题。** 第一，数字不再可比：每次划分得到的测试集不同，难易程度也不同，
两个模型之间 0.1 bpc 的差别可能只是“抽到的测试诗不同”造成的，而不是模型的差别。第二，会发生
泄漏：一首诗在第 3 章的划分里是训练数据，在第 5 章的划分里却成了测试数据，拿第 3 章训练的模型
去和第 5 章的结果比，就等于让一方“看过考题”。第三，结果无法复现：别人重跑一遍会得到另一个
划分和另一组数字。按内容的哈希划分还有一个好处：一首诗属于哪一部分只取决于它自己，与语料的
顺序无关，往语料里增删别的诗也不会把已有的诗挪到别的部分。

**为什么只能在验证集上调参。** 阶数 $n$、折扣 $D$、$k$ 这些选择本身也是从数据里“学”出来的。
如果看着测试集挑出最好的设置，测试集就参与了训练，挑出来的那个分数是所有候选里最幸运的一个，
会系统性地偏乐观，不再是对“没见过的文本”的无偏估计。正确的做法是 1.2 节那样：在验证集上比较
平滑方法、阶数和折扣，选定 7 元、$D=0.9$ 之后，只在测试集上量一次，把这个数字作为基线报告。
""",
)


def _test_char_entropy(fn: Callable[..., Any]) -> int:
    cases: list[tuple[list[str], float, str]] = [
        (["明月"], 1.0, "两个字各出现一次：1 比特"),
        (["床前明月光"], math.log2(5), "五个不同的字：log2(5) 比特"),
        (["月月月月"], 0.0, "只有一个字：0 比特"),
        (
            ["明月明月", "光"],
            -(0.4 * math.log2(0.4) * 2 + 0.2 * math.log2(0.2)),
            "频率 0.4、0.4、0.2，跨两段文字合计",
        ),
        (
            ["", "明明月"],
            -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3)),
            "含空字符串，频率 2/3、1/3",
        ),
    ]
    for texts, want, case in cases:
        expect_close(fn(texts), want, case, 1e-9)
    _expect_raises(fn, ([],), ValueError, "没有任何文字（空列表）")
    _expect_raises(fn, (["", ""],), ValueError, "只有空字符串")
    return len(cases) + 2


@exercise("1.1.4", "汉字的零阶熵", test=_test_char_entropy)
def char_entropy(texts: Sequence[str]) -> float:
    counts = Counter(c for t in texts for c in t)
    total = sum(counts.values())
    if total == 0:
        raise ValueError("texts 里没有任何字符，无法计算熵")
    return float(-sum(c / total * math.log2(c / total) for c in counts.values()))


answer(
    "1.1.5",
    "未登录词的拼写代价公平吗",
    r"""
**偏严。** 零阶频率完全不看上下文，拼一个字平均要九比特多；真正的字级模型看到词里的前一个字，
后面的字要便宜得多（本节的表中，一个字的上文就省下近 3 比特）。改用字级 2 元模型拼写，补上的比特
会明显变少，词级模型的公平 bpc 会下降；未登录词只占几个百分点的词次，所以结论可能改变，需要实测。
此外还少算了一项：拼写时也要说明“词在哪里结束”（一个结束符的概率），这一项让补法略偏宽。

**字级模型也有少付的代价。** 测试文本中没见过的字被映射为 `<unk>`，字级模型同样只付了“这里有个
生字”的代价，没有说明它是哪个字；不过没见过的字只占千分之一以下，这一项很小。严格的比较要让两边
都能逐字节地还原原文。

**词级模型胜出的条件**：未登录词少（训练语料大、领域一致），或者有便宜的拼写模型（字级或子词级
的回退）；以及词的切分本身准确——本节用的是人工分词，换成自动分词还要付切分错误的代价。
这正是子词方法（{ref}`sec-2-7`）的出发点：常见词整体预测，罕见词退回更小的单位拼写。
""",
)


# ---------------------------------------------------------------------- 1.2 研究现状


def _test_zipf(fn: Callable[..., Any]) -> int:
    from llmbook.text.chinese import zipf_fit

    power = {f"词{r}": round(1e6 * r**-1.2) for r in range(1, 501)}
    reversed_order = dict(reversed(list(power.items())))
    rng = np.random.default_rng(0)
    noisy = {f"字{i}": int(c) for i, c in enumerate(rng.zipf(1.8, size=400))}
    chars = Counter("床前明月光疑是地上霜举头望明月低头思故乡明月几时有把酒问青天不知天上宫阙")
    cases: list[tuple[dict[str, int], int, int, str]] = [
        (power, 1, 500, "严格的幂律 f(r) ∝ r^-1.2（取整），排名 1–500"),
        (reversed_order, 10, 100, "同一份计数但按出现次数从低到高给出，排名 10–100"),
        (dict(noisy), 5, 10_000, "随机的长尾计数（有并列），r_max 超过词数"),
        (dict(chars), 1, 8, "几句诗的字频（大量并列），排名 1–8"),
    ]
    for counts, r_min, r_max, case in cases:
        want = zipf_fit(Counter(counts), r_min, r_max).slope
        expect_close(fn(counts, r_min, r_max), want, case, 1e-6)
    return len(cases)


@exercise("1.2.1", "齐夫定律的斜率", test=_test_zipf)
def zipf_slope(counts: Mapping[str, int], r_min: int, r_max: int) -> float:
    freqs = np.sort(np.asarray(list(counts.values()), dtype=float))[::-1]
    r_max = min(r_max, len(freqs))
    ranks = np.arange(r_min, r_max + 1)
    slope, _ = np.polyfit(np.log10(ranks), np.log10(freqs[r_min - 1 : r_max]), 1)
    return float(slope)


def _test_addk(fn: Callable[..., Any]) -> int:
    from llmbook.models.ngram import NGramLM

    poems = _POEMS[:4] + ["明月明月"]
    cases = [
        ("明", "月", 1.0, "见过的二元组 '明月'，k = 1"),
        ("<s>", "床", 0.5, "句首 '<s>' 之后的 '床'，k = 0.5"),
        ("光", "</s>", 0.1, "'光' 之后结束，k = 0.1"),
        ("月", "明", 0.01, "见过的上文、见过的组合 '月明'（诗内部），k = 0.01"),
        ("乡", "明", 0.01, "见过的上文、没见过的组合，k = 0.01"),
        ("明", "日", 1.0, "训练中没出现过的字 '日'，k = 1"),
        ("日", "月", 1.0, "没见过的上文 '日'（应得 1/|V|），k = 1"),
    ]
    for prev, word, k, case in cases:
        want = NGramLM(2, "addk", k=k).fit(poems).prob(word, [prev])
        expect_close(fn(poems, prev, word, k), want, f"{case}，语料 {poems}", 1e-9)
    return len(cases)


@exercise("1.2.2", "加 k 平滑的二元模型", test=_test_addk)
def addk_prob(texts: Sequence[str], prev: str, word: str, k: float) -> float:
    pairs: Counter[tuple[str, str]] = Counter()
    vocab = {"<s>", "</s>", "<unk>"}
    for t in texts:
        toks = ["<s>", *t, "</s>"]
        vocab.update(t)
        pairs.update(zip(toks, toks[1:]))
    c_ctx = sum(c for (a, _), c in pairs.items() if a == prev)
    return (pairs[prev, word] + k) / (c_ctx + k * len(vocab))


answer(
    "1.2.3",
    "KN 平滑的概率之和为 1",
    r"""
记 $C=\sum_{w'}c^{*}(hw')>0$（$h$ 在训练中见过），$N=N_{1+}(h\,\cdot)$ 为 $c^{*}(hw)>0$ 的
不同的 $w$ 的个数。

**第一步：折扣项之和。** 对 $c^{*}(hw)=0$ 的 $w$，$\max(c^{*}(hw)-D,0)=0$；对 $c^{*}(hw)>0$
的 $w$，计数是正整数，$c^{*}(hw)\ge1\ge D$，所以 $\max(c^{*}(hw)-D,0)=c^{*}(hw)-D$。于是

$$
\sum_{w}\frac{\max(c^{*}(hw)-D,0)}{C}=\frac{\sum_{w:\,c^{*}(hw)>0}\bigl(c^{*}(hw)-D\bigr)}{C}
=\frac{C-D\,N}{C}.
$$

这正是 $\max(\cdot,0)$ 的作用：没见过的词不会被“倒扣”成负数。

**第二步：插值项之和。** 插值权重 $D\,N/C$ 与 $w$ 无关，低一阶分布对词表求和为 1，所以
$\sum_w \frac{D\,N}{C}P_{\text{KN}}(w\mid h')=\frac{D\,N}{C}$。

**相加：** $\sum_w P_{\text{KN}}(w\mid h)=\frac{C-DN}{C}+\frac{DN}{C}=1$。从每个见过的计数里
减掉的 $D$，合起来恰好是 $D\,N$，全部按低一阶的分布重新分了出去，一点不多、一点不少。

**归纳的起点与没见过的上文。** 论证对每一阶都一样（低阶的 $c^{*}$ 是接续计数，$N_{1+}$ 相应地
数接续计数为正的词），所以只需最低一阶合法：本书默认让一元模型也做折扣，并与均匀分布 $1/|V|$
插值，后者对词表求和为 1，由归纳法各阶都是合法分布。训练中没见过的上文 $C=0$，公式没有定义，
模型把全部概率交给低一阶：$P_{\text{KN}}(w\mid h)=P_{\text{KN}}(w\mid h')$，和仍然为 1。
""",
)


def _test_unseen(fn: Callable[..., Any]) -> int:
    from llmbook.models.ngram import unseen_ngram_rate

    n = 0
    cases: list[tuple[list[str], list[str], int, str]] = [
        (_POEMS[:4], ["明月光光", "地上明月", "低头"], 2, "二元，普通情形"),
        (["明月", "光照"], ["月光"], 2, "'月光' 只在两首训练诗的交界处出现，不算见过"),
        (["明月几时有"], ["明月明月明月", "天"], 2, "按出现次数算：'明月' 3 次、'月明' 2 次"),
        (_POEMS, ["床前明月几时有", "举头望"], 3, "三元"),
        (_POEMS, ["春眠不觉晓", "明月"], 1, "一元：没见过的字"),
    ]
    for train, test, order, case in cases:
        want = unseen_ngram_rate(train, test, max_n=order)[order]
        expect_close(fn(train, test, order), want, f"{case}（train={train}, test={test}）", 1e-9)
        n += 1
    _expect_raises(fn, (_POEMS, ["明", "月"], 2), ValueError, "测试诗都短于 n，没有任何二元组合")
    return n + 1


@exercise("1.2.4", "没见过的 n 元组合的比例", test=_test_unseen)
def unseen_rate(train: Iterable[str], test: Iterable[str], n: int) -> float:
    seen = {t[i : i + n] for t in train for i in range(len(t) - n + 1)}
    grams = [t[i : i + n] for t in test for i in range(len(t) - n + 1)]
    if not grams:
        raise ValueError(f"测试文本中没有长度至少为 {n} 的诗，没有 {n} 元组合可数")
    return sum(g not in seen for g in grams) / len(grams)


answer(
    "1.2.5",
    "倍增时间与数据的对数线性",
    r"""
（a）$\log_2N$ 每年增加 $b$，即每年翻 $b$ 倍；翻一倍需要 $1/b$ 年，也就是 $12/b$ 个月。用
$\log_{10}$ 拟合时，$\log_2N=\log_{10}N/\log_{10}2$，所以 $b=b'/\log_{10}2$，倍增时间为
$12\log_{10}2/b'\approx3.61/b'$ 个月。倍增时间与对数的底无关，只是换算系数不同。

（b）bpc 降 1 需要 $\log_2D$ 增加 $1/\beta$，即语料扩大 $2^{1/\beta}$ 倍。$\beta\approx0.32$ 时约为
$2^{3.1}\approx9$ 倍。现存唐诗只有训练集的两到三倍，用尽全部唐诗也只能降约 $0.3$–$0.5$ bpc：
计数模型在这份语料上的进步空间已经被数据量封顶，要走得更远只能换模型（在相似的上文之间共享证据），
或者借助其他语料预训练再迁移（第 5、6 章）。外推会失效的情况：数据不再同分布（加入宋词、现代文，
验证集上的收益会变小）；数据里有大量重复（翻倍的只是副本）；阶数固定时，低阶统计早已估计准确，
收益最终会因为 5 元上文本身的信息有限而饱和——对数线性只在观察到的范围内近似成立。
""",
)


# ---------------------------------------------------------------------- 1.3 研究意义


def _test_bpc_ppl(fn: Callable[..., Any]) -> int:
    from llmbook.models.ngram import NGramLM

    def pair(got: Any, case: str) -> tuple[Any, Any]:
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise ExerciseFailure(f"{case}：应返回二元组 (bpc, ppl)，你的函数返回 {got!r}")
        return got[0], got[1]

    n = 0
    texts = ["春风又绿", "江南岸"]
    probs = [[0.5, 0.25, 0.5], [0.125, 1.0]]  # 词级：3 个位置对 4 个字，2 个位置对 3 个字
    bpc, ppl = pair(fn(probs, texts), "词元不是单字的情形")
    expect_close(bpc, 7 / 9, "词元不是单字：总比特 7，字符 4+1+3+1=9，bpc", 1e-9)
    expect_close(ppl, 2 ** (7 / 5), "词元不是单字：总比特 7，位置 5 个，困惑度", 1e-9)
    n += 1
    lm = NGramLM(3, "kn", discount=0.9).fit(_POEMS)
    for held in (["明月照床前", "低头思故乡"], ["天"]):
        tp = [[p for _, p in lm.token_probs(t)] for t in held]
        bpc, ppl = pair(fn(tp, held), f"三元 KN 模型，文本 {held}")
        expect_close(bpc, lm.bits_per_char(held), f"三元 KN 模型，文本 {held}，bpc", 1e-9)
        expect_close(ppl, lm.perplexity(held), f"三元 KN 模型，文本 {held}，困惑度", 1e-9)
        n += 1
    bpc, ppl = pair(fn([[0.5, 0.0, 0.5]], ["明月"]), "有一个位置的概率为 0")
    _expect_inf(bpc, "有一个位置的概率为 0，bpc")
    _expect_inf(ppl, "有一个位置的概率为 0，困惑度")
    return n + 1


@exercise("1.3.1", "每字符比特与困惑度", test=_test_bpc_ppl)
def bpc_and_ppl(
    token_probs: Sequence[Sequence[float]], texts: Sequence[str]
) -> tuple[float, float]:
    probs = [p for ps in token_probs for p in ps]
    if any(p <= 0 for p in probs):
        return float("inf"), float("inf")
    bits = -sum(math.log2(p) for p in probs)
    return bits / sum(len(t) + 1 for t in texts), 2 ** (bits / len(probs))


answer(
    "1.3.2",
    "词级困惑度折合成 bpc",
    r"""
困惑度是平均每个位置比特数的指数：$\mathrm{PPL}_{\text{tok}}=2^{H}$，$H$ 是平均每个位置的比特数，
所以全部位置的总比特数是 $N_{\text{tok}}\,H=N_{\text{tok}}\log_2\mathrm{PPL}_{\text{tok}}$。
bpc 把同一个总比特数除以字符数：

$$
\text{bpc}=\frac{N_{\text{tok}}\log_2\mathrm{PPL}_{\text{tok}}}{N_{\text{char}}}.
$$

代入数字：$\log_2 200\approx7.644$，总比特数约 $10{,}000\times7.644=76{,}439$，
bpc $\approx 76{,}439/16{,}000\approx4.78$。

字级模型每个字符（连同结束符）恰好是一个被预测的位置，$N_{\text{tok}}=N_{\text{char}}$，
bpc 就是 $\log_2\mathrm{PPL}_{\text{char}}$。在同一份测试集上，字级模型要胜过这个词级模型，
需要 $\log_2\mathrm{PPL}_{\text{char}}<4.78$，即每字困惑度低于 $2^{4.78}\approx27$。

因此不能直接比较两者的困惑度：200 是“平均每个词在多少个候选之间犹豫”，27 是“平均每个字
在多少个候选之间犹豫”，一个词平均有 1.6 个字，每一步要预测的信息量本来就不同；词表大小不同，
困惑度的上限 $|V|$ 也不同。只有折合到同一个单位（每字符比特，即整份文本的总信息量除以同一个
字符数），不同分词方式的模型才站在同一把尺子上。还要注意，词级模型若有 `<unk>`，它只需预测
“这里是个生词”，总比特数会被低估（2.7 节给未知词补上拼写代价，正是为了公平）。
""",
)

answer(
    "1.3.3",
    "用 n-gram 做数据质量过滤",
    r"""
**用什么分数。** 用按长度归一化的分数，例如每字符比特（或平均每字的对数概率），分数越低说明
文本越像训练 n-gram 的那种高质量文本。不能用总对数概率：每多一个字就多乘一个小于 1 的因子，
长文本的总概率必然更低，按总概率排序等于按长度排序。

**阈值怎么定。** 先在一份留出的高质量文本（同类新闻）上算出 bpc 的分布，取一个分位数作为阈值
（例如高于高质量文本 95% 分位数的段落才丢掉）；或者按分数把网页分成几档，按比例保留或抽样，
而不是一刀切。阈值要在人工抽查的样本上检查误删和漏删的比例。

**会误伤的好文本。** 凡是与训练语料“不像”的都会得到高 bpc：古诗文、方言、口语、专业术语密集的
技术文档、新词和专名很多的文本、代码和公式、夹杂外文的文本。只用新闻训练的过滤器会让语料
在风格和题材上变窄，这本身就是一种偏差。

**会放过的坏文本。** n-gram 只看几个字的局部搭配：把常用句子反复堆砌的垃圾页面、关键词堆砌、
模板化的导航文字、大段重复的内容，每个局部都很“通顺”，bpc 反而很低；机器生成的流畅但空洞的文本
也一样。所以质量过滤通常与去重、重复率、长度和字符类别等规则一起使用，n-gram 分数只是其中一个
信号。n-gram 适合做这件事，是因为它训练和查询都极快、结果可解释：1.3 节在一百多万字上训练
7 元模型只要几秒。
""",
)


answer(
    "1.3.4",
    "会说话与说得对",
    r"""
模型只能学到训练数据里有的规律。唐诗里几乎没有“首都”这样的句子，所以随书 GPT 给“北”的概率很低；
换成在《人民日报》上训练的模型，“中国的首都北京”这类搭配在新闻里反复出现，“北”的概率会明显上升——
但它学到的是“新闻里常这样写”，新闻里写错、过时或没写的事实，它照样答不对，而且会用同样流畅的
语气答错。流畅度（bpc、格式）衡量的是“像不像训练文字”，正确性衡量的是“与世界是否一致”，
两者相关却不相同，必须分开评估。

一个只用下一个字概率的小测验：准备若干“提示 + 若干候选答案”（如“中国的首都是” + 北京/上海/
南京），用链式法则算每个候选的对数概率（多字答案要把各字的条件概率相乘，并按字数或按无提示时的
先验概率校正，否则短的、常见的答案占便宜），取概率最大的候选，统计正确率，与随机猜测比较
（{ref}`sec-6-8` 的多项选择评测就是这样做的）。局限：只能测“选得对”，测不了“说得出”；
候选的写法、长度和常见程度会影响结果；模型可能因为训练数据里见过这道题而答对（数据污染）；
答对一个提示不代表换个说法也能答对。
""",
)


# ---------------------------------------------------------------------- 1.4 本书结构

answer(
    "1.4.1",
    "读某一章之前要读什么",
    r"""
依赖图是一条主链 $1\to2\to3\to4\to5$，第 6、7、8 章都从第 5 章分出，第 9 章汇总 6、7、8。
只关心第 6 章 LoRA 微调的读者，沿着箭头往回走，要读第 1 到第 5 章：LoRA 是在第 5 章的 GPT
上做的，GPT 由第 3 章的注意力和 Transformer 搭成，训练它要用第 4 章的交叉熵、反向传播和优化器，
输入要经过第 2 章的分词器，而评价它的 bpc 和基线来自第 1 章。第 7、8 章则不是必读的。

数学一章放在 GPT 项目之前，是因为第 5 章的训练器逐行用到了第 4 章验证过的东西：损失为什么是
交叉熵（它与 bpc 是同一个量）、梯度怎样由反向传播算出、AdamW 和学习率计划在做什么。先读第 4 章，
第 5 章的每一行代码都有出处；放在后面当附录，读者在第 5 章就只能把训练当作黑盒。赶时间的读者可以
先略读第 4 章，遇到问题再回来查。
""",
)

_BOOK_EDGES = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (5, 7), (5, 8), (6, 9), (7, 9), (8, 9)]


def _test_prerequisites(fn: Callable[..., Any]) -> int:
    cases: list[tuple[list[tuple[int, int]], int, list[int], str]] = [
        (_BOOK_EDGES, 9, [1, 2, 3, 4, 5, 6, 7, 8], "本书的依赖图，第 9 章"),
        (_BOOK_EDGES, 6, [1, 2, 3, 4, 5], "本书的依赖图，第 6 章"),
        (_BOOK_EDGES, 2, [1], "本书的依赖图，第 2 章"),
        (_BOOK_EDGES, 1, [], "本书的依赖图，第 1 章（没有前置章节）"),
        (list(reversed(_BOOK_EDGES)), 7, [1, 2, 3, 4, 5], "边的顺序打乱，第 7 章"),
        ([(1, 3), (2, 3), (3, 4), (5, 4), (4, 6)], 6, [1, 2, 3, 4, 5], "两条支路汇合"),
        ([(1, 2), (1, 3), (2, 4), (3, 4)], 4, [1, 2, 3], "菱形：第 1 章经两条路到达"),
        ([(1, 2)], 7, [], "不在任何一条边上的章"),
    ]
    for edges, chapter, want, case in cases:
        expect(fn(edges, chapter), want, f"{case}（edges={edges}）")
    return len(cases)


@exercise("1.4.2", "读某一章之前的全部章节", test=_test_prerequisites)
def prerequisites(edges: Sequence[tuple[int, int]], chapter: int) -> list[int]:
    before: dict[int, set[int]] = {}
    for a, b in edges:
        before.setdefault(b, set()).add(a)
    found: set[int] = set()
    todo = [chapter]
    while todo:
        for a in before.get(todo.pop(), ()):
            if a not in found:
                found.add(a)
                todo.append(a)
    found.discard(chapter)
    return sorted(found)


answer(
    "1.4.3",
    "为什么代码放在包里、论断在运行时核对",
    r"""
**只有一份实现。** `NGramLM` 写在 `llmbook.models.ngram` 里，1.2 节用它比较平滑方法，1.3 节用同一个
调用重新训练基线，后面各章拿它的 bpc 做参照。如果每个笔记本各抄一份代码，改了一处忘了另一处，
各章的数字就会悄悄不一致。

**可以测试。** 包里的函数有单元测试：`tests/test_ngram.py` 把 `NGramLM` 的加 k、MLE 和 KN 概率与
NLTK 逐条比较到 $10^{-10}$ 的相对误差，还检查每个条件分布的和为 1、错误输入给出清楚的报错。
写在笔记本里的代码很难这样系统地测试，只能“看起来结果差不多”。1.2 节的对照表之所以可信，
是因为同一个实现在测试里已经和独立的参考实现核对过。

**正文不会过时。** 正文里的数字由 `glue` 从运行结果中取出，正文里的定性论断（如“KN 明显优于加 k”
“两者的困惑度完全一致”）由隐藏单元格里的 `llmbook.claim` 在每次执行笔记本时重新核对。代码、数据
或依赖库一变，若论断不再成立，构建就会失败，而不是让书里留下一句与结果矛盾的话。这让“可复现”
从一句承诺变成了每次构建都要通过的检查。
""",
)
