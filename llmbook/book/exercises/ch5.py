"""Exercises of chapter 5 (the GPT project): reference solutions, checkers and answers.

Coding exercises are checked against the package's own functions (the FLOP and parameter
formulas of :mod:`llmbook.training.compute`, :func:`llmbook.optim.warmup_cosine`,
:func:`llmbook.generation.decoding.process_logits`) or against values computed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close

Fn = Callable[..., Any]


def _floats(got: Any, case: str) -> list[float]:
    """``got`` as a list of floats, or a Chinese failure saying a list was expected."""
    try:
        return [float(v) for v in got]
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个数的列表，你的函数返回 {got!r}") from None


def _ints(got: Any, case: str) -> list[int]:
    try:
        return [int(v) for v in got]
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个整数列表，你的函数返回 {got!r}") from None


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

# --------------------------------------------------------------------------- 5.3


def _test_params(fn: Fn) -> int:
    from llmbook.models.gpt import GPT, GPTConfig
    from llmbook.training import compute

    cases = [
        (6551, 64, 2, 128),
        (6551, 80, 4, 128),
        (50, 16, 2, 8),
        (7, 5, 1, 4),
        (1000, 32, 3, 48),
        (50257, 1024, 12, 768),
    ]
    for v, t, n_layer, c in cases:
        cfg = GPTConfig(
            vocab_size=v, block_size=t, n_layer=n_layer, n_head=4 if c % 4 == 0 else 1, n_embd=c
        )
        want = compute.param_count(cfg)
        expect(
            fn(v, t, n_layer, c),
            want,
            f"vocab_size={v}, block_size={t}, n_layer={n_layer}, n_embd={c}",
        )
    small = GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=4)
    expect(
        fn(11, 6, 2, 4),
        GPT(small).num_parameters(),
        "vocab_size=11, block_size=6, n_layer=2, n_embd=4（与 GPT(...).num_parameters() 比较）",
    )
    return len(cases) + 1


@exercise("5.3.1", "数出 GPT-2 的参数", test=_test_params)
def gpt2_num_params(vocab_size: int, block_size: int, n_layer: int, n_embd: int) -> int:
    d = n_embd
    attention = 3 * d * d + 3 * d + d * d + d  # QKV projection and output projection
    mlp = d * 4 * d + 4 * d + 4 * d * d + d  # up to 4d and back, with biases
    layernorms = 2 * 2 * d  # two LayerNorms per block: gain and bias
    per_block = attention + mlp + layernorms  # = 12 d^2 + 13 d
    return vocab_size * d + block_size * d + n_layer * per_block + 2 * d  # + final LayerNorm


def _test_heads(fn: Fn) -> int:
    import torch

    cases = [(2, 3, 8, 2), (1, 5, 6, 3), (2, 4, 4, 1), (3, 2, 4, 4), (2, 13, 128, 4)]
    for b, t, c, h in cases:
        x = torch.arange(b * t * c, dtype=torch.float32).reshape(b, t, c)
        want = x.view(b, t, h, c // h).transpose(1, 2)
        case = f"x 的形状 {(b, t, c)}，n_head={h}"
        got = fn(x.clone(), h)
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailure(f"{case}：应返回一个张量，你的函数返回 {got!r}")
        expect(tuple(got.shape), tuple(want.shape), case + "（形状）")
        if not torch.equal(got, want):
            raise ExerciseFailure(
                f"{case}：形状对了，数值却不对——第 0 个样本第 1 个头的第 0 个位置应为 "
                f"{want[0, min(1, h - 1), 0].tolist()}，你的函数给出 {got[0, min(1, h - 1), 0].tolist()}"
            )
    return len(cases)


@exercise("5.3.2", "把残差流拆成多个头", test=_test_heads)
def split_heads(x: Any, n_head: int) -> Any:
    b, t, c = x.shape
    return x.view(b, t, n_head, c // n_head).transpose(1, 2)


answer(
    "5.3.3",
    "KV 缓存省下多少计算",
    r"""
不用缓存时，第 $k$ 步（$k=1,\dots,n$）把长为 $k$ 的序列整个送进模型（提示 1 个字加已生成的 $k-1$ 个字），总共处理

$$\sum_{k=1}^{n}k=\frac{n(n+1)}{2}$$

个位置；用缓存时，第 1 步处理提示的 1 个位置，之后每步只处理新的 1 个位置，共 $n$ 个。两者之比是 $\frac{n+1}{2}$，$n=48$ 时是 $1176$ 对 $48$，约 24.5 倍。序列越长，差距越大：不用缓存的总量随 $n^2$ 增长，用缓存随 $n$ 增长（注意力仍要和缓存里的全部键做点积，这一项随 $n^2$ 增长，但系数很小）。

5.3 节实测的加速远小于 24 倍，原因是这个模型太小：每一步的耗时主要是固定开销——Python 循环、几十次小算子的调用、采样——而不是“处理了几个位置”。把 48 个位置放进一次矩阵乘法，比只放 1 个位置慢不了多少，因为 CPU 在这么小的矩阵上远没有吃饱。模型越宽、序列越长，每个位置的计算越占主导，实测的加速就越大：`benchmarks/RESULTS.md` 记录的 `bench_gpt.py` 测量（更大的模型、提示 16 个字、生成 256 个字）得到约 8.5 倍，仍远小于位置数之比，但已比本节的两三倍大得多。
""",
)

# --------------------------------------------------------------------------- 5.4


def _test_penalty(fn: Fn) -> int:
    import torch

    from llmbook.generation.decoding import process_logits

    cases = [
        ([2.0, -1.0, 0.5, -3.0], [1, 0], 2.0),
        ([2.0, -1.0, 0.5, -3.0], [1, 0, 1, 1, 0], 2.0),  # repeats are penalised once
        ([1.5, 0.0, -0.5], [0, 1, 2], 1.3),
        ([3.0, 1.0, -2.0], [], 1.5),
        ([3.0, 1.0, -2.0], [2, 0], 1.0),
        ([0.8, -0.4, 2.2, 0.1], [3, 1], 0.5),  # rho < 1 encourages repeats
    ]
    for logits, seen, rho in cases:
        seqs = torch.tensor([seen], dtype=torch.long) if seen else None
        want = process_logits(torch.tensor([logits]), seqs, repetition_penalty=rho)[0].tolist()
        case = f"logits={logits}, seen={seen}, rho={rho}"
        got = _floats(fn(list(logits), list(seen), rho), case)
        expect(len(got), len(want), case + "（长度）")
        for g, w in zip(got, want):
            expect_close(g, w, f"{case}，得到 {got}", tol=1e-6)
    return len(cases)


@exercise("5.4.1", "重复惩罚", test=_test_penalty)
def penalize(logits: Sequence[float], seen: Sequence[int], rho: float) -> list[float]:
    out = [float(z) for z in logits]
    for i in set(seen):
        out[i] = out[i] / rho if out[i] > 0 else out[i] * rho
    return out


def _test_top_p(fn: Fn) -> int:
    cases = [
        ([0.5, 0.25, 0.125, 0.0625, 0.0625], 0.75, [0, 1]),
        ([0.5, 0.25, 0.125, 0.0625, 0.0625], 0.76, [0, 1, 2]),
        ([0.1, 0.6, 0.3], 0.5, [1]),
        ([0.1, 0.6, 0.3], 0.65, [1, 2]),
        ([0.3, 0.1, 0.6], 0.65, [0, 2]),
        ([0.3, 0.1, 0.6], 1.0, [0, 1, 2]),
        ([0.05, 0.15, 0.8], 1e-9, [2]),
        ([1.0], 0.9, [0]),
    ]
    for probs, p, want in cases:
        case = f"probs={probs}, p={p}"
        got = _ints(fn(list(probs), p), case)
        expect(sorted(got), want, case)
    return len(cases)


@exercise("5.4.2", "top-p（核采样）保留哪些字", test=_test_top_p)
def top_p_keep(probs: Sequence[float], p: float) -> list[int]:
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, before = [], 0.0
    for i in order:
        if before >= p:  # the tokens before this one already reach p
            break
        kept.append(i)
        before += probs[i]
    return sorted(kept)


answer(
    "5.4.3",
    "n-gram 为什么起步快，GPT 为什么后劲足",
    r"""
n-gram 的“训练”就是计数：把训练集扫一遍，记下每个长度不超过 7 的片段后面跟过什么字，再用 Kneser–Ney 平滑分配概率。它需要的统计量一次就全部拿到了，几秒钟后它的 bpc 就不会再变。神经网络则要靠梯度下降一点点逼近同样的条件分布：每一步只看一小批窗口，参数只朝减小损失的方向挪一小步。计算量不够时，它连 n-gram 记住的那些局部搭配都还没学全，所以现场训练一两分钟的 `cpu-tiny` 和 LSTM 还不如 7 元模型；检查点训练了几十倍的时间、把训练集看了十几遍之后，才在 bpc 上超过它。

超过之后多出来的部分，来自 n-gram 原理上做不到的事。7 元模型只看前 6 个字，而格律是整首诗的结构：五言还是七言由第一句决定，写到第几句、第几个字要一直“数”下去，第二、四句要押同一个韵。GPT 的注意力能看到窗口里的全部上文，位置嵌入让它知道自己在第几个位置，所以能学会这种长距离的约束。

bpc 对所有字一视同仁，格律只体现在少数位置（句末的标点、换行、韵脚）上，它们在平均损失里占的分量很小；格式正确率则只看这几处，而且要求整首诗全部正确——任何一处数错就整首不合格。所以 bpc 上几个百分点的差距，在格式正确率上会被放大成明显的差别。
""",
)

# --------------------------------------------------------------------------- 5.5

answer(
    "5.5.1",
    "RoPE 的收益在训练早期更大还是更小",
    r"""
更大。本节学习曲线图的左图已经透露了答案：GPT-2 与 RoPE 变体的验证集 bpc 之差，第 200 步约 0.4 bpc，第 600 步约 0.27，到第 800 步之后稳定在 0.24 左右。把 `max_steps` 改成 300 重新构建，学习率日程也随之缩短（余弦在 300 步内就衰减到底），所以数字不会与曲线上第 300 步的点完全相同，但 RoPE 的领先幅度应当明显大于 1,200 步时的值。

原因在于两种位置表示的起点不同。GPT-2 的位置嵌入 `wpe` 是随机初始化的 80 个向量，模型要先从数据里把“第 5 个字之后是逗号”“第 12 个位置是句号”这样的规律一个位置一个位置地学进去，训练早期这些向量几乎还是噪声，模型只能像一元、二元模型那样不看位置地猜。RoPE 没有需要学的位置参数，相对位置从第一步起就写在注意力分数里，模型可以直接学“上一个标点之后隔了几个字”这种相对规律。随着训练进行，可学习的位置向量逐渐追上来，差距缩小，但在 1,200 步内没有消失。

检验时注意：差距的变化要大于种子噪声（练习 4）才算数；若想看得更清楚，可以同时构建 300、600、1,200 步三组，画出“RoPE 收益随训练步数”的曲线。
""",
)

answer(
    "5.5.2",
    "去掉负载均衡损失之后",
    r"""
统计方法：在每个 MoE 层的路由器（`router`，一个线性层）上挂一个前向钩子（与 5.3 节记录张量形状的做法相同），在验证集的若干批上记下它输出的打分，取每个词元得分最高的两个专家，再对每层算出 4 个专家各自分到的词元比例。完全均衡时每个专家应分到 $2/4$ 的词元（每个词元选 2 个，比例之和为 2）。

预期的现象是**路由坍缩**：没有负载均衡损失时，路由器与专家之间有正反馈——某个专家碰巧多分到一些词元，就训练得更充分，于是路由器更愿意把词元交给它。结果常常是某一层里一两个专家包揽了大部分词元，其余专家几乎闲置；不同层坍缩的程度可以相差很大。`moe_aux_coef=0.01` 的辅助损失正是为惩罚这种不均衡而加的（它是 $E\sum_i f_iP_i$，$E$ 是专家数，$f_i$ 是专家 $i$ 实际分到的词元比例，$P_i$ 是路由器给它的平均概率；分配越集中，这一项越大）。

bpc 的变化在这个规模上很可能不大，方向也不一定：坍缩让有效参数变少，模型更接近一个稠密模型；而去掉辅助损失也去掉了一个与语言建模无关的约束。要判断变化是否真实，仍需与种子噪声比较。负载均衡在大规模训练中更重要的理由在于效率：专家分布在不同的设备上时，一个专家过载会让整个批次等它，闲置的专家则白白占着显存。
""",
)

answer(
    "5.5.3",
    "GQA：训练几乎不变，推理省内存",
    r"""
KV 缓存每层、每个位置存一个键向量和一个值向量，每个向量有 $H_\text{kv}\cdot D$ 个数，所以大小是

$$2\cdot n_\text{layer}\cdot B\cdot T\cdot H_\text{kv}\cdot D\cdot(\text{每个数的字节数}).$$

本节的配置 $n_\text{layer}=4$、$T=80$、$D=128/4=32$，fp32 下每条序列是 $2\times4\times80\times32\times4\times H_\text{kv}=81{,}920\,H_\text{kv}$ 字节：$H_\text{kv}=4,2,1$ 时分别是 320 KiB、160 KiB 和 80 KiB。

训练吞吐应当几乎不变（三者的差别预计与计时噪声同一量级，与本节各稠密变体的比较类似），因为训练时所有位置并行计算，键和值的投影只是每层矩阵乘法的一小部分：$H_\text{kv}$ 从 4 减到 1，$K,V$ 投影从 $2C^2$ 减到 $2C^2/4$，而每层还有 $Q$ 与输出投影的 $2C^2$ 和前馈层的 $8C^2$；注意力分数的计算量由查询头数决定，不因 GQA 减少。

推理时情况完全不同。逐字生成的每一步都要把整个 KV 缓存从内存读一遍，而每个数只参与一两次乘加，速度受内存带宽限制；缓存的总大小又随批大小和上下文长度线性增长，决定了一块显卡能同时服务多少个请求、支持多长的上下文。GQA 把缓存缩小到 $H_\text{kv}/H$，读得少、放得多，所以它是推理时最重要的省内存手段之一，而模型质量的代价很小（5.5 节的结果和 Ainslie 等人的报告都如此）。
""",
)

answer(
    "5.5.4",
    "种子噪声与 0.02 bpc 的阈值",
    r"""
做法：对 `gpt2` 和 `rope` 各用种子 0、1、2 训练（种子 0 就是已有的结果），得到每个变体 3 个验证集 bpc。用它们的标准差 $\sigma$ 估计单次运行的噪声；两个独立运行之差的标准差约为 $\sqrt2\,\sigma$。若要求一项变化在约 95% 的把握下不是噪声，阈值应取 $2\sqrt2\,\sigma\approx2.8\,\sigma$ 左右。只有 3 个种子时 $\sigma$ 本身也估得很粗，结论要留余地。

如何判断 0.02 合适与否：

- 若测得 $\sigma$ 只有千分之几比特（例如 0.005），阈值 0.02 偏保守，但不会产生错误结论；
- 若 $\sigma$ 在 0.01 左右，$2.8\sigma\approx0.028$，0.02 就偏松了。

会受影响的是变化接近阈值的几项。对照本节的表：RMSNorm 与 GQA 两项在验证集和测试集上都只比 0.02 大一点，被判为“变好”，它们最可能改判为“在噪声之内”；QK-norm 的验证集变化略超过 0.02、测试集没有超过，也属于边缘情形。RoPE（约 0.24 bpc）和 MoE（约 0.1 bpc）的结论离阈值很远，不会因此改变。还要注意，种子会同时改变初始化和数据顺序；想把两者分开，可以分别固定其中之一再重复实验。
""",
)
