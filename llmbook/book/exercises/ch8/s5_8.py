"""Exercises of sections 8.5, 8.6, 8.7, 8.8 (chapter 8)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from llmbook.book.exercises import answer, exercise, expect, expect_close
from llmbook.book.exercises.ch8._helpers import (
    _array,
    _expect_array,
    _pair,
    _raises,
    _random_maps,
    _reference_attention,
)

# ---------------------------------------------------------------------------------------
# helpers


def _test_exposure(fn: Callable[..., Any]) -> int:
    from llmbook.evaluation.privacy import exposure

    rng = np.random.default_rng(0)
    digits = "0123456789"
    lp2 = np.log(rng.dirichlet(np.ones(100)))
    cases: list[tuple[np.ndarray, str, str]] = [
        (lp2, "37", digits),
        (lp2, "00", digits),
        (lp2, str(int(np.argmax(lp2))).zfill(2), digits),  # the top candidate
        (lp2, str(int(np.argmin(lp2))).zfill(2), digits),  # the least likely one
        (np.zeros(100), "42", digits),  # all tied: rank 1
        (np.array([-3.0, -1.0, -2.0, -1.0, -5.0, -0.5, -4.0, -2.0]), "bab", "ab"),
        (np.array([-3.0, -1.0, -2.0, -1.0, -5.0, -0.5, -4.0, -2.0]), "abb", "ab"),
        (np.log(rng.dirichlet(np.ones(9))), "zx", "xyz"),
    ]
    for lp, secret, alphabet in cases:
        index = 0
        for ch in secret:
            index = index * len(alphabet) + alphabet.index(ch)
        bits, rank = exposure(lp, index)
        case = f"{len(lp)} 个候选，秘密 {secret!r}，字母表 {alphabet!r}"
        got_bits, got_rank = _pair(fn(lp, secret, alphabet), case)
        expect(got_rank, rank, case + "：名次")
        expect_close(got_bits, bits, case + "：暴露度")
    got = _pair(fn(lp2, "37"), "不给 alphabet（默认十个数字）")
    expect(got[1], exposure(lp2, 37)[1], "不给 alphabet（默认十个数字）：名次")
    _raises(fn, ValueError, "候选数 99 与两位数字秘密不符", lp2[:99], "37", digits)
    _raises(fn, ValueError, "秘密里有字母表之外的字符", lp2, "3a", digits)
    return 2 * len(cases) + 3


@exercise("8.5.1", "金丝雀的暴露度", test=_test_exposure)
def canary_exposure(
    log_probs: np.ndarray, secret: str, alphabet: str = "0123456789"
) -> tuple[float, int]:
    """``(exposure in bits, rank)`` of ``secret`` among candidates in lexicographic order."""
    lp = np.asarray(log_probs, dtype=float)
    if len(lp) != len(alphabet) ** len(secret):
        raise ValueError(
            f"{len(lp)} candidates, but {len(alphabet)}**{len(secret)} strings of this length"
        )
    index = 0
    for ch in secret:
        if ch not in alphabet:
            raise ValueError(f"{ch!r} is not in the alphabet {alphabet!r}")
        index = index * len(alphabet) + alphabet.index(ch)  # the secret read in base |A|
    rank = 1 + int(np.sum(lp > lp[index]))  # ties do not push the secret down
    return math.log2(len(lp)) - math.log2(rank), rank


answer(
    "8.5.2",
    "一无所知时的暴露度",
    r"""
模型对秘密一无所知时，真秘密的名次 $r$ 在 $1,\dots,R$ 上均匀分布（$R=|\mathcal R|=10^4$）。

- **中位数**：名次的中位数约为 $R/2$，对应暴露度 $\log_2 R-\log_2(R/2)=1$ 比特。正文“约 1 比特”说的是这个典型值。
- **期望**：$\mathbb E[\text{exposure}]=\log_2R-\frac1R\sum_{r=1}^{R}\log_2 r=\log_2R-\frac{\log_2(R!)}{R}$。由斯特林公式 $\ln R!\approx R\ln R-R$，得 $\frac{\log_2(R!)}{R}\approx\log_2R-\log_2 e$，所以期望暴露度 $\approx\log_2e\approx 1.44$ 比特（$R=10^4$ 时精确值也是 1.44）。期望比中位数大，是因为 $-\log_2 r$ 在名次靠前时增长很快，少数排得很靠前的情形把平均值拉高了。

**超过 10 比特意味着什么**：$\log_2R-\log_2 r>10\iff r<R/2^{10}=10^4/1024\approx 9.8$，即名次在前 9 名之内——一万个候选里，攻击者只要试 9 次就能猜中。随机猜测做到这一点的概率只有 $9/10^4$。

**秘密改成六位数字**：$R=10^6$，最大暴露度变为 $\log_2 10^6\approx 19.9$ 比特，一无所知时仍约 1 比特（中位数）或 1.44 比特（期望）——这两个值与 $R$ 无关。代价是要给一百万个候选打分：按前缀逐层展开，只需约 $10^5\times 1.1$ 次短的前向计算，仍然可行。
""",
)

answer(
    "8.5.3",
    "去重之外还能做什么",
    r"""
**去重为什么不够。** 精确去重只去掉“规范化后完全相同”的副本：同一个秘密出现在不同的句子里（“王小明的密码是 3814，别忘了”和“密码 3814 是王小明的”），精确去重一条也去不掉；而且正如本节的长训练所示，只出现一次的秘密也会在多轮训练中被反复“复习”而记住。

**其他缓解手段**，从便宜到昂贵：

1. **敏感信息过滤**：训练前用规则（正则表达式匹配手机号、身份证号、银行卡号、邮箱）和命名实体识别把它们删掉或替换成占位符。便宜有效，但只能过滤认得出格式的信息。
2. **近似去重**（8.7 节的 MinHash）：去掉改了几个字的副本，减少重复。
3. **少训练几轮**：记忆随训练轮数增加，对小语料尤其明显。
4. **差分隐私训练（DP-SGD）**：把每个样本的梯度裁剪到固定范数，再加高斯噪声，使任何一条训练样本对最终模型的影响有一个可证明的上界 $(\varepsilon,\delta)$。它是唯一给出形式化保证的方法；代价是需要逐样本梯度（更慢、更耗显存），以及模型质量下降。
5. **输出过滤**：生成时检测并拦截看起来像敏感信息的输出。这只是事后补救，挡不住换一种提示方式的提取。

**用本节的方法检验**：在语料里插入不同重复次数的金丝雀，分别用上面的手段训练，比较暴露度曲线。一种缓解方法有效，应当让重复多次的金丝雀的暴露度也降到 1–2 比特附近，而不只是让它“没被贪心解码提取出来”。
""",
)

# ---------------------------------------------------------------------------------------
# 8.6 面临的挑战：可解释性


def _test_causal_attention(fn: Callable[..., Any]) -> int:
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    n = 0
    for t, d, scale in [(1, 4, 1.0), (5, 4, 1.0), (7, 16, 1.0), (6, 8, 60.0)]:
        q = torch.randn(t, d, generator=g, dtype=torch.float64) * scale
        k = torch.randn(t, d, generator=g, dtype=torch.float64) * scale
        case = f"T={t}, d_h={d}" + ("（分数很大，注意数值稳定）" if scale > 1 else "")
        got = fn(q.clone(), k.clone())
        want = _reference_attention(q, k)
        _expect_array(got, want.numpy(), case)
        # the weights reproduce the fused kernel's output
        v = torch.randn(t, d, generator=g, dtype=torch.float64)
        fused = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]
        w = torch.as_tensor(_array(got, case), dtype=torch.float64)
        _expect_array(w @ v, fused.numpy(), case + "：权重乘以 V 应等于融合注意力核的输出")
        n += 2
    return n


@exercise("8.6.1", "显式算出因果注意力权重", test=_test_causal_attention)
def causal_attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d_h) + M)`` with the causal mask ``M``: a ``[T, T]`` tensor."""
    t, d = q.shape
    scores = q @ k.T / math.sqrt(d)
    future = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # j > i
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1)  # subtracts the row maximum: stable


def _test_lag_share(fn: Callable[..., Any]) -> int:
    n = 0
    for layers, heads, t, lag, seed in [
        (2, 3, 6, 1, 0),
        (4, 4, 12, 1, 1),
        (1, 2, 9, 5, 2),
        (3, 1, 6, 5, 3),
    ]:
        maps = _random_maps(layers, heads, t, seed)
        q = torch.arange(lag, t)
        want = maps[:, :, q, q - lag].mean(-1)
        case = f"[{layers}, {heads}, {t}, {t}] 的随机注意力图，lag={lag}"
        _expect_array(fn(maps.clone(), lag), want.numpy(), case)
        n += 1
    # a head that always reads the previous token (position 0 can only read itself)
    prev = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    prev[0, 0, 0, 0] = 1.0
    prev[0, 0, torch.arange(1, 5), torch.arange(0, 4)] = 1.0
    prev[0, 1] = torch.eye(5)  # a head that reads only itself
    _expect_array(fn(prev, 1), np.array([[1.0, 0.0]]), "专看前一个字的头与只看自己的头")
    _expect_array(fn(prev, 2), np.array([[0.0, 0.0]]), "同上两个头，lag=2")
    _raises(fn, ValueError, "lag=0", prev, 0)
    _raises(fn, ValueError, "lag=5，序列只有 5 个位置", prev, 5)
    return n + 4


@exercise("8.6.2", "头在固定距离上的注意力", test=_test_lag_share)
def lag_share(maps: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """``[n_layer, n_head]``: mean attention from position ``i`` to ``i - lag``."""
    t = maps.shape[-1]
    if not 1 <= lag < t:
        raise ValueError(f"lag must be in [1, {t - 1}] for {t} positions, got {lag}")
    q = torch.arange(lag, t)  # only queries that have a position `lag` steps back
    return maps[..., q, q - lag].mean(-1)


answer(
    "8.6.3",
    "怎样确认一个头的分工",
    """
**为什么不够。** 注意力权重只说明信息从哪个位置读入，不说明读入的信息后来有没有被用上：这个头的输出还要乘以 $W_O$、加进残差流，可能被后面的层抵消或忽略；几个头也可能冗余地做同一件事，单看一个头会高估它的作用。梯度显著性是局部的线性近似，在 softmax 或激活函数饱和的区域梯度很小，会低估真正重要的输入。所以两者都是描述性的，只能提出假设。

**因果干预实验（以“上一句同一位置”的头为例）**：

1. **数据**：从验证集取几百首五言诗，只统计每联下句中的预测位置（正是这个头活跃的地方），作为“目标位置”；其余位置作为对照。
2. **干预**：消融这个头——把它的输出置零，或换成它在大量文本上的平均输出（均值消融，扰动更小）；作为对照，再随机消融几个其他的头。
3. **测量**：比较消融前后目标位置与对照位置上的交叉熵损失，以及模型在下句中生成与上句词性、声调相对的字的比例。
4. **判断**：如果消融这个头让目标位置的损失明显上升、而对照位置几乎不变，并且明显超过消融随机头的效果，才能说它“负责”对仗所需的信息；如果几乎不变，说明有其他头冗余地提供同样的信息，或者它的输出本来就没被使用。

还可以做**激活修补**：把一首诗里这个头的输出换成另一首诗对应位置的输出，看预测是否随之改变，从而确认信息确实通过这个头流动。
""",
)

# ---------------------------------------------------------------------------------------
# 8.7 面临的挑战：数据质量


def _test_char_jaccard(fn: Callable[..., Any]) -> int:
    from llmbook.data.quality import jaccard

    a = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    b = "床前看月光，疑是地上霜。举头望山月，低头思故乡。"
    cases = [
        (a, b, 3),
        (a, b, 2),
        (a, a, 3),
        (a, "白日依山尽，黄河入海流。", 3),
        ("春", "春", 3),
        ("春天", "春", 3),  # both shorter than n
        ("春眠不觉晓", "春眠", 3),
        ("ＡＢＣＤ１２", "ABCD12", 3),  # full-width letters and digits: NFKC
        ("床前  明月光", "床前 明月光", 3),  # whitespace runs collapse
        ("哈哈哈哈哈", "哈哈哈", 2),  # sets, not multisets
        ("abcab", "cabc", 2),
    ]
    for x, y, n in cases:
        expect_close(fn(x, y, n), jaccard(x, y, n), f"a={x!r}, b={y!r}, n={n}")
    expect_close(fn(a, b), jaccard(a, b), "不给 n（默认 3）")
    _raises(fn, ValueError, "n=0", a, b, 0)
    return len(cases) + 2


@exercise("8.7.1", "字符 n-gram 的 Jaccard 相似度", test=_test_char_jaccard)
def char_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of the character ``n``-gram sets of two normalised texts."""
    import unicodedata

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")

    def grams(text: str) -> set[str]:
        t = " ".join(unicodedata.normalize("NFKC", text).split())
        return {t} if len(t) <= n else {t[i : i + n] for i in range(len(t) - n + 1)}

    sa, sb = grams(a), grams(b)
    return len(sa & sb) / len(sa | sb)


answer(
    "8.7.2",
    "MinHash 值相等的概率为什么是 Jaccard 相似度",
    r"""
设 $S_1,S_2$ 是两段文本的 $n$-gram 集合，$h$ 是一个把所有可能的 $n$-gram 随机排序的置换（实践中用随机哈希函数近似），MinHash 值 $m(S)=\min_{x\in S}h(x)$ 是集合中排在最前面的元素的编号。

考虑并集 $S_1\cup S_2$ 中排在最前面的那个元素 $x^*$。因为 $h$ 是随机置换，并集里每个元素成为 $x^*$ 的机会相等，各为 $1/|S_1\cup S_2|$。

- 如果 $x^*\in S_1\cap S_2$，它同时是 $S_1$ 和 $S_2$ 的最小元，$m(S_1)=m(S_2)$；
- 如果 $x^*$ 只属于其中一个集合，比如 $S_1$，那么 $m(S_1)=h(x^*)$，而 $S_2$ 的最小元不是 $x^*$，它的编号严格更大，$m(S_1)\ne m(S_2)$。

所以 $P[m(S_1)=m(S_2)]=P[x^*\in S_1\cap S_2]=|S_1\cap S_2|/|S_1\cup S_2|=J$。

用 $k$ 个独立的置换得到 $k$ 个 MinHash 值，相等的比例是 $J$ 的无偏估计，标准差为 $\sqrt{J(1-J)/k}$：本节的例子 $J\approx 0.5$、$k=256$ 时约 0.03，这与正文里估计值和精确值相差不到 0.05 一致。签名只需存 $k$ 个整数，与文本长短无关；比较两段文本只要比较两个定长的签名，这是它能用于海量语料的原因。
""",
)


def _test_lsh(fn: Callable[..., Any]) -> int:
    cases = [
        (0.7, 64, 16),
        (0.3, 64, 16),
        (0.5, 64, 16),
        (0.5, 128, 32),
        (0.9, 64, 8),
        (0.5, 64, 64),
        (0.8, 20, 4),
        (0.0, 64, 16),
        (1.0, 64, 16),
    ]
    for j, num_perm, bands in cases:
        r = num_perm // bands
        want = 1.0 - (1.0 - j**r) ** bands
        expect_close(fn(j, num_perm, bands), want, f"J={j}, num_perm={num_perm}, bands={bands}")
    expect_close(fn(0.7), 1 - (1 - 0.7**4) ** 16, "J=0.7，num_perm 与 bands 用默认值")
    _raises(fn, ValueError, "num_perm=64 不能被 bands=10 整除", 0.5, 64, 10)
    _raises(fn, ValueError, "J=1.2", 1.2, 64, 16)
    return len(cases) + 3


@exercise("8.7.3", "LSH 成为候选对的概率", test=_test_lsh)
def lsh_candidate_probability(j: float, num_perm: int = 64, bands: int = 16) -> float:
    """Probability that two texts of Jaccard similarity ``j`` share at least one LSH band."""
    if num_perm % bands:
        raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
    if not 0 <= j <= 1:
        raise ValueError(f"j must be in [0, 1], got {j}")
    rows = num_perm // bands
    # one band matches with probability j**rows; the pair is missed only if all bands miss
    return 1.0 - (1.0 - j**rows) ** bands


answer(
    "8.7.4",
    "清洗的顺序与阈值",
    """
**为什么先过滤、再精确去重、最后近似去重。** 一是代价从低到高：质量过滤逐条看一遍文本，精确去重每条只算一个哈希，都是线性的；近似去重要算 MinHash 签名、分桶、再对候选对算精确 Jaccard，最贵，应当放在最后，只处理已经变少的数据。二是前一步让后一步更准：残缺的 1–6 字记录规范化后长度不超过 $n$，$n$-gram 集合就是它自己，很容易与别的短记录撞在一起、产生无意义的候选；先过滤掉它们，近似去重才只处理正常的文本。精确重复在近似去重里也会被当作 $J=1$ 找到，但先用哈希去掉它们，省下了大量签名计算和候选比较。

**把阈值从 0.7 降到 0.3 的副作用。** 阈值越低，被判为“近似重复”而删掉的诗越多，其中有不少其实是不同的诗：唐诗里大量同题唱和、套用相同的意象和句式（“明月”“故乡”“不知”“何处”），五言诗又很短，$n$-gram 集合小，几个共同的三字片段就能让 $J$ 超过 0.3。结果是误删真正不同的作品、降低语料的多样性，还会系统性地删掉某些常见题材（比如送别诗、边塞诗），引入新的偏差。阈值应当在人工标注的一小批样本上选：看看各个 $J$ 区间里的候选对，哪些是真重复，把阈值定在误删开始变多之前。
""",
)

# ---------------------------------------------------------------------------------------
# 8.8 研究展望

answer(
    "8.8.1",
    "数据什么时候用完",
    r"""
设第 $t$ 年的训练数据量为 $D_t=15\times 2.5^{t}$ 万亿词元，用完的条件是 $D_t=300$：

$2.5^{t}=20\ \Rightarrow\ t=\ln 20/\ln 2.5\approx 3.0/0.916\approx 3.3$ 年。

允许每份数据重复 4 遍，相当于可用数据变成 1,200 万亿词元：

$2.5^{t}=80\ \Rightarrow\ t=\ln 80/\ln 2.5\approx 4.8$ 年，

只推迟了 $\ln 4/\ln 2.5\approx 1.5$ 年。这是指数增长的一般规律：存量乘以 $k$ 倍，只能换来 $\ln k/\ln(\text{年增长倍数})$ 年。所以重复利用数据、提高数据利用率只能争取时间；长期看必须改变“数据量逐年按倍数增长”这个前提——靠更好的数据（清洗、筛选，8.7 节）、合成数据、多模态数据，或者让每个词元带来更多收益的训练方法。

（这里的数字都是假设，只用来说明量级；真实的存量与增长速度的估计各家不同，而且随时间修正。）
""",
)

answer(
    "8.8.2",
    "设计一个不怕污染的评测",
    """
下面是一个参考设计，关键是**让污染可测量，并把它与能力分开报告**。

1. **按时间切分**：题目全部取自模型训练数据截止日期之后新出现的材料（新的考试、新闻、竞赛题），并记录每道题的出现日期；对每个模型只用它截止日期之后的题目。
2. **私有测试集**：大部分题目不公开，只通过提交接口评测，降低题目被抓进下一代模型语料的机会；公开的一小部分只作示例。
3. **金丝雀字符串**：在公开部分嵌入一段独一无二的随机字符串，并请训练方过滤含有它的文档；模型若能补全这段字符串，就说明它见过题目（这正是 8.5 节暴露度的思路）。
4. **重叠检查**：对能拿到训练语料的模型，用 $n$-gram 重叠（练习 7.4.2）和 MinHash 近似去重（8.7 节）把题目分成“查出重叠”与“未查出重叠”两组，分别报告分数。
5. **扰动对照**：每道题再做几个等价变体（换数字、换选项顺序、换说法）。若模型在原题上的正确率显著高于变体，差值就是记忆的估计。
6. **定期轮换**：每隔一段时间换一批新题，并报告同一模型在新旧题目上的分数差，观察是否有过拟合基准的迹象。

这个设计满足本章一直强调的原则：每个结论都配一个可以复现的测量——污染不是靠“相信”排除的，而是测出来、分开报告的。
""",
)
