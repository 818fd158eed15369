"""第 3 章的练习：RNN、LSTM 与注意力（参考答案与隐藏的检查）。

编程题的检查都用固定种子的小张量，与 ``llmbook`` 自己的实现（``rnn_cell``、
``lstm_cell``、``attention``……）或 PyTorch 的官方实现逐元素比较。
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect
from llmbook.book.exercises._common import (  # noqa: F401
    Fn,
    _gen,
    _randn,
    _tensor_close,
    _unroll_like_torch,
)

# ------------------------------------------------------------------------ helpers


def _pair(got: Any, case: str) -> tuple[Any, Any]:
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise ExerciseFailure(f"{case}：应返回两个张量组成的元组，你的函数返回了 {got!r:.80}")
    return got[0], got[1]


# ------------------------------------------------------------------ 3.1 principles
def _test_rnn_step(fn: Fn) -> int:
    from llmbook.models.rnn import rnn_cell

    g = _gen(0)
    n = 0
    for B, n_in, H, case in [
        (2, 3, 4, "批大小 2、输入 3 维、隐藏状态 4 维"),
        (3, 4, 4, "输入与隐藏状态同为 4 维（方阵：检查矩阵有没有转置）"),
        (1, 5, 2, "批大小 1"),
    ]:
        x, h = _randn(B, n_in, g=g), _randn(B, H, g=g)
        w_ih, w_hh = _randn(H, n_in, g=g), _randn(H, H, g=g)
        b_ih, b_hh = _randn(H, g=g), _randn(H, g=g)
        want = rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        _tensor_close(fn(x, h, w_ih, w_hh, b_ih, b_hh), want, case)
        n += 1
    # 用同一组权重逐步展开 6 步，应与 torch.nn.RNN 的输出一致
    torch.manual_seed(0)
    _unroll_like_torch(fn, torch.nn.RNN(3, 5, batch_first=True), _randn(2, 6, 3, g=g))
    return n + 1


@exercise("3.1.1", "RNN 的一步", test=_test_rnn_step)
def rnn_step(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> Tensor:
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def _test_lstm_step(fn: Fn) -> int:
    from llmbook.models.rnn import lstm_cell

    g = _gen(1)
    n = 0
    for B, n_in, H, c_scale, case in [
        (2, 3, 4, 1.0, "批大小 2、输入 3 维、隐藏状态 4 维"),
        (1, 2, 3, 1.0, "批大小 1"),
        (2, 4, 4, 5.0, "旧的细胞状态很大（检查 h 用的是 tanh(c_t)）"),
    ]:
        x, h, c = _randn(B, n_in, g=g), _randn(B, H, g=g), _randn(B, H, g=g, scale=c_scale)
        w_ih, w_hh = _randn(4 * H, n_in, g=g), _randn(4 * H, H, g=g)
        b_ih, b_hh = _randn(4 * H, g=g), _randn(4 * H, g=g)
        want_h, want_c = lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
        got_h, got_c = _pair(fn(x, h, c, w_ih, w_hh, b_ih, b_hh), case)
        _tensor_close(got_h, want_h, case + "，新的 h")
        _tensor_close(got_c, want_c, case + "，新的 c")
        n += 1
    torch.manual_seed(1)
    ref = torch.nn.LSTMCell(3, 4)
    xs = _randn(5, 2, 3, g=g)
    with torch.no_grad():
        h, c = torch.zeros(2, 4), torch.zeros(2, 4)
        rh, rc = h.clone(), c.clone()
        for t in range(5):
            rh, rc = ref(xs[t], (rh, rc))
            h, c = _pair(
                fn(xs[t], h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh),
                f"与 torch.nn.LSTMCell 比较，第 {t + 1} 步",
            )
            _tensor_close(h, rh, f"与 torch.nn.LSTMCell 比较，第 {t + 1} 步的 h")
            _tensor_close(c, rc, f"与 torch.nn.LSTMCell 比较，第 {t + 1} 步的 c")
    return n + 1


@exercise("3.1.2", "LSTM 的一步", test=_test_lstm_step)
def lstm_step(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
) -> tuple[Tensor, Tensor]:
    z = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    zi, zf, zg, zo = z.chunk(4, dim=-1)  # PyTorch 的顺序：输入门、遗忘门、候选、输出门
    i, f, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.sigmoid(zo)
    c_new = f * c + i * torch.tanh(zg)
    return o * torch.tanh(c_new), c_new


def _test_causal_attention(fn: Fn) -> int:
    from llmbook.models.attention import attention

    g = _gen(2)
    cases = [
        ((4, 2), (4, 2), "4 个位置、d_k = 2"),
        ((6, 16), (6, 3), "6 个位置、d_k = 16、d_v = 3（检查是否除以 √d_k）"),
        ((1, 4), (1, 4), "只有 1 个位置"),
        ((2, 3, 5, 8), (2, 3, 5, 4), "带批和头两个前导维度 [2, 3, 5, 8]"),
    ]
    n = 0
    for qk_shape, v_shape, case in cases:
        q, k, v = _randn(*qk_shape, g=g), _randn(*qk_shape, g=g), _randn(*v_shape, g=g)
        want_out, want_w = attention(q, k, v, is_causal=True)
        got_out, got_w = _pair(fn(q, k, v), case)
        _tensor_close(got_w, want_w, case + "，注意力权重")
        _tensor_close(got_out, want_out, case + "，输出")
        n += 1
    # 分数很大：softmax 要减去每行的最大值才不会溢出
    q, k, v = _randn(5, 4, g=g, scale=30.0), _randn(5, 4, g=g, scale=30.0), _randn(5, 3, g=g)
    want_out, want_w = attention(q, k, v, is_causal=True)
    got_out, got_w = _pair(fn(q, k, v), "分数达到上千")
    _tensor_close(got_w, want_w, "分数达到上千，注意力权重")
    _tensor_close(got_out, want_out, "分数达到上千，输出")
    return n + 1


@exercise("3.1.3", "带因果掩码的缩放点积注意力", test=_test_causal_attention)
def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    T, d_k = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    allowed = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # torch.softmax 内部会减去每行的最大值
    return weights @ v, weights


answer(
    "3.1.4",
    "RNN 与 LSTM 的参数量",
    r"""
一层 RNN 有输入权重 $W_{ih}\in\mathbb R^{H\times I}$、循环权重 $W_{hh}\in\mathbb R^{H\times H}$
和两个偏置 $b_{ih},b_{hh}\in\mathbb R^{H}$（PyTorch 保留两个偏置，虽然它们总是相加，数学上
一个就够了），所以

$$
N_{\text{RNN}}=HI+H^2+2H=H(I+H+2).
$$

LSTM 的四组运算（输入门 $i$、遗忘门 $f$、候选 $g$、输出门 $o$）结构相同，各有一套
$W_{i\cdot}$、$W_{h\cdot}$ 和两个偏置，PyTorch 把它们沿第 0 维叠成 `weight_ih`
$\in\mathbb R^{4H\times I}$、`weight_hh` $\in\mathbb R^{4H\times H}$，所以
$N_{\text{LSTM}}=4H(I+H+2)$，恰好是 RNN 的 4 倍。

$I=8,H=16$ 时：$N_{\text{RNN}}=16\times(8+16+2)=416$，$N_{\text{LSTM}}=4\times416=1664$。
核对：

```python
import torch
sum(p.numel() for p in torch.nn.RNN(8, 16).parameters())   # 416
sum(p.numel() for p in torch.nn.LSTM(8, 16).parameters())  # 1664
```

每一步的乘加次数也是 4 倍：LSTM 要算四个 $H$ 维的仿射变换，RNN 只算一个。多出的计算
换来的是门控和加法更新的细胞状态。
""",
)


# ---------------------------------------------------------------------- 3.2 steps
def _test_make_windows(fn: Fn) -> int:
    g = _gen(3)
    ids = torch.randint(0, 50, (20,), generator=g)
    n = 0
    for starts, T, case in [
        ([0, 3], 4, "两个窗口，起点 0 和 3，长度 4"),
        ([20 - 5 - 1], 5, "起点取最后一个合法位置 len(ids) - T - 1"),
        ([7], 1, "长度为 1 的窗口"),
        ([2, 2, 9], 6, "起点可以重复"),
    ]:
        want_x = torch.stack([ids[s : s + T] for s in starts])
        want_y = torch.stack([ids[s + 1 : s + T + 1] for s in starts])
        got_x, got_y = _pair(fn(ids.clone(), list(starts), T), case)
        for got, want, name in [(got_x, want_x, "x"), (got_y, want_y, "y")]:
            if not isinstance(got, Tensor) or got.dtype != torch.long:
                raise ExerciseFailure(
                    f"{case}：{name} 应是 torch.long 张量，你的函数返回 {got!r:.80}"
                )
            expect(got.tolist(), want.tolist(), f"{case}，{name}")
        n += 1
    return n


@exercise("3.2.1", "截取训练窗口", test=_test_make_windows)
def make_windows(ids: Tensor, starts: Sequence[int], block_size: int) -> tuple[Tensor, Tensor]:
    offsets = torch.as_tensor(list(starts), dtype=torch.long)[:, None] + torch.arange(
        block_size + 1
    )
    chunk = ids[offsets].long()  # [B, T + 1]
    return chunk[:, :-1], chunk[:, 1:]


def _test_clip(fn: Fn) -> int:
    def reference(grads: list[Tensor], max_norm: float) -> list[Tensor]:
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in grads]
        for p, t in zip(params, grads):
            p.grad = t.clone()
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return [p.grad for p in params if p.grad is not None]

    g = _gen(4)
    cases = [
        ([torch.tensor([3.0]), torch.tensor([4.0])], 1.0, "两个梯度 3 和 4（总范数 5），上限 1"),
        (
            [_randn(3, 2, g=g, scale=0.01), _randn(4, g=g, scale=0.01)],
            1.0,
            "总范数低于上限：原样返回",
        ),
        ([_randn(5, 5, g=g), _randn(5, g=g), _randn(2, 3, 4, g=g)], 0.5, "三个不同形状的梯度"),
        ([_randn(7, g=g, scale=100.0)], 2.0, "只有一个很大的梯度"),
    ]
    for grads, max_norm, case in cases:
        want = reference(grads, max_norm)
        got = fn([t.clone() for t in grads], max_norm)
        if not isinstance(got, list | tuple) or len(got) != len(want):
            raise ExerciseFailure(
                f"{case}：应返回 {len(want)} 个张量的列表，你的函数返回 {got!r:.80}"
            )
        for j, (a, b) in enumerate(zip(got, want)):
            _tensor_close(a, b, f"{case}，第 {j + 1} 个梯度", atol=1e-5, rtol=1e-4)
    return len(cases)


@exercise("3.2.2", "按全局范数裁剪梯度", test=_test_clip)
def clip_by_global_norm(grads: Sequence[Tensor], max_norm: float) -> list[Tensor]:
    total = math.sqrt(sum(float((t.double() ** 2).sum()) for t in grads))  # 合起来的范数
    scale = min(1.0, max_norm / (total + 1e-6))
    return [t * scale for t in grads]


answer(
    "3.2.3",
    "字级 LSTM 语言模型的参数",
    r"""
记词表大小为 $V$，嵌入维数 $E=128$，隐藏状态 $H=128$。三部分分别是：

- 嵌入层：一张 $V\times E$ 的表，$128V$ 个参数；
- LSTM 层：由练习 3.1.4，$4H(E+H+2)=4\times128\times258=132{,}096$；
- 输出层：`nn.Linear(H, V)`，权重 $H\times V$ 加偏置 $V$，共 $129V$。

合计

$$
N=128V+132{,}096+129V=257V+132{,}096 .
$$

本书的字级词表约 $V\approx6{,}700$（4.1 节核对过它在六千到七千之间），
于是嵌入层和输出层合计约 $257\times6{,}700\approx172$ 万个参数，LSTM 层只有约 13 万，
不到总数的 8%。原因是 $V\gg H$：输入端和输出端每个字各有一个 128 维的向量，
而“读句子”的 LSTM 层的参数只与 $H$ 有关、与词表大小无关。用
`count_parameters(lstm.embed)`、`count_parameters(lstm.rnn)`、`count_parameters(lstm.head)`
可以逐项核对。这也说明了为什么第 5 章的 GPT 让输入嵌入与输出层共享权重
（4.7 节）：能省下 $VH$ 个参数，在小模型上占比很大。
""",
)


answer(
    "3.2.4",
    "为什么用 safetensors 和 SHA-256",
    r"""
`torch.save` 默认用 Python 的 pickle 序列化，而 pickle 文件在加载时可以执行任意代码：
从网上下载一个 `.pt` 文件并 `torch.load`，等于运行了一段陌生人写的程序。safetensors
只存一个 JSON 头（张量的名字、形状、数据类型、偏移量）和连续的原始字节，加载时只是按头
读出数字，**没有可执行的部分**，所以可以放心加载别人的权重；它还能按需映射（mmap）
单个张量，加载大模型更快、更省内存。

SHA-256 校验和防的是另一类问题：文件**在存储或传输中被改动**——下载不完整、磁盘损坏、
同一目录里权重和配置来自不同的两次训练、有人替换了其中一个文件。加载前重新计算每个文件
的 SHA-256、与保存时记录的值比较，任何一个字节不同都会被发现，模型就不会“悄悄地”
用错误的权重跑下去。它不防恶意的作者（作者可以连同校验和一起改），只保证
“加载的就是当初保存的那一份”；配置和分词器存成 JSON 也出于同样的考虑：
可读、可比较、不含代码。
""",
)


answer(
    "3.2.5",
    "初始损失偏离 ln|V| 说明什么",
    r"""
**远小于 $\ln|V|$**：未训练的模型不可能真的会预测，损失低说明答案漏进了输入。最常见的是
目标没有右移：写成 `y = ids[s:s + T]`（与 `x` 相同），模型只要“抄当前字”就能把损失
压得很低；Transformer 里忘了因果掩码也一样，每个位置都能看到自己要预测的下一个字。

**远大于 $\ln|V|$**：模型一开始就很“自信”地押错。例如输出层权重初始化得太大（用了
标准差 1 的正态分布，$d=128$ 时 logits 的标准差约 $\sqrt{128}\approx11$），或者在
输出层之前多乘了一个很大的常数（例如把嵌入层的 $\sqrt{d}$ 缩放误用在了输出端）。
""",
)


answer(
    "3.2.6",
    "教师强制为什么能并行",
    r"""
教师强制下，第 $t$ 个位置的输入是**已知的**真实字 $x_t$，所以整段窗口的输入在训练
开始前就全部确定了：Transformer 可以用一次带因果掩码的矩阵乘法算出所有位置；RNN
虽然仍要按时间递推，但每一步的输入不依赖上一步的预测，也不必在每一步做采样或
argmax。自由生成时，第 $t+1$ 步的输入是第 $t$ 步的**输出**，必须等第 $t$ 步算完、
取出预测的字才能开始，只能一步一步地串行进行（而且取 argmax 或采样不可导）。

计划采样（scheduled sampling）以一定概率把真实字换成模型自己的预测，因此失去了
“整段输入事先已知”这个性质：要么按时间串行地跑模型，要么先用教师强制跑一遍取预测、
再拿混合后的输入跑第二遍（近似做法），训练更慢；被替换位置的梯度也不经过采样这一步，
是一种有偏的近似。
""",
)


# ------------------------------------------------------------------- 3.3 tradeoffs
def _causal_maps(B: int, H: int, T: int, g: torch.Generator, scale: float = 1.0) -> Tensor:
    scores = _randn(B, H, T, T, g=g, scale=scale)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(-1)


def _test_head_shares(fn: Fn) -> int:
    g = _gen(5)
    A1 = _causal_maps(3, 4, 6, g)
    A2 = _causal_maps(2, 2, 2, g, scale=3.0)
    A3 = _causal_maps(5, 3, 10, g, scale=2.0)
    # 一个手工构造的例子：头 0 只看前一个字，头 1 只看 <bos>
    A4 = torch.zeros(1, 2, 4, 4)
    A4[0, 0, 0, 0] = 1.0
    A4[0, 0, torch.arange(1, 4), torch.arange(0, 3)] = 1.0
    A4[0, 1, :, 0] = 1.0
    cases = [
        (A1, "批 3、头 4、长度 6 的随机因果注意力"),
        (A2, "长度只有 2"),
        (A3, "批 5、头 3、长度 10"),
        (A4, "头 0 只看前一个字、头 1 只看 <bos>（两者的答案都应是 1.0 与 1.0）"),
    ]
    for A, case in cases:
        T = A.shape[-1]
        q = torch.arange(1, T)
        want_prev = A[:, :, q, q - 1].mean(dim=(0, 2))
        want_bos = A[:, :, 1:, 0].mean(dim=(0, 2))
        got_prev, got_bos = _pair(fn(A.clone()), case)
        _tensor_close(got_prev, want_prev, case + "，前一个字的份额")
        _tensor_close(got_bos, want_bos, case + "，<bos> 的份额")
    return len(cases)


@exercise("3.3.1", "注意力头的画像", test=_test_head_shares)
def head_shares(A: Tensor) -> tuple[Tensor, Tensor]:
    T = A.shape[-1]
    q = torch.arange(1, T)  # 查询位置 1..T-1：位置 0 只能看自己，不计入
    prev = A[:, :, q, q - 1].mean(dim=(0, 2))
    bos = A[:, :, 1:, 0].mean(dim=(0, 2))
    return prev, bos


answer(
    "3.3.2",
    "Transformer 的参数何时比 LSTM 少",
    r"""
LSTM 语言模型由练习 3.2.3 得 $N_{\text{LSTM}}=257V+132{,}096$。

Transformer（$d=128$，$d_{ff}=4d=512$，2 层，`block_size` 64，可学习位置向量，输入
嵌入与输出层共享权重）按 4.1 节的公式：每层注意力 $4d^2+4d=66{,}048$，前馈网络
$2d\,d_{ff}+d_{ff}+d=131{,}712$，两个层归一化 $4d=512$，一层共 $198{,}272$；两层
$396{,}544$；再加位置向量 $64\times128=8{,}192$、最后的层归一化 $2d=256$ 和嵌入 $128V$：

$$
N_{\text{TF}}=128V+404{,}992 .
$$

令 $N_{\text{TF}}<N_{\text{LSTM}}$：

$$
128V+404{,}992<257V+132{,}096\iff129V>272{,}896\iff V>2115.5 .
$$

所以词表超过 2,115 个符号时 Transformer 的参数更少。本书的字级词表有六千多个符号，
远在这条线之上；但若换成只有几百个符号的任务（例如 3.1 节的回忆任务），
同样宽度的 Transformer 参数反而更多。差别的来源是 $V$ 前的系数：LSTM 模型的嵌入层
和输出层各有一份 $V\times128$，Transformer 共享成一份（少 $128V$），输出层也没有偏置
（再少 $V$）。可以用 `count_parameters(TransformerLM(TransformerLMConfig(vocab_size=V,
block_size=64, d_model=128, n_heads=4, n_layers=2)))` 核对：$V=1000$ 时为 532,992，
比 LSTM 的 389,096 还多。
""",
)


answer(
    "3.3.3",
    "每生成一个字要算多少",
    r"""
只数矩阵乘法的乘加次数（每层，忽略偏置、归一化和激活函数）。

**RNN / LSTM.** 每生成一个字，状态只前进一步：RNN 算 $W_{ih}x_t+W_{hh}h_{t-1}$，
约 $H(I+H)$ 次乘加；LSTM 四组门，约 $4H(I+H)$。与已经生成了多少字**无关**，要保存的
也只有 $h_t$（LSTM 再加 $c_t$），共 $H$ 或 $2H$ 个数。

**Transformer（有 KV 缓存）.** 第 $t$ 个字要：

1. 算自己的 $q,k,v$ 和输出投影：$4d^2$；
2. 与缓存里 $t$ 个键做点积、再对 $t$ 个值加权求和：约 $2td$；
3. 前馈网络：$2d\,d_{ff}=8d^2$（$d_{ff}=4d$ 时）。

合计约 $12d^2+2td$，随上文长度 $t$ **线性增长**；缓存要存每层 $2td$ 个数。
生成 $T$ 个字的总量是 $12d^2T+dT^2$，注意力部分随长度平方增长。

**Transformer（没有缓存）.** 每生成一个字都把整段前文重算一遍，第 $t$ 个字约
$12d^2t+dt^2$，生成 $T$ 个字的总量按 $T^3$ 增长——这就是生成时一定要用 KV 缓存的原因。

$d=128$ 时 $12d^2\approx19.7$ 万，而 $2td=256t$ 要到 $t=768$ 才与它相当：在本书 64 字的
窗口里，注意力部分最多只占 $2\times64\times128/(12\times128^2)\approx8\%$，“随上文长度
增长”的代价要到长上下文才明显。
""",
)


# ---------------------------------------------------------------- 3.4 applications
def _test_pool(fn: Fn) -> int:
    g = _gen(6)
    B, T, C = 3, 5, 4
    lengths = torch.tensor([5, 2, 1])
    h = _randn(B, T, C, g=g)
    pad = torch.arange(T)[None, :] >= lengths[:, None]
    h = h.masked_fill(pad[..., None], 1000.0)  # 填充位置放上很大的数，用到它们就会出错
    want_last = h[torch.arange(B), lengths - 1]
    keep = (~pad).float()[..., None]
    want_mean = (h * keep).sum(1) / keep.sum(1)
    _tensor_close(fn(h.clone(), lengths.clone(), "last"), want_last, "how='last'，长度 [5, 2, 1]")
    _tensor_close(fn(h.clone(), lengths.clone(), "mean"), want_mean, "how='mean'，长度 [5, 2, 1]")
    h2 = _randn(2, 3, 6, g=g)
    full = torch.tensor([3, 3])
    _tensor_close(fn(h2, full, "last"), h2[:, -1], "没有填充时 how='last'")
    _tensor_close(fn(h2, full, "mean"), h2.mean(1), "没有填充时 how='mean'")
    return 4


@exercise("3.4.1", "分类用的句子表示", test=_test_pool)
def pool(h: Tensor, lengths: Tensor, how: str) -> Tensor:
    B, T, _ = h.shape
    if how == "last":
        return h[torch.arange(B), lengths - 1]
    if how == "mean":
        keep = (torch.arange(T)[None, :] < lengths[:, None]).to(h.dtype)[..., None]
        return (h * keep).sum(1) / keep.sum(1)
    raise ValueError(f"how must be 'last' or 'mean', got {how!r}")


answer(
    "3.4.2",
    "流式识别为什么偏爱 RNN",
    r"""
设模型每层的状态宽度为 $d$，已经处理了 $t$ 帧（或 $t$ 个字），共 $L$ 层。

- **RNN/LSTM**：每层只需保存 $h_t$（LSTM 再加 $c_t$），内存是 $Ld$ 或 $2Ld$ 个数，
  与 $t$ 无关；每来一帧的计算也是常数（练习 3.3.3）。
- **Transformer**：要保留所有历史位置的键和值，KV 缓存是 $2Ltd$ 个数，随时间**线性
  增长**；每来一帧要和全部 $t$ 个键做点积，计算量也随 $t$ 线性增长。

以 $L=4,d=256$、每秒 100 帧的语音为例：LSTM 的状态只有 $2\times4\times256=2{,}048$
个数，一直不变；Transformer 听一分钟（$t=6{,}000$）后缓存有
$2\times4\times6{,}000\times256\approx1{,}229$ 万个数，用 float16 约 23 MiB，
而且还在增长。设备端（手机、耳机、传感器）的内存和功耗都很紧，输入又是没有尽头的
流，恒定的内存和恒定的每步计算就成了决定性的优点。实践中的 Transformer 流式模型要么
只看一个有限的滑动窗口（丢掉更早的键值），要么分块处理，本质上都是在向“固定大小的
状态”靠拢。代价是 RNN 把历史压缩进固定大小的状态，长距离依赖学得不如注意力好
（3.1 节的回忆实验）。
""",
)


answer(
    "3.4.3",
    "编码器—解码器里的两种掩码",
    r"""
解码器里有两种注意力，掩码的目的不同：

1. **解码器自注意力**用**因果掩码**（加上目标端的填充掩码）。训练时整个目标序列是一次
   送进去的（教师强制），第 $t$ 个位置若能看到 $t$ 之后的目标字，就等于偷看答案；
   生成时这些字还不存在。因果掩码让训练时的每个位置看到的信息与生成时完全一样。
2. **交叉注意力**（查询来自解码器、键和值来自编码器）**不用因果掩码**，只用源序列的
   **填充掩码**。源序列在生成开始前就完整给出了，解码器的每一步都可以、也应该看整句
   源文——把“行”读成 hang2 还是 xing2 可能取决于它后面的字。但成批处理时短句子后面
   补的 `<pad>` 不是真实内容，要屏蔽掉，否则输出会随批里别的句子的长度而变化。

同理，编码器的自注意力也只用填充掩码、不用因果掩码：编码器的任务是理解整句源文，
每个字都可以看左右两边。形状上，交叉注意力的分数是 $[T_{\text{tgt}},T_{\text{src}}]$，
填充掩码形如 `[B, 1, 1, T_src]`（`padding_mask` 的输出），对所有头和所有查询位置广播。
""",
)
