"""Exercises of chapter 8 (summary and outlook): reference solutions and their checkers.

The checkers compare against the package's own functions — :mod:`llmbook.evaluation.lm`,
:func:`llmbook.experiments.scaling.fit_loglog`, :mod:`llmbook.training.compute`,
:func:`llmbook.evaluation.fairness.weat`, :func:`llmbook.evaluation.privacy.exposure`,
:func:`llmbook.data.quality.jaccard` — or against values computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close

# ---------------------------------------------------------------------------------------
# helpers


def _raises(fn: Callable[..., Any], exc: type[BaseException], case: str, *args: Any) -> None:
    """Fail unless ``fn(*args)`` raises ``exc``."""
    try:
        fn(*args)
    except exc:
        return
    raise ExerciseFailure(f"{case}：应抛出 {exc.__name__}，你的函数没有抛出")


def _pair(got: Any, case: str) -> tuple[Any, Any]:
    """Unpack a returned pair, failing with a Chinese message if it is not one."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise ExerciseFailure(f"{case}：应返回两个数组成的元组，你的函数返回 {got!r}")
    return got[0], got[1]


def _array(got: Any, case: str) -> np.ndarray:
    """``got`` (tensor, array or nested list) as a float64 array, or a Chinese failure."""
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().double().numpy()
    try:
        if got is None:
            raise TypeError
        return np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个张量，你的函数返回 {got!r}") from None


def _expect_array(got: Any, want: np.ndarray, case: str, tol: float = 1e-6) -> None:
    arr = _array(got, case)
    expect(tuple(arr.shape), tuple(want.shape), f"{case}：形状")
    if not np.all(np.isfinite(arr)):
        raise ExerciseFailure(f"{case}：结果里有 nan 或 inf：{arr}")
    err = float(np.max(np.abs(arr - want))) if arr.size else 0.0
    if err > tol:
        raise ExerciseFailure(
            f"{case}：与正确结果的最大差为 {err:.3g}，应为\n{want}\n你的函数返回\n{arr}"
        )


# ---------------------------------------------------------------------------------------
# 8.1 研究成果总结

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
    from llmbook.experiments.scaling import fit_loglog

    n_exact = [1e3, 1e4, 1e5, 1e6]
    cases: list[tuple[list[float], list[float]]] = [
        (n_exact, [5.0 * x**-0.076 for x in n_exact]),
        ([5e3, 1.5e4, 4e4, 1e5, 2.3e5], [5.93, 5.71, 5.56, 5.47, 5.40]),
        ([2.0, 8.0], [3.0, 1.5]),  # two points: the line through them
        ([100.0, 300.0, 1000.0], [2.0, 2.1, 1.9]),  # a loss that does not fall
    ]
    for n, loss in cases:
        law = fit_loglog(n, loss)
        case = f"N = {n}, L = {loss}"
        a, alpha = _pair(fn(np.array(n), np.array(loss)), case)
        expect_close(alpha, law.alpha, case + "：α")
        expect_close(a, law.a, case + "：a")
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


def _reference_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    t, d = q.shape
    scores = q @ k.T / math.sqrt(d)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)


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


def _random_maps(layers: int, heads: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, heads, t, t, generator=g, dtype=torch.float64) * 2
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return torch.softmax(logits.masked_fill(mask, float("-inf")), dim=-1)


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
