"""Exercises of sections 4.1, 4.2, 4.3 (chapter 4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises.ch4._helpers import Fn, _gen, _number, _randn, _tensor_close


def _test_param_count(fn: Fn) -> int:
    from llmbook.models import TransformerLM, TransformerLMConfig
    from llmbook.utils import count_parameters

    cases = [
        (100, 16, 64, 2, 32, True, "V=100, d=16, d_ff=64, 2 层, T_max=32"),
        (100, 16, 64, 2, 32, False, "同上，但输入嵌入与输出层不共享权重"),
        (50, 8, 20, 1, 10, True, "1 层，d_ff=20（不是 4d）"),
        (300, 32, 128, 3, 64, True, "V=300, d=32, 3 层"),
    ]
    for V, d, d_ff, L, T, tie, case in cases:
        torch.manual_seed(0)
        model = TransformerLM(
            TransformerLMConfig(
                vocab_size=V,
                block_size=T,
                d_model=d,
                n_heads=2,
                n_layers=L,
                d_ff=d_ff,
                tie_weights=tie,
            )
        )
        expect(fn(V, d, d_ff, L, T, tie), count_parameters(model), case)
    return len(cases)


@exercise("4.1.1", "由公式数出 Transformer 的参数量", test=_test_param_count)
def transformer_lm_params(
    vocab_size: int,
    d_model: int,
    d_ff: int,
    n_layers: int,
    block_size: int,
    tie_weights: bool = True,
) -> int:
    d = d_model
    attn = 4 * d * d + 4 * d  # W^Q, W^K, W^V, W^O 及其偏置
    ffn = 2 * d * d_ff + d_ff + d  # W_1, b_1, W_2, b_2
    norms = 4 * d  # 两个层归一化，各有增益和偏置
    total = vocab_size * d + block_size * d + n_layers * (attn + ffn + norms) + 2 * d
    return total if tie_weights else total + vocab_size * d  # 不共享时输出层另有 |V|·d


def _test_lr_schedule(fn: Fn) -> int:
    from llmbook.optim import warmup_cosine

    runs = [
        (1e-3, 1e-4, 10, 100, [0, 1, 9, 10, 55, 99, 100, 150]),
        (3e-3, 3e-4, 20, 200, [0, 19, 20, 110, 199]),
        (0.5, 0.0, 0, 50, [0, 25, 49, 50]),
        (2e-4, 2e-4, 5, 30, [0, 4, 17]),
    ]
    n = 0
    for lr, min_lr, warmup, total, steps in runs:
        for step in steps:
            want = warmup_cosine(step, lr=lr, total_steps=total, warmup_steps=warmup, min_lr=min_lr)
            case = (
                f"lr={lr:g}, min_lr={min_lr:g}, warmup_steps={warmup}, total_steps={total}, "
                f"step={step}"
            )
            expect_close(fn(step, lr, min_lr, warmup, total), want, case, tol=1e-9)
            n += 1
    return n


@exercise("4.1.2", "预热加余弦衰减的学习率", test=_test_lr_schedule)
def lr_schedule(step: int, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps  # 第 0 步就有 lr / w，不是 0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)  # 超过 total_steps 后停在 min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


answer(
    "4.1.3",
    "忘了因果掩码会怎样",
    r"""
位置 $t$ 的 logits 用来预测 $x_{t+1}$。去掉因果掩码后，位置 $t$ 的注意力可以直接看到
位置 $t+1$，而那个位置的输入嵌入**正是要预测的答案**。模型很快学会一条捷径：
让每个位置的查询去找“下一个位置”（位置向量让这很容易），把那里的字原样抄到输出。
于是训练损失迅速降到接近 0，远低于任何真正的语言模型；如果验证时也不加掩码，
验证损失同样低得惊人——泄漏在评估里也存在，数字看上去一切正常。

问题出在生成时。逐字生成只能把已经写出的字送进模型，最后一个位置的“下一个位置”
根本不存在，模型赖以预测的那条捷径落空了，而它几乎没有学会从前文推断下一个字的
本领（训练信号都被抄答案满足了），所以生成的文字质量极差，常常是重复或乱码。

这说明因果掩码不只是“效率上的技巧”：它保证训练时每个位置看到的信息与生成时完全
一致，于是一次前向传播就能在所有 $T$ 个位置上同时得到 $T$ 个合法的“考试”
（教师强制），训练既正确又并行。检查一个新实现有没有这种泄漏，最直接的办法是：
改动位置 $t+1$ 之后的输入，位置 $t$ 及之前的 logits 应当**一个数都不变**。
""",
)


# ------------------------------------------------------------------ 4.2 derivations
def _test_cross_entropy(fn: Fn) -> int:
    g = _gen(10)
    z1, y1 = _randn(6, 7, g=g), torch.randint(0, 7, (6,), generator=g)
    z2 = torch.tensor([[2.0, 1.0, 0.0]])
    y2 = torch.tensor([1])
    z3 = _randn(5, 4, g=g, scale=1e4)  # 很大的 logits：直接 exp 会溢出
    y3 = torch.tensor([0, 1, 2, 3, 0])
    z4 = torch.tensor([[0.0, -1e4], [1e4, -1e4]])
    y4 = torch.tensor([1, 0])
    cases = [
        (z1, y1, "6 个位置、词表 7 的随机 logits"),
        (z2, y2, "4.3 节的例子：z=(2,1,0)，答案是第 1 个字（手算约 1.408）"),
        (z3, y3, "logits 的大小达到 1e4（要用 log-sum-exp 技巧才不会溢出）"),
        (z4, y4, "答案的概率极小（约 e^-10000）"),
    ]
    for z, y, case in cases:
        want = F.cross_entropy(z.double(), y).item()
        expect_close(_number(fn(z.clone(), y.clone()), case), want, case, tol=1e-5)
    return len(cases)


@exercise("4.2.1", "数值稳定的交叉熵", test=_test_cross_entropy)
def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    m = logits.max(dim=-1, keepdim=True).values
    lse = m.squeeze(-1) + (logits - m).exp().sum(-1).log()  # log Σ exp(z)，先减去最大值
    z_y = logits.gather(-1, targets[:, None]).squeeze(-1)
    return (lse - z_y).mean()  # -log p_y = -z_y + log Σ exp(z)


def _test_ce_grad(fn: Fn) -> int:
    g = _gen(11)
    cases = [
        (_randn(8, 10, g=g), torch.randint(0, 10, (8,), generator=g), "8 个位置、词表 10"),
        (torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([1]), "4.3 节的例子 z=(2,1,0)，y=1"),
        (_randn(4, 5, g=g, scale=1e3), torch.tensor([4, 3, 2, 1]), "logits 达到上千"),
        (_randn(3, 2, g=g), torch.tensor([0, 0, 1]), "词表只有 2 个字"),
    ]
    for z, y, case in cases:
        z64 = z.double().requires_grad_(True)
        F.cross_entropy(z64, y).backward()
        assert z64.grad is not None
        _tensor_close(fn(z.clone(), y.clone()), z64.grad, case, atol=1e-6)
    return len(cases)


@exercise("4.2.2", "交叉熵对 logits 的梯度", test=_test_ce_grad)
def ce_grad(logits: Tensor, targets: Tensor) -> Tensor:
    N, V = logits.shape
    p = torch.softmax(logits, dim=-1)
    return (p - F.one_hot(targets, V).to(p.dtype)) / N  # 平均损失：再除以位置数 N


answer(
    "4.2.3",
    "困惑度与 bpc 的换算",
    r"""
记总信息量（所有位置的 $-\ln p$ 之和）为 $S$。按字平均 $\bar H_{\text{字}}=S/N_{\text{字}}$，
按词平均 $\bar H_{\text{词}}=S/N_{\text{词}}$；同一组概率，$S$ 不变，只有分母不同。

**(a)** $\bar H_{\text{字}}=2.0$ nat，

$$
\text{bpc}=\frac{2.0}{\ln 2}\approx2.885,\qquad \mathrm{PPL}_{\text{字}}=e^{2.0}\approx7.39 .
$$

**(b)** $S=2.0\times1000=2000$ nat，$\bar H_{\text{词}}=2000/600\approx3.333$ nat，

$$
\mathrm{PPL}_{\text{词}}=e^{3.333}\approx28.0 .
$$

一般地

$$
\mathrm{PPL}_{\text{词}}=\exp\Bigl(\frac{S}{N_{\text{词}}}\Bigr)
=\Bigl(e^{S/N_{\text{字}}}\Bigr)^{N_{\text{字}}/N_{\text{词}}}
=\mathrm{PPL}_{\text{字}}^{\,N_{\text{字}}/N_{\text{词}}}
=2^{\,\text{bpc}\cdot N_{\text{字}}/N_{\text{词}}} .
$$

平均每个词含 $N_{\text{字}}/N_{\text{词}}$ 个字，每词困惑度就是每字困惑度的这么多次方：
每个单位承载的信息越多，困惑度按指数变大，模型本身并没有变差。

**(c)** $\text{bpc}=S/(N_{\text{字}}\ln2)$ 的分子是总信息量，与怎样切分无关（一个词的概率
就是它各字条件概率之积）；分母是字符数，也与切分无关。所以不论模型按字、按词还是按
BPE 词元计算损失，只要换算到同一份文本的字符数上，bpc 就可以直接比较；困惑度、
每词元损失则不行。
""",
)


def _test_adam(fn: Fn) -> int:
    def reference(
        theta0: Tensor, grads: list[Tensor], lr: float, b1: float, b2: float, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        # 与 torch.optim.Adam 相同的更新（4.2 节逐元素核对过）；不直接调用它，因为
        # 一个进程里第一次用 torch.optim 要多花一秒多加载
        theta, m, s = theta0.clone(), torch.zeros_like(theta0), torch.zeros_like(theta0)
        for k, gr in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * gr
            s = b2 * s + (1 - b2) * gr**2
            denom = (s / (1 - b2**k)).sqrt() + eps
            theta = theta - lr * (m / (1 - b1**k)) / denom
        return theta, m, s

    g = _gen(12)
    scales = torch.tensor([1e-3, 1.0, 50.0, 0.2, 7.0])
    cases = [
        (3, 0.1, 0.9, 0.999, 1e-8, "三步，梯度大小相差几个数量级"),
        (1, 0.01, 0.9, 0.999, 1e-8, "只走一步：每个参数都应移动约 ±η"),
        (4, 0.05, 0.5, 0.6, 1e-8, "β1=0.5, β2=0.6（检查 β 用对了没有）"),
        (2, 0.1, 0.9, 0.999, 0.1, "ε=0.1 很大（ε 加在 √ŝ 之外）"),
    ]
    for steps, lr, b1, b2, eps, case in cases:
        theta0 = _randn(5, g=g, scale=1.0).double()
        grads = [(_randn(5, g=g) * scales).double() for _ in range(steps)]
        want, m_ref, s_ref = reference(theta0, grads, lr, b1, b2, eps)
        theta, m, s = theta0.clone(), torch.zeros(5).double(), torch.zeros(5).double()
        for k, gr in enumerate(grads, start=1):
            out = fn(theta, gr.clone(), m, s, k, lr, b1, b2, eps)
            if not isinstance(out, tuple | list) or len(out) != 3:
                raise ExerciseFailure(
                    f"{case}：应返回 (theta, m, s) 三个张量，你的函数返回 {out!r:.80}"
                )
            theta, m, s = out
        _tensor_close(theta, want, case + "，最后的参数", atol=1e-7, rtol=1e-6)
        _tensor_close(m, m_ref, case + "，一阶矩 m", atol=1e-9, rtol=1e-7)
        _tensor_close(s, s_ref, case + "，二阶矩 s", atol=1e-9, rtol=1e-7)
    return len(cases)


@exercise("4.2.4", "照公式写一步 Adam", test=_test_adam)
def adam_step(
    theta: Tensor,
    grad: Tensor,
    m: Tensor,
    s: Tensor,
    k: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    m = beta1 * m + (1 - beta1) * grad
    s = beta2 * s + (1 - beta2) * grad**2
    m_hat = m / (1 - beta1**k)  # 偏差修正：k 从 1 开始
    s_hat = s / (1 - beta2**k)
    return theta - lr * m_hat / (s_hat.sqrt() + eps), m, s


# ------------------------------------------------------------ 4.3 worked example
answer(
    "4.3.1",
    "答案换成“。”再算一遍",
    r"""
logits 仍是 $\mathbf z=(2,1,0)$，所以 softmax 不变：$\mathbf p\approx(0.665,\,0.245,\,0.090)$。

**交叉熵.** 真实答案是“。”：

$$
H=-\ln p_{\text{。}}=-\ln0.090\approx2.408\ \text{nat}=\frac{2.408}{\ln2}\approx3.473\ \text{比特},
$$

这个位置的困惑度 $e^{2.408}=1/p_{\text{。}}\approx11.1$，比答案是“风”时（4.09）糟得多。

**梯度.** $\nabla_{\mathbf z}H=\mathbf p-\mathbf y=(0.665,\;0.245,\;0.090-1)=(0.665,\;0.245,\;-0.910)$。
正确答案得到的“拉力” $1-p_y=0.910$ 比原来的 $0.755$ 大：预测错得越离谱，梯度越大。

**走一步（$\eta=1$）.** 新的 logits $\mathbf z-\nabla=(1.335,\;0.755,\;0.910)$，
$e^{1.335}\approx3.799$，$e^{0.755}\approx2.128$，$e^{0.910}\approx2.484$，和为 $8.412$，

$$
\mathbf p'\approx(0.452,\;0.253,\;0.295).
$$

$p(\text{。})$ 从 0.090 升到 0.295，翻了三倍多，交叉熵降到 $-\ln0.295\approx1.220$；
但“春”仍是分数最高的字——一步梯度下降只保证往对的方向走，不保证一步走到。
（有意思的是 $p(\text{风})$ 也略有上升：“春”被压下去的 0.665 分给了另外两个字。）
""",
)


answer(
    "4.3.2",
    "softmax 的雅可比矩阵",
    r"""
对 $p_i=e^{z_i}/\sum_u e^{z_u}$ 求导，分 $i=j$ 与 $i\ne j$ 两种情况：

$$
\frac{\partial p_i}{\partial z_j}=\frac{\delta_{ij}e^{z_i}\sum_u e^{z_u}-e^{z_i}e^{z_j}}{\bigl(\sum_u e^{z_u}\bigr)^2}
=p_i\delta_{ij}-p_ip_j,
\qquad J=\operatorname{diag}(\mathbf p)-\mathbf p\mathbf p^\top .
$$

第 $i$ 行之和 $\sum_j(p_i\delta_{ij}-p_ip_j)=p_i-p_i\sum_jp_j=0$：所有 logits 同时加一个
常数，概率不变。代入 $\mathbf p=(0.665,0.245,0.090)$（更精确的 $0.6652,0.2447,0.0900$）：

$$
J\approx\begin{pmatrix}0.2227&-0.1628&-0.0599\\-0.1628&0.1848&-0.0220\\-0.0599&-0.0220&0.0819\end{pmatrix},
$$

例如 $J_{11}=0.6652-0.6652^2\approx0.2227$，$J_{12}=-0.6652\times0.2447\approx-0.1628$；
每行相加都是 0。

**链式法则.** $H=-\ln p_{\text{风}}$ 只依赖 $p_{\text{风}}$：$\partial H/\partial\mathbf p=(0,\,-1/p_{\text{风}},\,0)\approx(0,\,-4.087,\,0)$。于是

$$
\frac{\partial H}{\partial z_v}=\sum_i\frac{\partial H}{\partial p_i}\frac{\partial p_i}{\partial z_v}
=-\frac{1}{p_{\text{风}}}\bigl(p_{\text{风}}\delta_{\text{风},v}-p_{\text{风}}p_v\bigr)=p_v-\delta_{\text{风},v},
$$

数值上是 $J$ 的“风”那一行乘 $-4.087$：$(0.1628,\,-0.1848,\,0.0220)\times4.087\approx(0.665,\,-0.755,\,0.090)$，
正是正文的 $\mathbf p-\mathbf y$。$1/p_{\text{风}}$ 与 $J$ 中的因子 $p_{\text{风}}$ 正好约掉，
这就是交叉熵配 softmax 的梯度如此简单的原因。
""",
)


answer(
    "4.3.3",
    "把查询放大 10 倍",
    r"""
$q_3=(10,0)$，键和值不变。

**打分.** $q_3\cdot k_s/\sqrt2=(10,\,0,\,10)/\sqrt2\approx(7.071,\;0,\;7.071)$。

**softmax.** $e^{7.071}\approx1177.4$，$e^0=1$，和为 $2355.8$：

$$
w\approx(0.49979,\;0.00042,\;0.49979).
$$

**输出.** $0.49979\,(1,0)+0.00042\,(0,2)+0.49979\,(2,2)\approx(1.4994,\;1.0004)$。

与原来的权重 $(0.401,0.198,0.401)$、输出 $(1.203,1.198)$ 相比：分数之间的差距放大了
10 倍，softmax 几乎变成了“硬”选择，与查询正交的 $k_2$ 从 0.198 降到 0.0004，
$v_2$ 几乎不再对输出有贡献；$k_1$ 与 $k_3$ 的分数恰好相等，所以两者平分权重，
输出变成 $v_1$ 与 $v_3$ 的平均 $(1.5,1)$。

这正是 4.2 节“为什么除以 $\sqrt{d_k}$”所说的饱和：分数的尺度越大，softmax 越接近
独热，雅可比矩阵 $\operatorname{diag}(\mathbf w)-\mathbf w\mathbf w^\top$ 中与 $k_2$ 有关的
元素约为 $0.0004$，梯度几乎传不到它那里。把查询放大 10 倍与 $d_k$ 变大而不缩放的效果
相同——分数的标准差变大；除以 $\sqrt{d_k}$（以及 4.5 节的 QK 归一化）就是为了把分数
保持在 softmax 不饱和的范围内。
""",
)


# ----------------------------------------------------------------- 4.4 positions
