"""Exercises of sections 4.4, 4.5, 4.6 (chapter 4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect_close
from llmbook.book.exercises.ch4._helpers import Fn, _gen, _number, _randn, _tensor_close

answer(
    "4.4.1",
    "加大 RoPE 的底数",
    r"""
把正文画上界因子那张图的计算里的底数从 $b=10^4$ 换成 $5\times10^5$（$D=128$）：距离 0 时两者都是
$(D/2+1)/2=32.5$；距离 100 时上界因子从约 10.2 变成约 13.7，距离 1000 时从约 4.5 变成
约 10.2。**加大底数后，上界因子衰减得更慢**，曲线整体向右平移。

原因在频率 $\theta_i=b^{-2i/D}$：$\theta_0=1$ 不变，其余每一对的频率都随 $b$ 增大而
变小，最慢一对的周期 $2\pi b^{(D-2)/D}$ 从约 5.4 万个位置变成约 256 万个位置。
上界因子的衰减来自各对坐标的相位 $(n-m)\theta_i$ 彼此错开、相互抵消；频率越低，
相位在更长的距离内都还很小、仍然“同向”，抵消来得越晚。

这有助于长上下文，有两层原因。其一，要让模型在长度 $L$ 的上下文里分得清所有相对
距离，至少要有一些坐标对在 $L$ 步之内转不满一圈；底数越大，这样的低频对越多。
其二，训练时见过的角度是 $(n-m)\theta_i\le L_{\text{train}}\theta_i$；推理时上下文更长，
高频对早已转过很多圈、没有新东西，真正“没见过”的大角度出现在低频对上。底数越大，
同样长度下这些低频对转过的角度越小，越不容易越出训练时见过的范围；远处的字也不会
因为上界过早衰减而被压得太低。Llama 3 用 $b=5\times10^5$、许多长上下文扩展方法
（如按比例放大底数）都基于这个道理。代价是高维坐标对近距离的位置区分更粗，
需要靠低维的高频对来分辨相邻的字。
""",
)


answer(
    "4.4.2",
    "正弦编码的注意力分数依赖绝对位置吗",
    r"""
记 $A=W_QW_K^\top$（忽略偏置和 $1/\sqrt{d_k}$），展开

$$
s_{mn}=(x_m+PE_m)^\top A(x_n+PE_n)
=\underbrace{x_m^\top Ax_n}_{\text{内容}}
+\underbrace{x_m^\top A\,PE_n}_{\text{依赖 }n}
+\underbrace{PE_m^\top A\,x_n}_{\text{依赖 }m}
+\underbrace{PE_m^\top A\,PE_n}_{\text{位置—位置}} .
$$

第二、三项是内容与**绝对**位置的交叉项，一般随 $m$ 或 $n$ 单独变化。第四项用
$PE_n=M_{n-m}PE_m$ 写成 $PE_m^\top A M_{n-m}PE_m$，仍含 $PE_m$，所以一般也依赖 $m$；
只有当 $A$ 与所有旋转 $M_k$ 可交换（例如 $A=I$）时才化为只依赖 $n-m$ 的量：$A=I$ 时
$PE_m^\top PE_{m+k}=\sum_i\cos(k\omega_i)$。所以**加法式的正弦编码并不让注意力分数只依赖
相对位置**，它只是让“相对位移”可以被线性地表示出来，模型要自己学会利用；RoPE 则把
旋转直接作用在 $q,k$ 上，内积在结构上就只依赖 $n-m$。

数值实验：令内容 $x=0$，只看位置—位置项，比较同一条对角线（$n-m$ 固定）上的分数：

```python
import torch
from llmbook.models.attention import MultiHeadAttention
from llmbook.models.positional import sinusoidal_encoding

torch.manual_seed(0)
mha = MultiHeadAttention(32, 1).eval()
pe = sinusoidal_encoding(64, 32)
with torch.no_grad():
    S = mha.q_proj(pe) @ mha.k_proj(pe).T      # 位置—位置项（含偏置）
d1 = torch.diagonal(S, 1)                       # n - m = 1
print(d1.max() - d1.min())                      # 约 4.5：与 m 有关
S0 = pe @ pe.T                                  # A = I 的特例
print((torch.diagonal(S0, 1) - S0[0, 1]).abs().max())  # 约 4e-6：只依赖 n - m
```

学到的投影下，同一相对距离的分数相差约 4.5（整个分数矩阵的变化范围约 6.3），
$A=I$ 时则只差浮点误差。
""",
)


answer(
    "4.4.3",
    "单精度角度表在远处的误差",
    r"""
把 `block_size` 设为 8192（头大小 $D=32$），按正文的方法比较对角线：同一相对距离上
内积的最大差别从 $T=512$ 时的约 $3\times10^{-5}$ 增大到约 $3\times10^{-4}$，大致随位置
线性增长；只有 $n-m=0$ 那条对角线始终在 $10^{-6}$ 量级。

原因在角度 $m\theta_i$ 是用单精度算的。单精度的相对精度约 $2^{-24}\approx6\times10^{-8}$，
$m\theta_0=m=8191$ 这样的数的舍入误差约为 $8192\times2^{-24}\approx5\times10^{-4}$（再加上
$\theta_i$ 本身的舍入误差被 $m$ 放大），于是位置 $m$ 的旋转角带着一个随 $m$ 增长的小误差
$\epsilon_m$。内积变成 $q^\top R_{n-m+\epsilon_n-\epsilon_m}k$，$\epsilon_n-\epsilon_m$ 随
绝对位置变化，“只依赖相对位置”就被破坏了。$n=m$ 时两个误差相同、正好抵消，
所以主对角线不受影响。

改成双精度计算角度（`torch.arange(T, dtype=torch.float64)` 乘双精度的 $\theta_i$，
取 cos、sin 之后再转回单精度）后，$T=8192$ 时的差别降到约 $2\times10^{-6}$，与 $T=512$
时主对角线的水平相同，且不再随位置增长。但不能完全消除：cos、sin 表本身和
`q * cos + rotate_half(q) * sin` 的乘加仍是单精度，会留下 $10^{-7}$ 相对量级的舍入；
除非整个计算都用双精度。实际的长上下文模型正是这样做的：角度表用高精度计算
（`transformers` 的 Llama 在计算角度时特意关闭自动混合精度、用 float32），
而不是在 bfloat16 里算 $m\theta_i$。
""",
)


def _test_rope(fn: Fn) -> int:
    from llmbook.models.modern import apply_rope, rope_tables

    g = _gen(13)

    def reference(x: Tensor, positions: Tensor, base: float) -> Tensor:
        cos, sin = rope_tables(x.shape[-1], int(positions.max()) + 1, base)
        return apply_rope(x, cos[positions], sin[positions])

    cases = [
        (_randn(6, 8, g=g), torch.arange(6), 10000.0, "位置 0..5，D=8"),
        (_randn(4, 8, g=g), torch.tensor([0, 37, 5, 37]), 10000.0, "位置 [0, 37, 5, 37]（不连续）"),
        (_randn(4, 16, g=g), torch.arange(4) * 50, 500000.0, "底数 500000，D=16"),
        (_randn(3, 4, g=g), torch.tensor([100, 101, 102]), 10000.0, "位置 100..102，D=4"),
    ]
    for x, pos, base, case in cases:
        _tensor_close(fn(x.clone(), pos.clone(), base), reference(x, pos, base), case, atol=1e-4)
    # D=2 手算：(1, 0) 在位置 1 转过 1 弧度
    x = torch.tensor([[1.0, 0.0]])
    want = torch.tensor([[math.cos(1.0), math.sin(1.0)]])
    _tensor_close(fn(x, torch.tensor([1]), 10000.0), want, "D=2，(1, 0) 在位置 1：(cos 1, sin 1)")
    return len(cases) + 1


@exercise("4.4.4", "旋转位置编码", test=_test_rope)
def rope(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    T, D = x.shape
    half = D // 2
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # [D/2]
    angle = positions.double()[:, None] * theta[None, :]  # [T, D/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[:, :half], x[:, half:]  # 第 i 对是 (x_i, x_{i+D/2})
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


# -------------------------------------------------------------- 4.5 modern block
answer(
    "4.5.1",
    "逐个打开现代部件",
    r"""
这是一个要动手跑的实验，结论以你的运行为准；5.5 节在同样规模（4 层、128 维、80 字
窗口）上做过同一比较，可以用来对照。预期的结果和原因是：

- **`pos="rope"` 最有用**，验证损失明显下降（5.5 节里它一项就占了从 GPT-2 到 llama 预设
  全部收益的大部分，超过 0.1 bpc）。可学习的位置向量要为每个位置单独学一个向量，
  训练步数有限时学得很粗；RoPE 不需要学习，直接把相对位置写进注意力分数，而唐诗的
  规律（五个字后是逗号、隔句押韵）几乎都是相对的。速度上它省掉了位置表，但每层要
  多做一次旋转，每秒字数大致持平或略慢。
- **`norm="rmsnorm"`** 的损失变化很小（百分之几比特，与种子噪声同一量级）。它的好处
  本来就是省计算：少一次减均值、没有偏置，归一化部分更快；但在小模型里归一化只占
  很小一部分时间，每秒字数的差别也不明显。
- **`mlp="swiglu"`** 在隐藏层取 $\tfrac83C$ 时参数量和乘加次数与 GELU 网络几乎相同，
  速度相当（三个较小的矩阵乘法比两个较大的略慢一点）；损失的改善在这个规模上
  同样很小，要在大模型、长训练里才稳定地显现。

所以对这个小模型最有用的是 RoPE。比较时要注意两点：三次运行用同一个种子和同样的
数据顺序，差别小于 0.02 左右时不要下结论（可以再换一两个种子估计噪声）；计时要在
同一台、负载相同的机器上交替进行。
""",
)


answer(
    "4.5.2",
    "GQA 的参数量",
    r"""
设模型宽度为 $C$，头大小 $D=C/H$。GQA 的查询仍有 $H$ 个头，$W_Q\in\mathbb R^{C\times HD}$
即 $C\times C$；键和值只有 $H_{kv}$ 个头，

$$
W_K,\;W_V\in\mathbb R^{C\times H_{kv}D},\qquad\text{各 }C\,H_{kv}D=\frac{H_{kv}}{H}C^2\text{ 个参数}
$$

（Llama 式的配置没有偏置）。MHA（$H_{kv}=H$）各是 $C^2$，MQA（$H_{kv}=1$）各是 $CD$，
每层相差 $2(C^2-CD)=2C(C-D)$。

本节的 `gen` 配置：$C=256$，$H=8$，$D=32$，$L=2$ 层。

- MHA：$W_K,W_V$ 各 $256\times256=65{,}536$；
- MQA：各 $256\times32=8{,}192$；
- 每层相差 $2\times(65{,}536-8{,}192)=114{,}688$，两层共 $229{,}376$。

用 `num_parameters()` 核对：MHA 模型 2,094,336 个参数，MQA 模型 1,864,960 个，相差
恰为 229,376；GQA（$H_{kv}=2$）1,897,728 个，比 MHA 少 $2\times2\times(65{,}536-16{,}384)=196{,}608$。
省下的参数只占总量的一成左右，GQA 真正的收益在推理：KV 缓存缩小为 $H_{kv}/H$。
""",
)


answer(
    "4.5.3",
    "路由器饱和时的负载均衡损失",
    r"""
在正文的设置下（$E=8$、$k=2$、512 个随机向量，种子 0）：

1. **损失离 $k$ 更远了一点。** 原来 $L_{\text{aux}}\approx2.006$，权重乘以 100 后约为 2.045。
   把 logits 放大 100 倍不改变谁排第一，所以 $f_i$ 基本不变（只有约 3% 的字第二名
   的概率下溢成 0、在并列中被任意选取，$f_i$ 略有变化）；但 $p$ 几乎变成独热，
   $P_i$ 从接近均匀的 $1/E$ 变成“以专家 $i$ 为第一名的字所占的比例”，与 $f_i$
   正相关，$E\sum_if_iP_i$ 因此变大。随机路由器本来就接近均衡，所以变化不大；
   若路由器已经偏向少数专家，放大后的损失会大得多。
2. **一步梯度下降几乎改变不了 $P_i$。** 梯度只经 $P_i$ 流回路由器，而
   $\partial p/\partial\text{logits}=\operatorname{diag}(p)-pp^\top$ 在 $p$ 接近独热时趋于 0
   （与 4.2 节 softmax 饱和相同）。实测路由器权重的梯度范数从约 0.042 降到约 0.009，
   而权重本身大了 100 倍，相对的更新小了约 500 倍；学习率取 0.1、1 甚至 10，走一步后
   $P_i$ 在小数点后第三位都几乎不动，损失只降了不到 0.001。

结论：负载均衡损失靠**调节路由概率**起作用，路由器一旦饱和，它就失去了抓手。
所以 MoE 的路由器通常用很小的初始化，有的模型还额外加一项惩罚 logits 大小的
“router z-loss”，让路由 logits 一直留在 softmax 不饱和的范围里。
""",
)


def _test_rms_norm(fn: Fn) -> int:
    g = _gen(14)
    cases = [
        (3 * _randn(4, 10, 16, g=g) + 1, 1e-5, "均值不为 0 的输入 [4, 10, 16]（RMSNorm 不减均值）"),
        (_randn(3, 8, g=g, scale=1e-3), 1e-5, "很小的输入：ε 加在根号里面"),
        (torch.zeros(2, 6), 1e-5, "全零的输入：结果应为 0，不能是 nan"),
        (_randn(5, 12, g=g), 0.5, "eps=0.5（要用传入的 eps）"),
        (_randn(7, g=g), 1e-6, "一维输入 [7]"),
    ]
    for x, eps, case in cases:
        C = x.shape[-1]
        w = 0.5 + torch.rand(C, generator=g)
        x64 = x.double()
        want = w.double() * x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + eps)
        _tensor_close(fn(x.clone(), w.clone(), eps), want, case, atol=1e-5)
    return len(cases)


@exercise("4.5.4", "RMSNorm", test=_test_rms_norm)
def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return weight * (x / rms)


# ---------------------------------------------------------------------- 4.6 DPO
answer(
    "4.6.1",
    "β 对最优策略的影响",
    r"""
$\pi^*\propto\pi_{\text{ref}}e^{r/\beta}$。在正文的玩具问题上（6 个回答、种子 0；
$\pi_{\text{ref}}$ 的熵为 1.173 nat），按下面的代码计算：

```python
import torch
g = torch.Generator().manual_seed(0)
ref = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), 0)
r = torch.randn(6, generator=g, dtype=torch.float64)
for beta in [5, 2, 1, 0.5, 0.2, 0.1, 0.05]:
    pi = ref * (r / beta).exp()
    pi /= pi.sum()
    H = -(pi * pi.log()).sum().item()
    KL = (pi * (pi / ref).log()).sum().item()
    print(beta, round(H, 3), round(KL, 3))
```

$\beta$ 从 5 减到 0.05，熵依次约为 1.140、1.091、1.013、0.898、0.736、0.270、0.008，
KL 依次约为 0.004、0.021、0.073、0.229、0.872、1.950、2.347：$\beta$ 越小，$\pi^*$ 越集中、
离参考模型越远。（KL 随 $\beta$ 单调变化；熵在这个例子里也单调，但一般不保证，例如
$\pi_{\text{ref}}$ 本身很尖、而高奖励的回答概率很小时，熵可以先升后降。）

两个极限：

- $\beta\to\infty$：$e^{r/\beta}\to1$，$\pi^*\to\pi_{\text{ref}}$，KL $\to0$——KL 的代价无限大，
  模型一步也不离开参考模型。
- $\beta\to0$：设 $y^*=\arg\max_yr(y)$ 唯一，$\pi^*(y)/\pi^*(y^*)=\frac{\pi_{\text{ref}}(y)}{\pi_{\text{ref}}(y^*)}e^{(r(y)-r(y^*))/\beta}\to0$，
  所以 $\pi^*$ 趋于集中在 $y^*$ 上的点分布（只要 $\pi_{\text{ref}}(y^*)>0$），熵 $\to0$，
  KL $\to-\log\pi_{\text{ref}}(y^*)$（这里 $y^*$ 是第 2 个回答，$\pi_{\text{ref}}(y^*)\approx0.095$，
  极限为 2.358）。这就是纯奖励最大化：把所有概率压到奖励最高的一个回答上。
""",
)


answer(
    "4.6.2",
    "k3 估计的无偏性与非负性",
    r"""
记 $d=\log\pi_{\text{ref}}(y)-\log\pi_\theta(y)$，于是 $e^d=\pi_{\text{ref}}(y)/\pi_\theta(y)$。
对 $y\sim\pi_\theta$ 求期望，逐项计算：

$$
\mathbb E_{\pi_\theta}\bigl[e^d\bigr]=\sum_y\pi_\theta(y)\frac{\pi_{\text{ref}}(y)}{\pi_\theta(y)}=\sum_y\pi_{\text{ref}}(y)=1,
$$

$$
\mathbb E_{\pi_\theta}[-d]=\sum_y\pi_\theta(y)\log\frac{\pi_\theta(y)}{\pi_{\text{ref}}(y)}=\mathrm{KL}(\pi_\theta\|\pi_{\text{ref}}).
$$

（第一式要求 $\pi_{\text{ref}}$ 的支撑包含在 $\pi_\theta$ 的支撑中，对 softmax 输出的模型总成立。）所以

$$
\mathbb E\bigl[e^d-d-1\bigr]=1+\mathrm{KL}-1=\mathrm{KL}(\pi_\theta\|\pi_{\text{ref}}).
$$

**非负性.** 函数 $\varphi(d)=e^d-d-1$ 满足 $\varphi(0)=0$，$\varphi'(d)=e^d-1$ 在 $d<0$ 时为负、
$d>0$ 时为正，所以 $d=0$ 是最小值点，$\varphi(d)\ge0$（等价于 $e^d\ge1+d$，指数函数在
切线之上）。每个样本的估计都非负，这比朴素估计 $-d$ 好：$-d$ 也是无偏的，但单个
样本可以是负数，作为惩罚项会在某些字上“奖励”偏离参考模型，而且方差更大。

**蒙特卡洛检验：**

```python
import torch
from llmbook.training.grpo import k3_kl

g = torch.Generator().manual_seed(0)
logp = torch.log_softmax(torch.randn(10, generator=g, dtype=torch.float64), 0)
ref = torch.log_softmax(torch.randn(10, generator=g, dtype=torch.float64), 0)
exact = (logp.exp() * (logp - ref)).sum()
y = torch.multinomial(logp.exp(), 200_000, replacement=True, generator=g)
est = k3_kl(logp[y], ref[y])
print(exact.item(), est.mean().item(), bool((est >= 0).all()))
```

精确的 KL 约为 0.5737，20 万个样本的平均值约为 0.5739，差别远小于标准误
`est.std() / 200_000**0.5`（约 0.0013）；每个样本的估计都非负。
""",
)


answer(
    "4.6.3",
    "两个回答的概率都下降，DPO 损失却变小",
    r"""
取 $\beta=0.1$，参考模型给两个回答的对数概率都是 $-10$。

- 训练前 $\pi_\theta=\pi_{\text{ref}}$：$\log\pi_\theta(y_w)=\log\pi_\theta(y_l)=-10$，$\Delta=0$，
  损失 $-\log\sigma(0)=\log2\approx0.693$。
- 训练后 $\log\pi_\theta(y_w)=-12$，$\log\pi_\theta(y_l)=-15$：两者都下降了（$y_w$ 的概率
  变成原来的 $e^{-2}\approx0.14$ 倍），但
  $\Delta=(-12+10)-(-15+10)=3$，损失 $-\log\sigma(0.3)=\log(1+e^{-0.3})\approx0.554$，变小了。

DPO 只约束两个对数概率之**差**，$\log\pi(y_w)$ 和 $\log\pi(y_l)$ 一起往下走、只要 $y_l$
降得更快，损失就下降。这在实际训练中很常见（常被称为“似然位移”）：两个回答都被
压低，省出来的概率流向了偏好数据之外的回答。后果是：

1. 模型可能越来越不愿意说出被标为“好”的回答本身，生成的东西可能跑到数据没有覆盖
   的地方（更长、更短或者出现怪异的措辞），偏好准确率和损失看上去都在变好；
2. 训练日志里要同时看 `chosen_reward`（$\beta(\log\pi_\theta(y_w)-\log\pi_{\text{ref}}(y_w))$）
   而不只是 margin：若它持续为负、越来越小，就是这种情况；
3. 常见的缓解办法是在 DPO 损失上加一项 $y_w$ 的负对数似然（SFT 项），或者用更大的
   $\beta$、更小的学习率、更少的轮数，把模型拴得更紧。

6.9 节练习 2 在唐诗模型上可以看到这个现象。
""",
)


def _test_dpo(fn: Fn) -> int:
    from llmbook.training.dpo import dpo_loss

    g = _gen(15)
    rand = [_randn(5, g=g).double() for _ in range(4)]
    cases: list[tuple[list[Tensor], float, str]] = [
        (rand, 0.3, "5 对随机的对数概率，β=0.3"),
        ([torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5)], 0.1, "正文手算的例子（0.6444）"),
        (
            [torch.tensor([-1000.0, 0.0]), torch.tensor([0.0, -1000.0])]
            + [torch.zeros(2), torch.zeros(2)],
            1.0,
            "βΔ = ∓1000：排错那一对的损失约 1000（平均约 500），不能是 inf",
        ),
        (
            [
                torch.tensor([-3.0]),
                torch.tensor([-1.0]),
                torch.tensor([-1.0]),
                torch.tensor([-3.0]),
            ],
            2.0,
            "参考模型的对数概率以相反的符号进入 Δ",
        ),
    ]
    for args, beta, case in cases:
        pol_w, pol_l, ref_w, ref_l = args
        want = dpo_loss(pol_w, pol_l, ref_w, ref_l, beta=beta)[0].item()
        expect_close(_number(fn(*(a.clone() for a in args), beta), case), want, case, tol=1e-6)
    # 梯度：∂L/∂log π(y_w) = -β σ(-βΔ) / N
    pw = rand[0].clone().requires_grad_(True)
    loss = fn(pw, rand[1], rand[2], rand[3], 0.3)
    case = "对 log π(y_w) 求梯度"
    if not isinstance(loss, Tensor) or not loss.requires_grad:
        raise ExerciseFailure(f"{case}：损失应是能反向传播的张量（不要用 .item() 或 math 函数）")
    loss.backward()
    delta = (rand[0] - rand[2]) - (rand[1] - rand[3])
    _tensor_close(pw.grad, -0.3 * torch.sigmoid(-0.3 * delta) / 5, case, atol=1e-8)
    return len(cases) + 1


@exercise("4.6.4", "DPO 损失", test=_test_dpo)
def my_dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    beta: float,
) -> Tensor:
    delta = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return F.softplus(-beta * delta).mean()  # -log σ(z) = softplus(-z)，不会溢出


# ----------------------------------------------------------------------- 4.7 FAQ
