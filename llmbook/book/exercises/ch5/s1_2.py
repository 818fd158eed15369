"""Exercises of sections 5.1 and 5.2: the compute estimate and the training loop.

Coding exercises are checked against the package's own functions (the FLOP formula of
:mod:`llmbook.training.compute`, :func:`llmbook.optim.warmup_cosine`,
``torch.nn.utils.clip_grad_norm_``).
"""

from __future__ import annotations

import math
from typing import Any

from llmbook.book.exercises import answer, exercise, expect_close
from llmbook.book.exercises._common import Fn

# --------------------------------------------------------------------------- 5.1


def _test_flops(fn: Fn) -> int:
    from llmbook.models.gpt import GPTConfig
    from llmbook.training import compute

    cases: list[tuple[dict[str, Any], int | None]] = [
        (dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8), None),
        (dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8), 4),
        (dict(vocab_size=6551, block_size=80, n_layer=4, n_head=4, n_embd=128), None),
        (dict(vocab_size=6551, block_size=64, n_layer=2, n_head=4, n_embd=128), 13),
        (dict(vocab_size=7, block_size=5, n_layer=1, n_head=1, n_embd=4), None),
        (dict(vocab_size=1000, block_size=256, n_layer=12, n_head=12, n_embd=768), 1024),
    ]
    for kw, context in cases:
        cfg = GPTConfig(**kw)
        want = compute.flops_per_token(cfg, context)["total"]
        case = f"GPTConfig({kw})，context={context}"
        expect_close(fn(cfg, context), want, case, tol=1e-9)
    return len(cases)


@exercise("5.1.1", "每个词元的训练计算量", test=_test_flops)
def train_flops_per_token(config: Any, context: int | None = None) -> float:
    d, n_layer = config.n_embd, config.n_layer
    t = config.block_size if context is None else context
    n_matmul = n_layer * (4 * d * d + 2 * d * (4 * d)) + config.vocab_size * d
    return 6.0 * n_matmul + 6.0 * n_layer * t * d


answer(
    "5.1.2",
    "纸上估算：内存与时间",
    r"""
**(a) 内存。** fp32 下每个参数要存 4 份数：权重、梯度、AdamW 的一阶动量 $m$ 和二阶动量 $v$，各 4 字节，共 16 字节。$3\times10^7\times16=4.8\times10^8$ 字节，约 458 MiB。这还不含激活值：激活随批大小和上下文长度增长，批次一大就可能超过这部分。

**(b) 计算量。** $C\approx6ND=6\times3\times10^7\times10^9=1.8\times10^{17}$ 次浮点运算（不计注意力项；上下文不长时它只多出几个百分点）。

**(c) 时间。** 用计算量除以有效算力：

- CPU：$1.8\times10^{17}/(5\times10^{10})=3.6\times10^6$ 秒，约 1000 小时，也就是六个星期左右；
- H100：有效算力 $989\times10^{12}\times0.4\approx3.96\times10^{14}$ FLOP/s，$1.8\times10^{17}/3.96\times10^{14}\approx455$ 秒，不到 8 分钟。

两者相差约 8000 倍。这就是 5.1 节说 `gpu-small` 在 CPU 上要以天计、在一块 H100 上却很快的来由。估算只是数量级：实际的利用率（MFU）取决于批大小、内核和数据管道，编译、数据准备和评估的时间也没有算进去。
""",
)

answer(
    "5.1.3",
    "诗与诗的边界",
    r"""
`<bos>` 标出一首诗从哪里开始，换行符标出它在哪里结束。有了这两个标记，模型能学到“开头常写什么”“写满四句或八句之后该换行”，生成时也有了统一的起点（从 `<bos>` 开始写）和停点（写出换行就停）。

随机窗口常常跨过边界：窗口前半截是上一首诗的结尾，后半截是下一首的开头。这带来两点影响，都不严重：

1. 换行之后的 `<bos>` 很好预测，但 `<bos>` 之后的第一个字与上一首诗几乎无关，这个位置的损失高、也学不到多少东西；好在每首诗只有这么一两个位置。
2. 注意力能看见上一首诗的内容。模型要学会在 `<bos>` 之后基本不理会它——6.11 节的实验表明，`gpt-poetry` 确实主要跟着上一首的**体裁**走（相邻的诗多半同体裁），而不会从上一首里抄字。

这样做的好处是一个词元也不浪费（不需要填充），而且所有窗口长度相同，批处理最简单。评估时则按“每首诗独立打分、从 `<bos>` 开始”的协议计算 bpc（5.4 节），所以跨边界的上下文不会让评估分数占便宜。
""",
)

answer(
    "5.1.4",
    "反向传播为什么是前向的两倍",
    r"""
**(a)** 设一批有 $n$ 个词元，$X$ 是 $n\times d_\text{in}$，$W$ 是 $d_\text{in}\times d_\text{out}$，前向 $Y=XW+b$ 的矩阵乘法要 $2nd_\text{in}d_\text{out}$ 次浮点运算（每个乘积一次乘、一次加）。反向传播拿到 $G=\partial\mathcal L/\partial Y$（$n\times d_\text{out}$）后要算两个乘积：

- $\partial\mathcal L/\partial X=GW^\top$：$n\times d_\text{out}$ 乘 $d_\text{out}\times d_\text{in}$，$2nd_\text{in}d_\text{out}$ 次；
- $\partial\mathcal L/\partial W=X^\top G$：$d_\text{in}\times n$ 乘 $n\times d_\text{out}$，也是 $2nd_\text{in}d_\text{out}$ 次。

合起来是前向的两倍，所以训练一个词元约为每个权重 $2+4=6$ 次。偏置的梯度是 $G$ 按行求和，只要 $nd_\text{out}$ 次加法，比矩阵乘法少一个 $d_\text{in}$ 的因子，可以忽略；层归一化、激活函数、softmax 也都是这种“逐元素”的运算。

**(b)** 只求对输入的梯度时，每层仍要算 $GW^\top$ 把梯度往前传，但不必算 $X^\top G$。总量是前向 2 加反向 2，每个权重 4 次，比值变成 **2 倍**而不是 3 倍。（第一层的 $GW^\top$ 在求输入梯度时也必须算，而训练时嵌入层之前没有东西，严格地说训练可以省掉它，但词嵌入是查表，本来就不在 $N_\text{matmul}$ 里。）

**(c)** 用 KV 缓存时，每生成一个字只把 1 个新位置送进模型，做一次前向：约 $2N_\text{matmul}$ 次浮点运算，再加上与缓存里全部键和值做点积的注意力项（随已生成长度增长，这里忽略）。`cpu-small` 的 $N_\text{matmul}=4\times12\times128^2+6551\times128=1{,}624{,}960$，每个字约 $3.25$ MFLOP，64 个字约 $208$ MFLOP——在一台每秒上百 GFLOP 的 CPU 上只要几毫秒，实际生成慢得多，是因为每一步的 Python 开销和小算子调用远比计算本身耗时（5.3 节）。
""",
)

# --------------------------------------------------------------------------- 5.2


def _test_lr(fn: Fn) -> int:
    from llmbook.optim import warmup_cosine

    settings = [
        (1e-3, 100, 10, 1e-4),
        (3e-3, 1200, 50, 1e-4),
        (0.5, 20, 0, 0.0),
        (2e-4, 30, 5, 2e-4),  # min_lr == lr: a constant rate after warm-up
    ]
    n = 0
    for lr, total, warmup, min_lr in settings:
        for step in sorted(
            {0, 1, warmup - 1, warmup, warmup + 1, total // 2, total - 1, total, total + 7}
        ):
            if step < 0:
                continue
            want = warmup_cosine(step, lr=lr, total_steps=total, warmup_steps=warmup, min_lr=min_lr)
            case = (
                f"step={step}, lr={lr}, total_steps={total}, warmup_steps={warmup}, min_lr={min_lr}"
            )
            expect_close(fn(step, lr, total, warmup, min_lr), want, case, tol=1e-12)
            n += 1
    return n


@exercise("5.2.1", "预热加余弦衰减的学习率", test=_test_lr)
def lr_at(
    step: int, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


answer(
    "5.2.2",
    "权重共享省下多少参数",
    r"""
共享的是一个 $V\times C$ 矩阵，省下 $6551\times128=838{,}528$ 个参数。按 5.3 节的计数，这个配置共享后共有 $1{,}642{,}112$ 个参数（词嵌入 838,528，位置嵌入 10,240，4 个块各 198,272，最终层归一化 256）；不共享就是 $2{,}480{,}640$ 个，多出 51%。在小模型上，词嵌入本来就是参数的大头，共享它几乎砍掉三分之一的参数；在几十亿参数的模型里，$V\times C$ 只占很小一部分，共享带来的节省也就不那么重要了（不少大模型并不共享）。

共享之后，这个矩阵的梯度是两部分之和：

1. **作为词嵌入**：只有这一批里出现过的字，对应的那几行得到梯度（查表的反向传播只把梯度加回被查的行）；
2. **作为输出层**：每个位置的 softmax 覆盖整个字表，所以**每一行**都得到梯度——正确的字被往隐藏状态的方向拉，其余的字被按概率往反方向推。

PyTorch 的自动求导会把两处的梯度自动累加到同一个参数上，训练代码不需要做任何特殊处理。
""",
)

answer(
    "5.2.3",
    "梯度累积与数据并行为什么等于整批",
    r"""
设一个全局批次有 $n$ 个样本，损失是每个样本损失的平均 $L=\frac1n\sum_{i=1}^n \ell_i$。把它平均分成 $k$ 个微批次，每个有 $m=n/k$ 个样本，第 $j$ 个微批次的损失是 $L_j=\frac1m\sum_{i\in j}\ell_i$。梯度是线性的，所以

$$\nabla\Big(\frac1k\sum_{j=1}^k L_j\Big)=\frac1k\sum_{j}\frac1m\sum_{i\in j}\nabla\ell_i=\frac1n\sum_{i=1}^n\nabla\ell_i=\nabla L .$$

训练循环把每个微批次的损失先除以 $k$ 再反传，PyTorch 把各次的梯度累加起来，得到的正是上式左边。

如果最后一个微批次只有 $m'<m$ 个样本，它的损失仍是**自己的**平均，再除以 $k$，于是其中每个样本的权重是 $\frac1{km'}$，大于其他样本的 $\frac1{km}$：小批次里的样本被放大了，梯度不再等于整批平均。正确的做法是按样本（或词元）数加权，例如每个微批次用“损失之和除以全局样本数”。

数据并行是同一件事：$N$ 个进程各算自己那一份的平均梯度，DDP 再对 $N$ 个进程取平均。只要每个进程分到的样本一样多，“平均的平均”就等于整批的平均，所以一步 DDP 与单进程在同一全局批次上的一步结果相同（`tests/test_ddp.py` 检查的正是这一点，误差只来自浮点运算的求和顺序）。
""",
)


def _test_clip(fn: Fn) -> int:
    import torch

    from llmbook.book.exercises import ExerciseFailure
    from llmbook.book.exercises._common import _gen, _randn, _tensor_close

    g = _gen(0)
    cases = [
        ("两个张量，范数大于阈值", [_randn(3, 4, g=g), _randn(5, g=g)], 1.0),
        ("范数小于阈值，应原样返回", [_randn(2, 2, g=g, scale=0.01)], 1.0),
        ("一个很大的梯度", [_randn(7, g=g, scale=100.0)], 0.5),
        ("三个张量，阈值 3", [_randn(2, 3, g=g), _randn(4, g=g), _randn(1, 1, g=g)], 3.0),
        ("全为 0 的梯度", [torch.zeros(3), torch.zeros(2, 2)], 1.0),
    ]
    for name, grads, max_norm in cases:
        originals = [t.clone() for t in grads]
        params = [torch.nn.Parameter(t.clone()) for t in grads]
        for p, t in zip(params, grads):
            p.grad = t.clone()
        want_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        want = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        case = f"{name}（max_norm={max_norm}）"
        got = fn([t.clone() for t in grads], max_norm)
        if not isinstance(got, tuple) or len(got) != 2:
            raise ExerciseFailure(
                f"{case}：应返回二元组 (clipped, total_norm)，你的函数返回 {got!r:.80}"
            )
        clipped, total = got
        expect_close(total, want_norm, case + "，total_norm", tol=1e-5)
        if not isinstance(clipped, (list, tuple)) or len(clipped) != len(want):
            raise ExerciseFailure(f"{case}：clipped 应是 {len(want)} 个张量的列表")
        for k, (c, w) in enumerate(zip(clipped, want)):
            _tensor_close(c, w, f"{case}，第 {k} 个张量", atol=1e-6, rtol=1e-5)
        probe = [t.clone() for t in grads]
        fn(probe, max_norm)
        if not all(torch.equal(a, b) for a, b in zip(probe, originals)):
            raise ExerciseFailure(f"{case}：不要改动传入的张量，应返回新的张量")
    return len(cases)


@exercise("5.2.4", "按全局范数裁剪梯度", test=_test_clip)
def clip_global_norm(grads: list[Any], max_norm: float) -> tuple[list[Any], float]:
    import torch

    total = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    scale = max_norm / (total + 1e-6)
    if scale >= 1.0:
        return [g.clone() for g in grads], total
    return [g * scale for g in grads], total


answer(
    "5.2.5",
    "Adam 加 L2 与 AdamW 的衰减",
    r"""
**(a)** 数据梯度为 0 时，Adam 加 L2 看到的梯度只有 $g_t=\lambda\theta_{t-1}$。第一步 $m_1=(1-\beta_1)g_1$、$v_1=(1-\beta_2)g_1^2$，偏差修正后 $\hat m_1=g_1$、$\hat v_1=g_1^2$，位移 $\eta\,\hat m_1/\sqrt{\hat v_1}=\eta$。第二步 $g_2=\lambda\theta_1$ 与 $g_1$ 几乎相等（$\theta$ 只变了 $\eta$），$\hat m_2\approx g_2$、$\hat v_2\approx g_2^2$，位移仍约为 $\eta$。$\lambda$ 同时出现在分子和分母里，约掉了：不论 $\lambda$ 多大多小，参数每步都移动约 $\eta$，直到接近 0。AdamW 下数据梯度为 0 时 $\hat m=0$，只剩衰减项，每步乘以 $(1-\eta\lambda)$，即移动 $\eta\lambda\theta$；$\lambda=0.1$、$\eta=0.01$、$\theta=1$ 时是 0.001，比 Adam 加 L2 小 10 倍，而且随 $\lambda$ 成比例变化。5.2 节的表格正是这两个结果。

**(b)** 若 $g\gg\lambda\theta$，分母 $\sqrt{\hat v}\approx|g|$，L2 项对更新的贡献约为 $\eta\lambda\theta/|g|$，比 AdamW 的 $\eta\lambda\theta$ 小 $|g|$ 倍。梯度一向很大的参数几乎不受衰减——而这往往正是最需要约束的参数。这就是 Loshchilov 和 Hutter 提出 AdamW 的动机：在 Adam 里，“L2 正则”与“权重衰减”不再是一回事。

**(c)** 层归一化的输出是 $\gamma\odot\hat x+\beta$。衰减把 $\gamma$ 拉向 0，等于把这一层送进注意力或前馈网络的输入整体缩小，而不是让函数“更简单”；模型只好用更大的后续权重来补偿，反而与衰减的本意相反。训练很久以后（衰减的累积效应是 $(1-\eta\lambda)^t$），增益会被持续压低，各层输入的尺度偏离 1，训练变慢或不稳定。偏置同理：它只是平移，约束它没有正则化的意义，而且它们加起来还不到参数的 1%，不衰减也几乎不增加过拟合的风险。
""",
)

answer(
    "5.2.6",
    "读训练记录：热重启与训练—验证差距",
    r"""
**(a)** `warmup_cosine` 在 `step >= total_steps` 之后一直返回 `min_lr`。不改 `max_steps` 时，从第 4,000 步续训，学习率始终是 1e-4——而且 `train` 的循环条件是 `step < max_steps`，第 4,000 步已经满足 `step == max_steps`，根本不会再训练一步。所以续训必须把 `max_steps` 改大，而改大之后余弦的周期随之变长，学习率就从 1e-4 回升到新周期在第 4,000 步的位置（约 1.24e-3）。想让学习率从 1e-4 平稳接着走，可以让续训段使用一个新的日程：峰值取 1e-4（或更小）、不预热、只在续训的步数上衰减到更小的 `min_lr`；或者一开始就把 `max_steps` 设为最终的 9,000，中途停下再续训时日程不变（这正是“精确续训”的用法）。热重启本身也不一定是坏事：SGDR 正是有意地周期性抬高学习率，这里的第二段末确实比第一段末低了一截。

**(b)** 把模型切换到评估模式（`model.eval()`，关闭 dropout），在一批**训练集**窗口上用 `evaluate_loss` 计算损失，与验证损失用同样的批数和窗口长度。dropout 在训练时随机丢掉 10% 的激活，让模型的预测变差、损失偏高；关掉它以后，训练损失会更低，所以与验证损失的差距会比图上的约 0.08 纳特**更大**。这才是判断过拟合时应当比较的两个数。
""",
)
