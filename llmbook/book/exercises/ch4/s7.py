"""Exercises of sections 4.7 (chapter 4)."""

from __future__ import annotations

from llmbook.book.exercises import answer

answer(
    "4.7.1",
    "log-sum-exp 技巧",
    r"""
**恒等式.** 对任意常数 $c$，

$$
\log\sum_ue^{z_u}=\log\Bigl(e^{c}\sum_ue^{z_u-c}\Bigr)=c+\log\sum_ue^{z_u-c}.
$$

**取 $c=m=\max_uz_u$.** 每一项 $z_u-m\le0$，所以 $0<e^{z_u-m}\le1$，**不会上溢**；而取到
最大值的那一项恰为 $e^0=1$，所以和 $\sum_ue^{z_u-m}\ge1$，对数的参数不会因为所有项
都下溢成 0 而变成 $\log0=-\infty$。直接计算时，$z_u$ 只要超过约 88（单精度）或 709
（双精度），$e^{z_u}$ 就溢出成 inf；全都很负时又会全部下溢成 0。

**上下界.** 由 $1\le\sum_ue^{z_u-m}\le|V|$（每项不超过 1，共 $|V|$ 项），

$$
m\le\operatorname{LSE}(\mathbf z)\le m+\log|V| .
$$

所以 log-sum-exp 是最大值的“光滑版本”，与最大值最多差 $\log|V|$（六千多个字的词表
约 8.8）。交叉熵 $-z_y+\operatorname{LSE}(\mathbf z)$ 由此可以稳定地算出：PyTorch 的
`log_softmax`、`cross_entropy` 内部都这样做，这也是为什么应当把 logits 直接交给
`F.cross_entropy`，而不是先算 softmax 再取对数。
""",
)


answer(
    "4.7.2",
    "Adam 的步长与偏差修正",
    r"""
以下忽略 $\epsilon$，运算逐元素。

**(a) 第一步.** $m_0=s_0=0$，所以 $m_1=(1-\beta_1)g_1$，$s_1=(1-\beta_2)g_1^2$，
偏差修正后 $\hat m_1=g_1$，$\hat s_1=g_1^2$，位移

$$
\eta\frac{\hat m_1}{\sqrt{\hat s_1}}=\eta\frac{g_1}{|g_1|}=\eta\operatorname{sign}(g_1),
$$

与梯度的大小无关。

**(b) 常数梯度.** 若每步都是 $g$，归纳可得
$m_k=(1-\beta_1)g\sum_{j=0}^{k-1}\beta_1^j=(1-\beta_1^k)g$，同理 $s_k=(1-\beta_2^k)g^2$，所以
$\hat m_k=g$、$\hat s_k=g^2$，每一步都移动 $\eta\operatorname{sign}(g)$。偏差修正恰好抵消了
“从 0 开始的滑动平均偏小”这件事。

**(c) 不做偏差修正.** 第一步的位移是

$$
\eta\frac{(1-\beta_1)|g|}{\sqrt{1-\beta_2}\,|g|}=\eta\frac{0.1}{\sqrt{0.001}}\approx3.16\,\eta .
$$

常数梯度下第 $k$ 步的位移是 $\eta(1-\beta_1^k)/\sqrt{1-\beta_2^k}$：$k=10$ 时约 $6.5\eta$，在
$k\approx12$ 附近达到最大约 $6.6\eta$，$k=100$ 时仍有 $3.2\eta$，要到几千步后才接近 $\eta$。
因为 $\beta_2=0.999$ 的二阶矩滑动平均起步慢得多，分母偏小，训练最初的几百步步长被放大
好几倍——恰恰是梯度最不可靠的时候。这正是偏差修正（以及学习率预热）要避免的。
""",
)


answer(
    "4.7.3",
    "共享权重时嵌入矩阵的梯度",
    r"""
设一批里的位置为 $t=1,\dots,N$，最后一层的表示为 $h_t$，输出 $z_{t,v}=E[v]\cdot h_t$，
平均损失 $\mathcal L=\frac1N\sum_tH_t$。$E[v]$ 在两处出现。

**输出端.** 由 4.2 节 $\partial H_t/\partial z_{t,v}=p_{t,v}-y_{t,v}$ 和 $\partial z_{t,v}/\partial E[v]=h_t$，

$$
\frac{\partial\mathcal L}{\partial E[v]}\Big|_{\text{输出}}=\frac1N\sum_t\bigl(p_{t,v}-y_{t,v}\bigr)h_t .
$$

**输入端.** 只有输入里出现了字 $v$ 的位置才有贡献：
$\frac1N\sum_{t:\,x_t=v}\partial\mathcal L/\partial h^{(0)}_t$。

**没出现的字.** 若字 $v$ 既不在输入里也不是任何位置的答案，$y_{t,v}=0$、输入端为 0，
剩下

$$
\frac{\partial\mathcal L}{\partial E[v]}=\frac1N\sum_tp_{t,v}\,h_t\neq0 ,
$$

所以它的嵌入照样被更新：方向是把 $E[v]$ 推离这批位置的表示（降低它的分数）。
但权重 $p_{t,v}$ 是模型给这个字的概率，对罕见字很小（初始化时约 $1/|V|$，训练后更小），
而出现了的字有 $-(1-p)\,h_t$ 这样量级为 1 的项，所以没出现的字的梯度小得多——
这就是 4.2 节测到的“中位数只有几分之一”。不共享权重时，输入嵌入里没出现的字的梯度
严格为 0，只有输出层那一行会动。

共享权重让同一个向量同时服务于“读”和“写”：输出端的梯度对每个字都有，
罕见字的嵌入因此也能得到一点训练信号；代价是两种角色必须兼容，大模型里有时
会选择不共享。
""",
)
