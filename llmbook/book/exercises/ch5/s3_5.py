"""Exercises of sections 5.3–5.5: the model's shapes and initialisation, decoding, ablation.

Coding exercises are checked against the package's own functions (the parameter formula
of :mod:`llmbook.training.compute`, :func:`llmbook.generation.decoding.process_logits`),
against PyTorch or against values computed by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises._common import Fn


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

answer(
    "5.3.4",
    "第 0 步的损失",
    r"""
**(a)** $z_v=\sum_{i=1}^C e_{v,i}h_i$。各项独立、均值为 $\mathbb E[e_{v,i}]\,\mathbb E[h_i]=0$，方差为 $\mathbb E[e_{v,i}^2]\,\mathbb E[h_i^2]=s^2\cdot1$，所以 $\operatorname{Var}z_v=Cs^2$，标准差 $s\sqrt C$。$s=0.02$、$C=128$ 时约为 0.226，5.3 节实测的 logits 标准差就是这个数。（严格说 $h$ 由同一批权重算出，与 $e_v$ 并不完全独立，但在随机初始化时这点相关可以忽略。）

**(b)** 损失 $\mathcal L_0=\log\sum_u e^{z_u}-z_y$。$|V|$ 个 $e^{z_u}$ 之和除以 $|V|$ 是样本均值，字表很大时按大数定律接近 $\mathbb E[e^z]=e^{\sigma^2/2}$，所以 $\log\sum_u e^{z_u}\approx\ln|V|+\sigma^2/2$；再对 $z_y$ 取平均，$\mathbb E[z_y]=0$。近似成立的条件是：$|V|$ 足够大，且 $\sigma$ 不大——$e^z$ 的方差是 $e^{2\sigma^2}-e^{\sigma^2}$，$\sigma$ 一大，和式就被少数几个最大的项主导，样本均值不再接近期望。

**(c)** 词嵌入改为 $\mathcal N(0,1)$ 后，残差流几乎只剩当前字 $x$ 的嵌入 $e_x$（位置嵌入和各层的增量都只有 0.02 的量级），最终层归一化把它缩放为 $h\approx\sqrt C\,e_x/\|e_x\|$。输出层与词嵌入共享，于是

- 当前字自己的得分 $z_x=e_x^\top h\approx\sqrt C\,\|e_x\|\approx\sqrt C\cdot\sqrt C=C=128$；
- 其余字的得分 $z_u=e_u^\top h$ 是 $C$ 个独立项之和，标准差 $\sqrt C\approx11.3$，$|V|$ 个里最大的约为 $11.3\sqrt{2\ln|V|}\approx47$，远小于 128。

所以 softmax 几乎把全部概率放在当前字上：模型断定“下一个字就是当前字”。正确的下一个字 $y$ 几乎从不等于 $x$，它的得分均值为 0，损失 $\approx z_x-z_y\approx C=128$ 纳特，5.3 节实测的 126 左右正是这样来的。第 (b) 问的近似在这里完全失效：和式被一个项独占，而且 $h$ 与 $e_x$ 强相关，不再独立。

如果输出层不共享、仍按 $\mathcal N(0,0.02^2)$ 初始化，情况就完全不同：最终层归一化把 $h$ 拉回单位尺度，与词嵌入有多大无关，得分的标准差仍是 $0.02\sqrt C$，损失仍约为 $\ln|V|+\sigma^2/2\approx8.81$。可见最终的层归一化让损失对词嵌入的尺度不敏感，出问题的是“大尺度的嵌入”与“共享权重”两者的组合。
""",
)


def _test_bf16(fn: Fn) -> int:
    import torch

    from llmbook.book.exercises._common import _gen, _randn

    g = _gen(0)
    cases = [
        ("正态随机数", _randn(64, g=g)),
        ("很大和很小的数", _randn(32, g=g) * torch.logspace(-30, 30, 32)),
        ("恰好在正中间：1+2⁻⁸ 与 1+3·2⁻⁸", torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)])),
        ("已经是 bf16 可表示的数", torch.tensor([0.0, 1.0, -2.5, 256.0, 0.0078125])),
        ("进位到下一个指数", torch.tensor([1.9999999, -3.99999, 255.9])),
        ("二维张量", _randn(3, 5, g=g, scale=1e3)),
    ]
    for name, x in cases:
        x = x.float()
        want = x.to(torch.bfloat16).float()
        got = fn(x.clone())
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailure(f"{name}：应返回一个张量，你的函数返回 {got!r:.80}")
        if got.dtype != torch.float32 or tuple(got.shape) != tuple(x.shape):
            raise ExerciseFailure(
                f"{name}：应返回形状为 {tuple(x.shape)} 的 float32 张量，"
                f"你的函数返回 {got.dtype}、形状 {tuple(got.shape)}"
            )
        if not torch.equal(got, want):
            k = int((got != want).flatten().nonzero()[0])
            raise ExerciseFailure(
                f"{name}：输入 {x.flatten()[k].item()!r} 应舍入为 {want.flatten()[k].item()!r}，"
                f"你的函数给出 {got.flatten()[k].item()!r}"
            )
    return len(cases)


@exercise("5.3.5", "把 fp32 舍入到 bf16", test=_test_bf16)
def bf16_round(x: Any) -> Any:
    import torch

    bits = x.contiguous().view(torch.int32)
    lsb = (bits >> 16) & 1  # the last bit that bf16 keeps: ties go to the even neighbour
    rounded = (bits + 0x7FFF + lsb) & -65536  # round the low 16 bits, then clear them
    return rounded.view(torch.float32)


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
