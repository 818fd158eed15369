"""3.1 节 GRU 部分的练习：一步 GRU 更新、它的参数量与退化情形、遗忘门偏置的实验。

编程题与 ``llmbook.models.rnn.gru_cell`` 逐元素比较，并用 ``torch.nn.GRU`` 的权重逐步
展开几步，与它的输出比较。
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmbook.book.exercises import answer, exercise
from llmbook.book.exercises._common import Fn, _gen, _randn, _tensor_close, _unroll_like_torch


def _test_gru_step(fn: Fn) -> int:
    from llmbook.models.rnn import gru_cell

    g = _gen(30)
    n = 0
    for B, n_in, H, case in [
        (2, 3, 4, "批大小 2、输入 3 维、隐藏状态 4 维"),
        (3, 4, 4, "输入与隐藏状态同为 4 维（方阵：检查矩阵有没有转置）"),
        (1, 5, 2, "批大小 1"),
    ]:
        x, h = _randn(B, n_in, g=g), _randn(B, H, g=g)
        w_ih, w_hh = _randn(3 * H, n_in, g=g), _randn(3 * H, H, g=g)
        b_ih, b_hh = _randn(3 * H, g=g), _randn(3 * H, g=g, scale=2.0)
        want = gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        _tensor_close(
            fn(x, h, w_ih, w_hh, b_ih, b_hh),
            want,
            case + "（提示：三块的顺序是 r、z、n；重置门乘在 W_hn h + b_hn 整体上）",
        )
        n += 1
    # 用 torch.nn.GRU 的权重逐步展开 5 步，应与它的输出一致
    torch.manual_seed(3)
    _unroll_like_torch(fn, torch.nn.GRU(3, 4, batch_first=True), _randn(2, 5, 3, g=g))
    return n + 1


@exercise("3.1.5", "GRU 的一步", test=_test_gru_step)
def gru_step(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> Tensor:
    xr, xz, xn = (x @ w_ih.T + b_ih).chunk(3, dim=-1)  # PyTorch 的顺序：重置门、更新门、候选
    hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


answer(
    "3.1.6",
    "GRU 的参数量与两种退化情形",
    r"""
**参数量.** 一层 GRU 有三组“输入矩阵 + 循环矩阵 + 两个偏置”（重置门 $r$、更新门 $z$、
候选 $n$），每组 $HI+H^2+2H$ 个参数，共

$$
N_{\text{GRU}}=3\,(HI+H^2+2H),
$$

恰好是 RNN（一组）的 3 倍、LSTM（四组）的 $3/4$。$I=16,H=64$（本节回忆实验的模型）
时 RNN 为 $64\times16+64^2+128=5{,}248$，GRU 为 $15{,}744$，LSTM 为 $20{,}992$，与页面上
`count_parameters` 的结果一致；$I=8,H=16$ 时分别是 $416$、$1{,}248$、$1{,}664$。

**$z_t\equiv0$、$r_t\equiv1$.** 更新式变成 $h_t=n_t=\tanh(W_{in}x_t+b_{in}+W_{hn}h_{t-1}+b_{hn})$，
正是普通 RNN 的公式：GRU 包含 RNN 作为特例，门让它**可以**不做 RNN 做的事。

**$z_t\equiv1$.** $h_t=h_{t-1}$：状态原样复制，输入完全被忽略，对 $h_{t-1}$ 的雅可比矩阵
是单位阵，梯度穿过多少步都不衰减。真实的网络介于两者之间：$z_t$ 接近 1 的那些维度
像 LSTM 的细胞状态一样长时间保存信息，$z_t$ 接近 0 的维度则快速跟随新输入。

**$r_t\equiv0$.** 候选 $n_t=\tanh(W_{in}x_t+b_{in})$ 只看当前输入（在 PyTorch 的写法里
连 $b_{hn}$ 也被乘掉）：重置门让网络在需要时“另起炉灶”，例如一句话结束、新的一句开始。
""",
)


answer(
    "3.1.7",
    "遗忘门偏置能把 LSTM 推多远",
    r"""
参考做法：在回忆实验的循环里为 LSTM 建模型时加上 `forget_bias=...`：

```python
RNNLMConfig(vocab_size=recall_vocab_size(), block_size=d + 2, cell="lstm",
            n_embd=16, hidden_size=64, forget_bias=3.0)
```

训练刚开始时输入和状态带来的那部分很小，遗忘门约为 $\sigma(b)$：偏置 0 时
$\sigma(0)=0.5$，每一步丢掉一半记忆，钥匙在 $d$ 步后只剩 $0.5^d$（$d=16$ 时约
$1.5\times10^{-5}$）；偏置 1 时 $\sigma(1)\approx0.73$，剩 $0.73^d$（$d=16$ 时约
$0.007$）；偏置 3 时 $\sigma(3)\approx0.95$，剩 $0.95^d$（$d=16$ 时约 $0.46$，
$d=64$ 时约 $0.04$）。梯度沿细胞状态往回传时也按同样的比例衰减，所以偏置越大，
训练一开始就有越多的信号告诉网络“钥匙有用”。

在本书的机器上做这个实验（300 步、种子 0）：偏置 0 时三个距离都停在瞎猜附近；
偏置 1 就是本节图中的 LSTM；偏置 2 学会了 $d=16$；偏置 3 学会了 $d=16$ 和 $32$，$d=64$ 仍没有学会（你的数字可能
因 PyTorch 版本和线程数略有不同）。可见更大的遗忘门偏置确实把 LSTM 推得更远，
但在这点训练预算下仍不如 GRU。另一个差别在于 GRU 的更新门把“保留多少”和“写入多少”
绑在一起（$z$ 与 $1-z$），学会一个门就同时做到了“记住钥匙”和“挡住干扰符号”；LSTM
要让遗忘门、输入门和输出门各自学对。结论不要外推：一个任务、一种学习率上的胜负，
不能说明哪种结构普遍更好——这正是 Chung 等人（2014）和 Jozefowicz 等人（2015）
做大范围比较的原因。
""",
)
