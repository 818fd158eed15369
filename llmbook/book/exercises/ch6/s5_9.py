"""Exercises of sections 6.5, 6.6, 6.7, 6.8, 6.9 (chapter 6)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises.ch6._helpers import Fn, _pair, _tensor

answer(
    "6.5.1",
    "延迟预算允许多大的模型",
    r"""
**只看计算。** 每个词元约 $2N$ 次浮点运算，20 毫秒内能做 $0.02\times5\times10^{10}=10^9$ 次，所以 $2N\le10^9$，$N\le5\times10^8$，约 5 亿参数。

**只看内存带宽。** 批大小为 1 时，每生成一个词元都要把全部权重从内存读一遍。fp32 每个参数 4 字节，20 毫秒内能读 $0.02\times2\times10^{10}=4\times10^8$ 字节，所以 $4N\le4\times10^8$，$N\le10^8$，约 1 亿参数。

**真正的限制**是两者中较小的那个：带宽。这时计算单元有八成时间在等数据。两个改进方向都来自这个判断：

- 把权重量化成 int8，每个参数 1 字节，带宽允许的上限升到 4 亿；4 位量化再翻一倍——这正是量化能加速大模型推理的原因（6.6 节）；
- 把多个请求凑成一批，一次读权重为 $B$ 个序列各算一个词元，带宽的代价被分摊，直到计算量成为瓶颈（6.10 节的连续批处理）。

反过来，对 6.5 节那个只有几十万参数、整个放得进缓存的小模型，内存带宽不是瓶颈，量化也就不会让它变快。
""",
)


def _test_pareto(fn: Fn) -> int:
    cases: list[tuple[dict[str, tuple[float, float, float]], list[str]]] = [
        (
            {
                "TF-IDF": (1.2e5, 0.90, 0.05),
                "GPT": (6.5e5, 0.88, 2.0),
                "GPT-int8": (6.5e5, 0.88, 2.1),
            },
            ["TF-IDF"],
        ),
        ({"A": (10, 0.80, 1.0), "B": (100, 0.90, 5.0), "C": (100, 0.85, 6.0)}, ["A", "B"]),
        ({"D": (1000, 0.95, 0.5), "E": (10, 0.95, 0.5)}, ["E"]),
        ({"X": (5, 0.7, 1.0), "Y": (5, 0.7, 1.0)}, ["X", "Y"]),
        ({"only": (1, 0.5, 1.0)}, ["only"]),
        (
            {
                "small": (1e6, 0.80, 3.0),
                "big": (1e9, 0.92, 40.0),
                "mid": (1e9, 0.90, 50.0),
                "fast": (1e7, 0.78, 1.0),
            },
            ["big", "fast", "small"],
        ),
        ({"P": (10, 0.9, 2.0), "Q": (20, 0.9, 1.0), "R": (10, 0.8, 1.0)}, ["P", "Q", "R"]),
    ]
    for models, want in cases:
        case = f"models={models}"
        got = fn(dict(models))
        if isinstance(got, str) or not hasattr(got, "__iter__"):
            raise ExerciseFailure(f"{case}：应返回模型名字的列表，你的函数返回 {got!r}")
        expect(sorted(got), want, case)
    return len(cases)


@exercise("6.5.2", "效果、大小与延迟的帕累托前沿", test=_test_pareto)
def pareto_front(models: Mapping[str, tuple[float, float, float]]) -> list[str]:
    def dominates(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
        no_worse = a[0] <= b[0] and a[1] >= b[1] and a[2] <= b[2]
        return no_worse and a != b

    return sorted(
        n
        for n, p in models.items()
        if not any(dominates(q, p) for m, q in models.items() if m != n)
    )


answer(
    "6.5.3",
    "先做什么基线，何时换大模型",
    r"""
按本节的三条建议：先做便宜的基线，再看任务有多依赖“理解”，最后在延迟和成本的约束内选模型。

- **(a) 工单分到 12 个部门**：典型的文本分类，部门往往由关键词决定（“退款”“发票”“登录”）。先做 TF-IDF 加逻辑回归，用交叉验证看准确率和混淆最多的几个部门。只有当错误集中在需要读懂整段描述才能区分的类别上、而且有足够的标注数据时，才值得换成微调的预训练模型。
- **(b) 从合同里抽甲乙双方名称与金额**：先试规则（正则表达式匹配“甲方：”“人民币……元”）加一个小的序列标注模型；合同格式统一时规则就够了。格式五花八门、要理解上下文（例如“以下简称乙方”）时，再考虑更大的模型，并且必须逐字段核对，因为金额抽错的代价很高。
- **(c) 把口语问题改写成 SQL**：这是开放式的结构化生成，要理解问题、记住表结构、写出语法正确的查询，关键词方法做不到，是大模型真正拉开差距的任务。基线可以是“模板加槽位填充”覆盖最常见的几类问题；评估要执行生成的 SQL、比较结果，而不是比较字面。
- **(d) 50 字营销文案**：开放式写作，没有唯一答案，小模型和传统方法很难写得通顺又切题，适合直接用生成模型。此时重点转到评估（人工打分或成对比较）和成本：一条文案的延迟预算通常宽松，可以用较大的模型；量很大时再考虑蒸馏到小模型。

共同的一点：每一步都要在**同一个留出集**上比较，只有大模型的提升超过了它多出来的延迟和成本，才换。
""",
)

# --------------------------------------------------------------------------- 6.6


def _test_quant(fn: Fn) -> int:
    import torch

    from llmbook.models.quant import quantize_weight_int8

    g = torch.Generator().manual_seed(0)
    cases = [
        torch.tensor([[0.5, -1.27, 0.0], [0.0, 0.0, 0.0]]),
        torch.randn(4, 6, generator=g) * torch.tensor([[1.0], [100.0], [0.01], [3.0]]),
        torch.tensor([[-2.0]]),
        torch.tensor([[0.01, 0.02, 5.0], [0.3, -0.2, 0.1]]),
        torch.randn(8, 16, generator=g),
    ]
    for w in cases:
        want_q, want_s = quantize_weight_int8(w)
        case = f"W 的形状 {tuple(w.shape)}，第一行 {[round(x, 4) for x in w[0].tolist()]}"
        q, s = _pair(fn(w.clone()), case)
        q = _tensor(q, case)
        s = _tensor(s, case, torch.float32).reshape(-1)
        expect(tuple(s.shape), (w.size(0),), case + "（每行一个缩放系数）")
        if not torch.allclose(s, want_s, rtol=1e-5, atol=0):
            raise ExerciseFailure(
                f"{case}：缩放系数应为 {want_s.tolist()}，你的函数给出 {s.tolist()}"
            )
        expect(tuple(q.shape), tuple(w.shape), case + "（整数矩阵的形状）")
        if not torch.equal(q.to(torch.int64), want_q.to(torch.int64)):
            raise ExerciseFailure(
                f"{case}：整数矩阵应为 {want_q.tolist()}，你的函数给出 {q.tolist()}"
            )
    return len(cases)


@exercise("6.6.1", "按行对称的 int8 量化", test=_test_quant)
def quantize_rows(w: Any) -> tuple[Any, Any]:
    import torch

    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def _test_kv_bytes(fn: Fn) -> int:
    import torch

    from llmbook.models.gpt import GPTConfig
    from llmbook.models.kv_cache import KVCache

    cases: list[tuple[dict[str, Any], int, int, int, Any]] = [
        (dict(n_layer=4, n_head=4, n_embd=128, block_size=80), 1, 80, 4, torch.float32),
        (dict(n_layer=4, n_head=4, n_embd=128, block_size=80), 64, 80, 4, torch.float32),
        (
            dict(n_layer=4, n_head=4, n_embd=128, block_size=80, n_kv_head=2),
            1,
            40,
            4,
            torch.float32,
        ),
        (dict(n_layer=2, n_head=8, n_embd=64, block_size=32, n_kv_head=1), 3, 32, 4, torch.float32),
        (dict(n_layer=3, n_head=6, n_embd=48, block_size=16, n_kv_head=3), 2, 10, 2, torch.float16),
    ]
    for kw, batch, length, nbytes, dtype in cases:
        cfg = GPTConfig(vocab_size=11, **kw)
        want = KVCache(cfg, batch, max_len=length, dtype=dtype).nbytes
        case = f"GPTConfig({kw})，batch_size={batch}，seq_len={length}，bytes_per_value={nbytes}"
        expect(fn(cfg, batch, length, nbytes), want, case)
    return len(cases)


@exercise("6.6.2", "KV 缓存有多大", test=_test_kv_bytes)
def kv_cache_bytes(config: Any, batch_size: int, seq_len: int, bytes_per_value: int = 4) -> int:
    kv_heads = config.n_head if config.n_kv_head is None else config.n_kv_head
    head_dim = config.n_embd // config.n_head
    return 2 * config.n_layer * batch_size * seq_len * kv_heads * head_dim * bytes_per_value


answer(
    "6.6.3",
    "大模型的权重与 KV 缓存",
    r"""
**(a) 权重。** $7\times10^9\times2$ 字节 $=1.4\times10^{10}$ 字节，约 14 GB（13 GiB）。

**(b) KV 缓存。** 每层每个位置存一个键、一个值，各 $H\cdot D=4096$ 个数：

$$2\times32\times4096\times4096\times2\ \text{字节}=2^{31}\ \text{字节}=2\ \text{GiB}$$

（批大小 1、上下文 4096）。批大小 16 时是 32 GiB，已经是权重的两倍多；权重加缓存将近 50 GB，上下文再长一些、并发再多一些，一块 80 GB 的显卡就装不下了。

**(c) GQA。** 8 个 KV 头时缓存缩小到 $8/32=1/4$：每条序列 0.5 GiB，批大小 16 共 8 GiB。同一块显卡上能同时服务的请求数（或能支持的上下文长度）因此大约翻了两番。

这就是 6.6 节那句话在大模型上的样子：上下文长、并发多时，KV 缓存而不是权重成了推理时最大的内存开销；GQA、缓存的 8 位量化、按页管理缓存（vLLM 的 PagedAttention）都是为它而设计的。
""",
)

answer(
    "6.6.4",
    "训练内存：4 倍从哪里来，LoRA 省在哪里",
    r"""
**4 倍的来由。** fp32 下每个可训练参数要存 4 个数：参数本身、它的梯度、AdamW 的一阶动量 $m$ 和二阶动量 $v$，合计参数的 4 倍（本节数出来的正是这个比例）。

**(a) LoRA（可训练参数占 1%）。** 冻结的主体仍要完整地放在内存里（1 倍），但它没有梯度，也没有优化器状态；梯度和两份动量只属于那 1% 的 LoRA 参数。合计约

$$1+3\times0.01=1.03$$

倍参数（LoRA 参数本身的 1% 也算上，约 1.04 倍），几乎只比推理多一点点。这就是 LoRA 省内存的主要来源；QLoRA 再把冻结的主体量化到 4 位，连那 1 倍也压到约八分之一。

**(b) 激活值。** 反向传播需要前向时每层的中间结果，它们的大小约与 批大小 × 上下文长度 × 宽度 × 层数 成正比（注意力若不用融合内核，还有随上下文长度平方增长的一项）。LoRA 几乎不减少它：LoRA 增量挂在每一层上，梯度要从最后一层一路传回第一层，每层的激活仍然要存。减少激活内存的办法是另一类：减小批大小、配合梯度累积，混合精度，以及**激活重计算**（gradient checkpointing，前向时只存少数几层的结果，反向时再算一遍其余的，用时间换内存）。
""",
)

# --------------------------------------------------------------------------- 6.7

answer(
    "6.7.1",
    "QLoRA 为什么放得进一张 48 GB 显卡",
    r"""
**(a) 4 位基座。** $6.5\times10^{10}\times0.5$ 字节 $\approx3.25\times10^{10}$ 字节，约 32.5 GB。每一小块权重还要存一个缩放系数，会再多出几个百分点。

**(b) LoRA 增量。** 1 亿个参数，每个要存 16 位权重（2 字节）、16 位梯度（2 字节）和 Adam 的两份 32 位动量（8 字节），共 12 字节，合计约 1.2 GB。

**(c) 16 位全参数微调。** 每个参数 16 位权重和梯度（4 字节）、32 位主权重（4 字节）、两份 32 位动量（8 字节），共 16 字节：$6.5\times10^{10}\times16\approx1.04\times10^{12}$ 字节，约 1 TB，要十几张 80 GB 的显卡，还不算激活。

QLoRA 的合计是 32.5 + 1.2 ≈ 34 GB，给激活值留下十几 GB——再配合激活重计算和把优化器状态在显存不够时换到内存（分页优化器），单张 48 GB 的显卡就放得下。全参数微调光是优化器状态就要 520 GB，差了一个数量级以上。代价是：基座的前向、反向都要先把 4 位权重还原再计算，每一步更慢；4 位量化带来的误差由训练中的 LoRA 增量部分地弥补。
""",
)

answer(
    "6.7.2",
    "投机解码为什么又快又不改变分布",
    r"""
**(a) 验证 $k$ 个词元为什么几乎不比生成 1 个慢。** 大模型逐字生成时受内存带宽限制：每一步把全部权重读一遍，却只为一个位置做计算，算力大多闲着。验证草稿时，把 $k$ 个猜测的词元一次送进大模型，就像处理一段提示（prefill）：权重只读一遍，$k$ 个位置的计算由闲着的算力完成，耗时与生成 1 个词元相差不多，却一次得到了 $k+1$ 个位置的分布。

**(b) 为什么分布不变。** 设大模型在某个位置的分布是 $p$，草稿模型是 $q$，草稿抽到了 $x$。规则是：以概率 $\min\!\big(1,\,p(x)/q(x)\big)$ 接受 $x$；否则拒绝，从 $\max(0,\,p-q)$ 归一化后的分布里重新抽一个，并丢弃后面的草稿。输出为 $x$ 的概率是

$$q(x)\min\!\Big(1,\frac{p(x)}{q(x)}\Big)+\Big(1-\sum_y\min(p(y),q(y))\Big)\frac{\max(0,\,p(x)-q(x))}{\sum_y\max(0,\,p(y)-q(y))}.$$

第一项等于 $\min(p(x),q(x))$；由于 $\sum_y\max(0,p-q)=1-\sum_y\min(p,q)$，第二项等于 $\max(0,\,p(x)-q(x))$。两项相加正好是 $p(x)$。所以每个输出词元都严格服从大模型的分布，与只用大模型采样没有区别。$k$ 个草稿全被接受时，再从大模型在第 $k+1$ 个位置的分布里多抽一个。

**(c) 草稿猜得很差时。** 接受率低，每轮大模型前向只产出约 1 个词元（被拒绝处的那个纠正词元），与普通解码相当，却白白多花了草稿模型的计算，于是反而更慢——但输出仍然正确。加速比取决于接受率和草稿模型有多便宜，所以草稿模型通常是同一系列里小得多、在同样数据上训练的模型。
""",
)

answer(
    "6.7.3",
    "新知识：微调进模型，还是检索出来",
    r"""
检索增强更合适，理由分三方面：

- **更新**：商品信息写在文档库里，上架、改价、下架只要更新索引，几分钟生效；微调则要重新准备数据、训练、评估、部署，而且模型学会新知识的同时可能忘掉旧的，每天做一次既贵又有风险。
- **审计**：检索式回答可以附上它依据的文档，人能核对“这句话出自哪里”；微调进参数的知识无法溯源，模型说错了也不知道它是从哪学来的。
- **排查错误**：回答出错时，检索式系统可以分两步看——要么没检索到正确的文档（检索的问题，修索引或查询），要么检索到了却没用好（生成的问题，改提示或换模型）。微调的模型只有一个黑箱，错误难以定位，也难以针对性地修正；它还更容易把相近商品的信息混在一起“编”出答案。

微调仍有它的位置：教会模型客服的语气、回答格式、何时说“不知道”、怎样使用检索到的文档——这些是**行为**，不随商品每天变化。实践中常把两者结合：微调行为，检索知识。6.4 节的结果还提醒我们，检索这一环要单独评估，关键词很强时 BM25 往往就是很好的起点。
""",
)

# --------------------------------------------------------------------------- 6.8

answer(
    "6.8.1",
    "三个模型的选择题准确率与 bpc",
    r"""
做法：三个模型在**同一批** 1000 道 `next_line` 题上各得一个准确率和 95% 自助法区间。因为题目相同，比较两个模型时最好用**配对**的方法：对每道题算两个模型得分之差（每题的得分就是 0、1 或并列时的 $1/m$），再对这 1000 个差值做自助法，看差值的区间是否包含 0。两个各自的区间不重叠时差别当然是真的；区间有重叠时，配对比较往往仍能分辨出差别，因为同一道题对两个模型的难易是相关的，配对把这部分共同的波动消掉了。

与 bpc 的关系：bpc 衡量模型对**每一个字**预测得多好，选择题只问“正确的下一句是否比三个干扰句更可能”。两者通常同方向——bpc 明显更低的模型，选择题一般也更好——但不必完全一致：准确率只取决于四个选项之间的相对排序，对绝对概率不敏感；而 bpc 的差别可能主要来自选择题用不到的位置（例如标点、常用字）。所以 bpc 相差很小的模型，选择题上的排序可能颠倒，而且这种颠倒多半落在区间之内。报告时把两者都写上，并且只对区间支持的差别下结论。
""",
)

answer(
    "6.8.2",
    "把作者放到诗的前面",
    r"""
分数会变：现在比较的是整段“作者名 + 诗”的对数似然 $\log p(a)+\log p(\text{诗}\mid a)$，而不是“诗之后接哪个作者名”的 $\log p(a\mid\text{诗})$。诗的部分在四个候选之间几乎一样，差别主要来自两处：

1. $\log p(a)$：作者名本身作为一串字的概率。`gpt-poetry` 从没见过诗人的名字，这一项只反映名字里的字在诗中常不常见——“李白”的“白”、“王维”的“王”都是诗里的常用字，三字、四字的名字则因为多乘了几个概率而吃亏。
2. $\log p(\text{诗}\mid a)$：如果模型知道作者与诗的对应，它会在正确作者之后给这首诗更高的概率。但模型的训练数据里作者从不和诗同时出现，它没有任何机会学到这种对应，这一项对不同作者几乎没有差别。

所以改写之后的分数主要测的是“名字像不像诗里的字”，仍然测不出模型是否“知道”作者。要检验知识，需要一个在“作者 + 诗”这种文本上训练过的模型；评测时还应扣除名字本身的先验，例如比较 $\log p(\text{诗}\mid a)-\log p(\text{诗})$（逐点互信息），而不是直接比总分。这也是 6.8 节的结论：训练数据里没有的知识，打分方法再巧妙也变不出来。
""",
)

answer(
    "6.8.3",
    "剔除可能被污染的题",
    r"""
做法：用 `contamination_report(items["next_line"], train_texts, n=8)` 的 `flagged` 找出被标记的题，把它们从 `next_line` 里去掉，对剩下的题重新运行 `evaluate_multiple_choice`。

预期：测试集里被标记的题不到一成，剔除之后准确率的变化不大，一般在区间之内。被标记的题多是与训练诗互为异文的近似重复，模型实际上“读过”它们，平均来说比其余的题容易一些，所以剔除后准确率多半略降；题少了，区间也略宽。更有信息量的是把被标记的题单独报告一个准确率：若明显高于其余的题，就说明污染确实在抬高分数。

归一化之后再检测：去掉标点，用字形对照表（例如 OpenCC 的繁简与异体转换）把异体字统一，再比较 8 字重叠。这样只差标点或只差异体字的异文也会被找出来，被标记的题会多一些，多出多少要看语料里这类异文的比例。代价是误报也可能增多：去掉标点后，两首不同的诗偶然共享 8 个连续字的可能性变大（常见的四字、五字套语拼在一起），被标记的题值得抽样人工核对。
""",
)


def _test_p_value(fn: Fn) -> int:
    from llmbook.evaluation.multiple_choice import chance_p_value

    cases = [
        (3, 5, 4),
        (0, 10, 4),
        (10, 10, 4),
        (2, 3, 2),
        (13, 40, 4),
        (60, 200, 4),
        (280, 1000, 4),
        (1, 1, 3),
    ]
    for k, n, c in cases:
        want = chance_p_value(k, [1.0 / c] * n)
        expect_close(fn(k, n, c), want, f"n_correct={k}, n_items={n}, n_choices={c}", tol=1e-9)
    return len(cases)


@exercise("6.8.4", "靠瞎猜答对这么多题的概率", test=_test_p_value)
def guess_p_value(n_correct: int, n_items: int, n_choices: int) -> float:
    p = 1.0 / n_choices
    return sum(
        math.comb(n_items, k) * p**k * (1 - p) ** (n_items - k)
        for k in range(n_correct, n_items + 1)
    )


# --------------------------------------------------------------------------- 6.9

answer(
    "6.9.1",
    "五言、七言混在一起",
    r"""
任务变难了：模型要先读指令里的“五言”或“七言”，再决定每句写几个字。

**DPO 会受影响最大。** 只有五言时，偏好对里的一条统计规律——“被拒绝的句子更长”——恰好与目标一致，DPO 学到“写短一点”就能提高奖励（虽然矫枉过正）。混合之后，五言题的被拒绝回答常常太长，七言题的被拒绝回答则可能太短，“写短一点”不再是一个普遍有利的方向；DPO 只有在模型的回答真正依赖指令里那一个字时才能继续降低损失，信号更弱，需要更多的偏好对和步数，效果也可能看不出来。要判断，必须把评估按五言、七言分开报告，否则一类变好、一类变差会在平均里相互抵消。

**GRPO 更有利。** 它的优势是在**同一条指令**的一组样本里标准化的：七言题里写对七字的样本在组内得分高，五言题里写对五字的得分高，每组各自比较，不需要一条对所有题都成立的规律。但它同样需要更多步数——每步只有 4 条指令，两种体裁各分到一半左右。

需要多少步没有定数，要看学习曲线：按体裁分别画出“格式全对”的比例随步数的变化，直到两条曲线都不再上升；随书的 `posttrain-ladder` 产物把步数加到十倍，可以作为参照。
""",
)

answer(
    "6.9.2",
    "DPO 的学习率与间隔",
    r"""
预期的现象：学习率调大后，训练指标“更好看”——间隔升得更快、更高，奖励准确率更快接近 100%；KL 也涨得更快、更大；但评估时格式全对的比例不会随之提高，多半更低，平均句长在“写短一点”的方向上走得更远。间隔越大，模型并不一定越好。

用梯度解释。记 $\Delta=\big[\log\pi_\theta(y_w)-\log\pi_{\text{ref}}(y_w)\big]-\big[\log\pi_\theta(y_l)-\log\pi_{\text{ref}}(y_l)\big]$，损失 $\ell=-\log\sigma(\beta\Delta)$ 的梯度是

$$\nabla_\theta\ell=-\beta\,\sigma(-\beta\Delta)\Big[\nabla_\theta\log\pi_\theta(y_w)-\nabla_\theta\log\pi_\theta(y_l)\Big].$$

三点值得注意：

1. 权重 $\sigma(-\beta\Delta)$ 随间隔增大而减小，却永远不为零：损失只要求间隔“越大越好”，没有一个“够了”的点，学习率越大，模型被推得越远，KL 随之增大。
2. 梯度只约束**差**：提高 $y_w$ 的概率和压低 $y_l$ 的概率对 $\Delta$ 的贡献一样。把 $y_l$ 的概率往零压几乎没有阻力，所以常见的情形是两者的概率都在下降，只是 $y_l$ 降得更快——概率质量流向了偏好对里从未出现过的回答，而损失对这些回答是好是坏一无所知。
3. 间隔是在**固定的偏好对**上量的。它衡量模型把这几百对分得多开，而不是模型自己写出的新诗好不好。偏好对里的偶然规律（被拒绝的更长）被学得越彻底，偏差就越大。

所以 DPO 要用验证集上的**生成质量**来选学习率和停止的时机，必要时加大 $\beta$（更强地拴住参考模型）或减少训练步数。
""",
)

answer(
    "6.9.3",
    "只奖励押韵，又不禁止同字",
    r"""
自己写的奖励函数：先检查是不是四行、每行字数对（不对就记 0），再看第二、四句的末字是否属于同一个韵部，去掉“末字不能相同”的条件。同一个字当然和自己同韵，于是“第二、四句用同一个字结尾”就成了拿满分最省事的办法。

会不会在 20 步里学会，取决于这个奖励有多**稀疏**：押韵分只在四句字数全对时才可能为 1，而 SFT 模型格式全对的比例不高，一组 8 个样本常常全是 0 分，组内标准化后的优势全为零，这一步什么也学不到。所以很可能的结果是：20 步之后变化不大，但只要有样本拿到奖励，同字押韵的比例就会上升——可以统计“二、四句末字相同”的样本占比随步数的变化来观察，训练更久，它往往会越来越多，因为同字押韵不需要任何韵部的知识，是最容易被强化的写法。

这说明设计可以检验的奖励时要注意：

1. **堵住明显的空子**：想清楚“最省事的满分回答”是什么样子，如果它不是我们想要的（同字押韵、重复同一句），就在规则里排除它；
2. **不要太稀疏**：给部分分（本节的格式分给行数、字数、标点各算一部分），让模型在够得着的地方就能得到信号；
3. **多个目标一起约束**：格式、押韵、内容相关性一起进奖励，只优化其中一项最容易走偏；
4. **始终监控输出**：除了平均奖励，还要看多样性（distinct-2、句末字分布）和 KL，并且人工读样本。
""",
)


def _test_advantages(fn: Fn) -> int:
    import torch

    from llmbook.training.grpo import group_advantages

    cases = [
        [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]],
        [[0.6, 0.6, 1.0, 0.0, 0.36, 0.6, 0.6, 0.84]],
        [[0.5]],
        [[0.0, 1.0]],
        [[0.2, 0.2, 0.2, 0.8], [0.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.5, 0.3]],
    ]
    for rewards in cases:
        want = group_advantages(torch.tensor(rewards)).tolist()
        case = f"rewards={rewards}"
        got = fn([list(r) for r in rewards])
        try:
            rows = [[float(v) for v in row] for row in got]
        except (TypeError, ValueError):
            raise ExerciseFailure(
                f"{case}：应返回与输入同形状的二维列表，你的函数返回 {got!r}"
            ) from None
        expect([len(r) for r in rows], [len(r) for r in want], case + "（形状）")
        for i, (gr, wr) in enumerate(zip(rows, want)):
            for j, (g, w) in enumerate(zip(gr, wr)):
                expect_close(g, w, f"{case}，第 {i} 组第 {j} 个", tol=1e-5)
    return len(cases)


@exercise("6.9.4", "GRPO 的组内优势", test=_test_advantages)
def grpo_advantages(rewards: Sequence[Sequence[float]], eps: float = 1e-4) -> list[list[float]]:
    out = []
    for group in rewards:
        mean = sum(group) / len(group)
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / len(group))
        out.append([(r - mean) / (std + eps) for r in group])
    return out


# --------------------------------------------------------------------------- 6.10
