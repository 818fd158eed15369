"""Exercises of sections 8.1, 8.2, 8.3, 8.4 (chapter 8)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from llmbook.book.exercises import answer, exercise, expect_close
from llmbook.book.exercises.ch8._helpers import (
    _pair,
    _raises,
)

# ---------------------------------------------------------------------------------------
# helpers


answer(
    "8.1.1",
    "任务与函数",
    """
- （a）**比较两个分词器不同的模型**：`evaluation.lm.bits_per_char`。每词元的困惑度依赖分词方式（词元越长，每词元的损失越大），不能跨分词器比较；每字符比特把总信息量除以字符数，分母相同，才可比。
- （b）**估算 70 亿参数模型的训练时间**：`training.compute.param_count` 算参数量，`training.compute.training_flops` 算计算量（$6ND$ 加注意力项），`training.compute.estimate_seconds` 按峰值和 MFU 换算时间；显存用 `training.compute.training_memory`。
- （c）**爬来的语料里有多少近似重复**：`data.quality.near_duplicates`（MinHash + 局部敏感哈希，再用精确 Jaccard 确认）；要一并做过滤和精确去重，用 `data.quality.clean_corpus`。
- （d）**让自己的 GPT 能被 `pipeline` 调用**：`models.hf.to_hf` 转成 `GPT2LMHeadModel`，`models.hf.to_hf_tokenizer` 把字符分词器包装成 `PreTrainedTokenizerFast`。
- （e）**给问答系统加检索**：`applications.retrieval.BM25` 建索引、按查询取回段落，再把段落放进提示。
- （f）**检查词向量里的性别关联**：`evaluation.fairness.weat`（或用随书词表一次跑完的 `evaluation.fairness.run_weat_tests`）。
""",
)


def _test_lm_summary(fn: Callable[..., Any]) -> int:
    from llmbook.evaluation.lm import bpc_from_token_loss, perplexity

    cases = [
        (2.0 * 1000, 1000, 1000),  # character model: one token per character
        (3.5 * 400, 400, 1000),  # BPE: 2.5 characters per token
        (1.2 * 700, 700, 350),  # tokens shorter than characters (bytes)
        (0.0, 10, 10),
        (4.0 * 3, 3, 7),
    ]
    for total, n_tok, n_chars in cases:
        case = f"总损失 {total:g} 纳特，{n_tok} 个词元，{n_chars} 个字符"
        ppl, bpc = _pair(fn(total, n_tok, n_chars), case)
        mean = total / n_tok
        expect_close(ppl, perplexity(mean), case + "：每词元困惑度")
        expect_close(bpc, bpc_from_token_loss(mean, n_tok, n_chars), case + "：每字符比特")
    _raises(fn, ValueError, "n_tokens=0", 1.0, 0, 5)
    _raises(fn, ValueError, "n_chars=0", 1.0, 5, 0)
    return 2 * len(cases) + 2


@exercise("8.1.2", "困惑度与每字符比特", test=_test_lm_summary)
def lm_summary(total_nll_nats: float, n_tokens: int, n_chars: int) -> tuple[float, float]:
    """(per-token perplexity, bits per character) of a total loss in nats."""
    if n_tokens <= 0 or n_chars <= 0:
        raise ValueError(f"n_tokens and n_chars must be positive, got {n_tokens}, {n_chars}")
    mean = total_nll_nats / n_tokens  # nats per token
    return math.exp(mean), total_nll_nats / math.log(2) / n_chars


# ---------------------------------------------------------------------------------------
# 8.2 未来发展趋势：规模

answer(
    "8.2.1",
    "0.076 的斜率意味着什么",
    r"""
由 $L(N)=(N_c/N)^{\alpha_N}$，参数量乘以 $k$ 时损失乘以 $k^{-\alpha_N}$，与 $N_c$ 无关。

- 参数量扩大 10 倍：$10^{-0.076}\approx 0.839$，损失下降约 16%。
- 损失减半：需要 $k^{-0.076}=1/2$，即 $k=2^{1/0.076}=2^{13.16}\approx 9.1\times 10^3$，参数量要扩大约九千倍。

这说明了两件事：第一，幂律的回报是“持续但递减”的——每扩大 10 倍只换来固定比例（16%）的下降，想让损失再降一截就得把规模再乘上一个数量级，这正是算力需求指数增长的原因；第二，在双对数坐标里斜率只有 0.076，要在实验里可靠地测出它，$N$ 必须跨越好几个数量级——本节的 $N$ 只跨了一个半数量级，噪声和曲线的弯曲就足以把斜率带偏。
""",
)


def _test_loglog_fit(fn: Callable[..., Any]) -> int:
    # the reference is the least-squares line of llmbook.experiments.scaling.fit_loglog,
    # computed here directly (the book's support code does not import the experiments)
    n_exact = [1e3, 1e4, 1e5, 1e6]
    cases: list[tuple[list[float], list[float]]] = [
        (n_exact, [5.0 * x**-0.076 for x in n_exact]),
        ([5e3, 1.5e4, 4e4, 1e5, 2.3e5], [5.93, 5.71, 5.56, 5.47, 5.40]),
        ([2.0, 8.0], [3.0, 1.5]),  # two points: the line through them
        ([100.0, 300.0, 1000.0], [2.0, 2.1, 1.9]),  # a loss that does not fall
    ]
    for n, loss in cases:
        slope, intercept = np.polyfit(np.log(n), np.log(loss), 1)
        case = f"N = {n}, L = {loss}"
        a, alpha = _pair(fn(np.array(n), np.array(loss)), case)
        expect_close(alpha, -slope, case + "：α")
        expect_close(a, math.exp(intercept), case + "：a")
    _raises(fn, ValueError, "只有一个点", np.array([10.0]), np.array([2.0]))
    _raises(fn, ValueError, "损失中有 0", np.array([10.0, 100.0]), np.array([2.0, 0.0]))
    _raises(fn, ValueError, "N 与 L 长度不同", np.array([10.0, 100.0, 1e3]), np.array([2.0, 1.0]))
    return 2 * len(cases) + 3


@exercise("8.2.2", "在双对数坐标里拟合幂律", test=_test_loglog_fit)
def loglog_fit(n: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """``(a, alpha)`` of the least-squares line ``log L = log a - alpha log N``."""
    x, y = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError("need two 1-D arrays of the same length, with at least 2 points")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("N and L must be positive to take logarithms")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(math.exp(intercept)), float(-slope)


def _test_chinchilla(fn: Callable[..., Any]) -> int:
    cases = [
        (1.2e21, 20.0, math.sqrt(1e19)),
        (5.76e23, 20.0, math.sqrt(5.76e23 / 120)),
        (6e6, 1.0, 1000.0),
        (6e12, 100.0, 1e5),
    ]
    for c, r, n_want in cases:
        case = f"C = {c:g} FLOPs，每参数 {r:g} 个词元"
        n, d = _pair(fn(c, r), case)
        expect_close(n, n_want, case + "：N")
        expect_close(d, r * n_want, case + "：D")
    n, d = _pair(fn(1.2e21), "C = 1.2e21，tokens_per_param 用默认值")
    expect_close(n, math.sqrt(1e19), "C = 1.2e21，tokens_per_param 用默认值 20：N")
    _raises(fn, ValueError, "C = 0", 0.0, 20.0)
    _raises(fn, ValueError, "tokens_per_param = -1", 1e20, -1.0)
    return 2 * len(cases) + 3


@exercise("8.2.3", "固定算力下的最优分配", test=_test_chinchilla)
def chinchilla_optimal(flops: float, tokens_per_param: float = 20.0) -> tuple[float, float]:
    """``(N, D)`` with ``6 N D = flops`` and ``D = tokens_per_param * N``."""
    if flops <= 0 or tokens_per_param <= 0:
        raise ValueError("flops and tokens_per_param must be positive")
    n = math.sqrt(flops / (6.0 * tokens_per_param))  # 6 N (r N) = C
    return n, tokens_per_param * n


answer(
    "8.2.4",
    "Chinchilla 的最优指数",
    r"""
把约束 $D=C/(6N)$ 代入损失，得到只含 $N$ 的函数

$L(N)=E+AN^{-\alpha}+B\,(6N/C)^{\beta}$。

对 $N$ 求导并令其为零：

$-\alpha A N^{-\alpha-1}+\beta B\,(6/C)^{\beta}N^{\beta-1}=0$，

两边乘以 $N$，得到 $\alpha A N^{-\alpha}=\beta B\,(6N/C)^{\beta}=\beta B D^{-\beta}$——在最优点，两个可约损失项按各自的指数加权后相等，多给模型或多给数据的边际收益相同。整理得

$N^{\alpha+\beta}=\dfrac{\alpha A}{\beta B}\left(\dfrac{C}{6}\right)^{\beta}$，即 $N_{\rm opt}=G\,(C/6)^{a}$，$D_{\rm opt}=G^{-1}(C/6)^{b}$，

其中 $G=\left(\frac{\alpha A}{\beta B}\right)^{1/(\alpha+\beta)}$，$a=\frac{\beta}{\alpha+\beta}$，$b=\frac{\alpha}{\alpha+\beta}$，$a+b=1$。这个驻点是唯一的最小值：$\mathrm dL/\mathrm dN=N^{-1}\big[\beta B(6N/C)^{\beta}-\alpha A N^{-\alpha}\big]$，方括号里两项都随 $N$ 单调增加，$N$ 很小时为负、很大时为正，所以 $L$ 先降后升，只在这一点取到最小。

代入 $\alpha=0.34,\ \beta=0.28$：$a=0.28/0.62\approx 0.45$，$b\approx 0.55$。算力扩大 10 倍时，参数量应扩大 $10^{0.45}\approx 2.8$ 倍，数据量扩大 $10^{0.55}\approx 3.5$ 倍。两个指数都接近 $1/2$，这就是“参数和数据大致同比例增长”的含义；不过 $D/N\propto C^{b-a}=C^{0.10}$，比值随算力缓慢增大，“每个参数 20 个词元”只是在 Chinchilla 所处的算力附近成立的经验数字。
""",
)

# ---------------------------------------------------------------------------------------
# 8.3 面临的挑战：算力与能耗


def _test_training_days(fn: Callable[..., Any]) -> int:
    from llmbook.training.compute import GPUS, estimate_seconds

    cases = [
        (7e9, 1.4e11, 1, GPUS["H100-SXM"].peak_tflops, 0.4),
        (124_439_808, 20 * 124_439_808, 1, GPUS["H100-SXM"].peak_tflops, 0.4),
        (7e10, 1.4e12, 1024, GPUS["A100-80GB"].peak_tflops, 0.5),
        (1e6, 1e8, 8, GPUS["T4"].peak_tflops, 1.0),
        (3e8, 6e9, 2, GPUS["RTX-4090"].peak_tflops, 0.05),
    ]
    for n, d, g, peak, mfu in cases:
        want = estimate_seconds(6 * n * d, g * peak * 1e12, mfu) / 86400
        case = f"N={n:g}, D={d:g}, {g} 张卡, 峰值 {peak} TFLOP/s, MFU={mfu}"
        expect_close(fn(n, d, g, peak, mfu), want, case)
    expect_close(fn(7e9, 1.4e11, 1, 989.0), 172.03123245, "不给 mfu（默认 0.4）")
    _raises(fn, ValueError, "n_gpus=0", 7e9, 1.4e11, 0, 989.0, 0.4)
    _raises(fn, ValueError, "mfu=0", 7e9, 1.4e11, 8, 989.0, 0.0)
    _raises(fn, ValueError, "mfu=1.5", 7e9, 1.4e11, 8, 989.0, 1.5)
    _raises(fn, ValueError, "peak_tflops=0", 7e9, 1.4e11, 8, 0.0, 0.4)
    return len(cases) + 5


@exercise("8.3.1", "训练要多少天", test=_test_training_days)
def training_days(
    n_params: float, n_tokens: float, n_gpus: int, peak_tflops: float, mfu: float = 0.4
) -> float:
    """Days to train on ``n_tokens`` tokens with ``C = 6 N D`` at the given MFU."""
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be >= 1, got {n_gpus}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be positive, got {peak_tflops}")
    flops = 6.0 * n_params * n_tokens
    seconds = flops / (n_gpus * peak_tflops * 1e12 * mfu)
    return seconds / 86400


def _test_state_memory(fn: Callable[..., Any]) -> int:
    from llmbook.training.compute import param_count, training_memory

    configs = [
        {
            "vocab_size": 32000,
            "block_size": 4096,
            "n_layer": 32,
            "n_head": 32,
            "n_embd": 4096,
            "bias": False,
            "tie_weights": False,
        },
        {"vocab_size": 50257, "block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768},
        {"vocab_size": 100, "block_size": 8, "n_layer": 1, "n_head": 1, "n_embd": 4},
    ]
    n_cases = 0
    for cfg in configs:
        n = param_count(cfg)
        for dtype in ("bf16", "fp16", "fp32"):
            for opt in ("adamw", "sgd_momentum", "sgd"):
                mem = training_memory(cfg, 1, dtype=dtype, optimizer=opt)
                want = (mem["weights"] + mem["gradients"] + mem["optimizer"]) / 2**30
                case = f"N={n:,}, dtype={dtype!r}, optimizer={opt!r}"
                expect_close(fn(n, dtype, opt), want, case)
                n_cases += 1
    expect_close(fn(7e9), 16 * 7e9 / 2**30, "N=7e9，dtype 与 optimizer 用默认值")
    _raises(fn, ValueError, "dtype='int3'", 1e6, "int3", "adamw")
    _raises(fn, ValueError, "optimizer='lion'", 1e6, "bf16", "lion")
    return n_cases + 3


@exercise("8.3.2", "权重、梯度与优化器状态的显存", test=_test_state_memory)
def state_memory_gib(n_params: float, dtype: str = "bf16", optimizer: str = "adamw") -> float:
    """GiB of weights, gradients and optimizer states (the conventions of training_memory)."""
    nbytes = {"fp32": 4, "bf16": 2, "fp16": 2}
    opt_bytes = {"adamw": 8, "sgd_momentum": 4, "sgd": 0}
    if dtype not in nbytes:
        raise ValueError(f"dtype must be one of {sorted(nbytes)}, got {dtype!r}")
    if optimizer not in opt_bytes:
        raise ValueError(f"optimizer must be one of {sorted(opt_bytes)}, got {optimizer!r}")
    b = nbytes[dtype]
    weights = b * n_params + (4 * n_params if b < 4 else 0)  # + fp32 master copy
    gradients = b * n_params
    states = opt_bytes[optimizer] * n_params  # fp32 moments
    return (weights + gradients + states) / 2**30


answer(
    "8.3.3",
    "从吞吐量算 MFU",
    r"""
**MFU。** 每个词元的训练计算量约为 $6N=6\times 7\times 10^9=4.2\times 10^{10}$ FLOPs，每秒 25,000 个词元就是

$4.2\times 10^{10}\times 2.5\times 10^{4}=1.05\times 10^{15}$ FLOP/s。

8 张 A100 的峰值是 $8\times 312\times 10^{12}=2.496\times 10^{15}$ FLOP/s，所以 MFU $=1.05/2.496\approx 42\%$，落在精心调优的大模型训练的常见范围（40%–55%）里。

**为什么是 6。** 以一个线性层 $Y=XW$ 为例（$X$ 是 $B$ 个词元 × $d_{in}$，$W$ 是 $d_{in}\times d_{out}$）。前向传播是一次矩阵乘法，$2Bd_{in}d_{out}$ 次浮点运算（每个乘加算 2 次），即每个参数每个词元 2 次。反向传播要算两样东西：传给前一层的梯度 $\partial L/\partial X=(\partial L/\partial Y)\,W^\top$，和参数的梯度 $\partial L/\partial W=X^\top(\partial L/\partial Y)$，各是一次同样大小的矩阵乘法，合计 4 次。前向 2 + 反向 4 = 6。

**这个估算省略了什么。** 注意力分数与加权求和（每词元约 $6LTd$，上下文越长占比越大）；LayerNorm、softmax、激活函数等逐元素运算；如果用了激活重计算，反向时还要再做一遍前向（硬件实际做了约 $8ND$）。MFU 按“模型需要的” $6ND$（有时加上注意力项）计算，不把重计算算进去——这样不同实现之间才可比；把重计算也算进去的比值叫硬件 FLOPs 利用率（HFU），它总是不小于 MFU。
""",
)

# ---------------------------------------------------------------------------------------
# 8.4 面临的挑战：偏见


def _test_weat_effect(fn: Callable[..., Any]) -> int:
    from llmbook.evaluation.fairness import weat

    rng = np.random.default_rng(0)
    n_cases = 0
    for size, n_attr, dim in [(4, 3, 8), (2, 2, 5), (6, 4, 16)]:
        words = [f"w{i}" for i in range(2 * size + 2 * n_attr)]
        # very different lengths: cosine similarity, not the dot product
        vecs = rng.normal(size=(len(words), dim)) * rng.uniform(0.1, 10, size=(len(words), 1))
        table = dict(zip(words, vecs))
        x, y = words[:size], words[size : 2 * size]
        a, b = words[2 * size : 2 * size + n_attr], words[2 * size + n_attr :]
        want = weat(table, x, y, a, b, n_permutations=1000).effect_size
        case = f"|X| = |Y| = {size}，|A| = |B| = {n_attr}，{dim} 维随机向量"
        expect_close(fn(table, x, y, a, b), want, case)
        expect_close(fn(table, y, x, a, b), -want, case + "（交换 X 与 Y）")
        n_cases += 2
    e1, e2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    same = {"x1": e1, "x2": 2 * e1, "y1": 3 * e1, "y2": e1, "a": e1, "b": e2}
    expect_close(fn(same, ["x1", "x2"], ["y1", "y2"], ["a"], ["b"]), 0.0, "所有目标词的关联都相同")
    return n_cases + 1


@exercise("8.4.1", "WEAT 效应量", test=_test_weat_effect)
def weat_effect_size(
    vectors: dict[str, np.ndarray],
    X: Sequence[str],
    Y: Sequence[str],
    A: Sequence[str],
    B: Sequence[str],
) -> float:
    """Effect size ``d`` of a WEAT, with the sample standard deviation (ddof=1)."""

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    def s(w: str) -> float:
        v = np.asarray(vectors[w], dtype=float)
        return float(np.mean([cos(v, np.asarray(vectors[a], dtype=float)) for a in A])) - float(
            np.mean([cos(v, np.asarray(vectors[b], dtype=float)) for b in B])
        )

    sx, sy = [s(w) for w in X], [s(w) for w in Y]
    std = float(np.std(sx + sy, ddof=1))
    return float((np.mean(sx) - np.mean(sy)) / std) if std > 0 else 0.0


answer(
    "8.4.2",
    "效应量为什么在 −2 到 2 之间",
    r"""
设 $X,Y$ 各有 $n$ 个词，记 $s_w=s(w,A,B)$，$\mu_X,\mu_Y$ 是两组的均值，$\mu=(\mu_X+\mu_Y)/2$ 是全体 $2n$ 个值的均值。全体的（总体）方差可以分解为组内与组间两部分：

$\sigma^2=\frac{1}{2n}\sum_{w\in X\cup Y}(s_w-\mu)^2=\underbrace{\frac{1}{2n}\Big[\sum_{x\in X}(s_x-\mu_X)^2+\sum_{y\in Y}(s_y-\mu_Y)^2\Big]}_{\text{组内}\ \ge 0}+\Big(\frac{\mu_X-\mu_Y}{2}\Big)^2$。

（交叉项为零，因为每组内的偏差之和为零，两组到 $\mu$ 的距离都是 $|\mu_X-\mu_Y|/2$。）所以 $|\mu_X-\mu_Y|\le 2\sigma$。

效应量的分母用样本标准差 $\mathrm{std}=\sigma\sqrt{2n/(2n-1)}>\sigma$，于是

$|d|=\dfrac{|\mu_X-\mu_Y|}{\mathrm{std}}\le 2\sqrt{\dfrac{2n-1}{2n}}<2$。

等号在组内方差为零时取到：每组内部的关联完全相同、两组之间有差别，这时 $X$ 与 $Y$ 被属性词“完美分开”。每组 8 个词时上界是 $2\sqrt{15/16}\approx 1.94$。所以 $d$ 接近 $\pm 2$ 说明两组几乎没有重叠，而不是关联本身有多“大”——它衡量的是分离程度，不是余弦差的绝对大小。
""",
)

answer(
    "8.4.3",
    "精确置换检验的最小 p 值",
    r"""
精确置换检验枚举 $X\cup Y$ 的全部 $\binom{2n}{n}$ 种等分，$p$ 值是其中统计量不小于真实统计量的分法所占的比例。真实的分法本身总在其中，所以

$p\ \ge\ 1\big/\binom{2n}{n}$，

当真实分法的统计量严格大于其他所有分法时取等号。

- 每组 8 个词：$\binom{16}{8}=12{,}870$，最小 $p\approx 7.8\times 10^{-5}$，检验有能力得出很小的 $p$；
- 每组 3 个词：$\binom{6}{3}=20$，最小 $p=1/20=0.05$。无论词向量里的关联多强，$p$ 都不可能小于 0.05，在 0.05 的水平上永远不会“显著”；
- 每组 4 个词：$\binom{8}{4}=70$，最小 $p\approx 0.014$，勉强够用。

这说明词表太小时，“不显著”可能只是检验的分辨率不够，而不是没有关联。本节每组 8 个词，分辨率足够；没有达到显著，主要是因为语料小、目标词出现次数少，词向量噪声大（功效不足），而不是 $p$ 值的下限。扩大词表是提高功效最直接的办法，但新加的词也要在语料里出现足够多次。
""",
)


def _test_counterfactual(fn: Callable[..., Any]) -> int:
    def toy(s: str) -> float:
        return 0.3 * s.count("他") - 0.2 * s.count("她") + 0.01 * len(s)

    def job(s: str) -> float:
        sign = 1.0 if "工程师" in s else -1.0
        return sign * (s.count("男") - s.count("女")) + 0.5

    t1 = ["{}是一名工程师。", "{}在家照顾孩子。", "我觉得{}很能干"]
    expect_close(fn(toy, t1, [("他", "她")]), 0.5, "打分器偏向“他”，一对词")
    expect_close(fn(toy, t1, [("他", "她"), ("男生", "女生")]), 0.25, "两对词，其中一对没有差别")
    expect_close(fn(toy, t1, [("她", "他")]), -0.5, "交换一对词的顺序，差值变号")
    t2 = ["{}是工程师", "{}在带孩子"]
    expect_close(fn(job, t2, [("男人", "女人")]), 0.0, "两个模板的差值 +2 和 −2 相互抵消")
    expect_close(fn(job, t2[:1], [("男人", "女人"), ("男孩", "女孩")]), 2.0, "只用“工程师”模板")
    expect_close(fn(toy, ["{}"], [("他们", "她")]), 0.51, "长度不同的两个词")
    _raises(fn, ValueError, "模板为空", toy, [], [("他", "她")])
    _raises(fn, ValueError, "词对为空", toy, t1, [])
    _raises(fn, ValueError, "模板里没有 {}", toy, ["他是工程师"], [("他", "她")])
    return 9


@exercise("8.4.4", "反事实公平性差距", test=_test_counterfactual)
def counterfactual_gap(
    score: Callable[[str], float], templates: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> float:
    """Mean of ``score(t with a) - score(t with b)`` over all templates and word pairs."""
    if not templates or not pairs:
        raise ValueError("need at least one template and one pair of words")
    for t in templates:
        if "{}" not in t:
            raise ValueError(f"template {t!r} has no '{{}}' slot")
    gaps = [
        float(score(t.replace("{}", a))) - float(score(t.replace("{}", b)))
        for t in templates
        for a, b in pairs
    ]
    return sum(gaps) / len(gaps)


# ---------------------------------------------------------------------------------------
# 8.5 面临的挑战：隐私
