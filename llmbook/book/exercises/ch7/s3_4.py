"""第 7 章的练习（7.3 论文、7.4 数据集）：参考答案与隐藏的检查。

Coding exercises are checked against :meth:`llmbook.text.embeddings.Embeddings.analogy`,
:class:`llmbook.models.lora.LoRALinear`, ``torch.nn.functional.scaled_dot_product_attention``
and :mod:`llmbook.data.quality`.
"""

from __future__ import annotations

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


# ---------------------------------------------------------------------------------------
# 7.3 相关论文推荐


def _test_analogy(fn: Callable[..., Any]) -> int:
    from llmbook.text.embeddings import Embeddings

    rng = np.random.default_rng(0)
    cases: list[tuple[dict[str, np.ndarray], str, str, str]] = []
    # b itself is the nearest word to b - a + c: it must be excluded
    cases.append(
        (
            {
                "男人": np.array([1.0, 0.0, 0.2]),
                "国王": np.array([1.0, 1.0, 0.0]),
                "女人": np.array([0.0, 0.1, 1.0]),
                "女王": np.array([0.1, 1.0, 1.0]),
                "苹果": np.array([0.0, -1.0, 0.1]),
            },
            "男人",
            "国王",
            "女人",
        )
    )
    # the lengths differ a lot: the answer changes if the vectors are not normalised
    cases.append(
        (
            {
                "a": np.array([10.0, 0.0]),
                "b": np.array([0.0, 10.0]),
                "c": np.array([1.0, 0.0]),
                "x": np.array([-1.0, 1.0]),
                "y": np.array([0.1, 1.0]),
            },
            "a",
            "b",
            "c",
        )
    )
    words = [f"词{i}" for i in range(30)]
    vecs = rng.normal(size=(30, 8))
    table = dict(zip(words, vecs))
    for a, b, c in [("词0", "词1", "词2"), ("词5", "词3", "词9"), ("词7", "词7", "词8")]:
        cases.append((table, a, b, c))
    for vectors, a, b, c in cases:
        ws = list(vectors)
        emb = Embeddings(ws, np.stack([vectors[w] for w in ws]))
        want = emb.analogy(a, b, c)[0][0]
        expect(fn(vectors, a, b, c), want, f"{a} : {b} = {c} : ?（词表 {ws[:5]}…）")
    _raises(fn, KeyError, "问题词不在词表里", table, "词0", "不存在", "词2")
    return len(cases) + 1


@exercise("7.3.1", "词向量类比", test=_test_analogy)
def analogy(vectors: dict[str, np.ndarray], a: str, b: str, c: str) -> str:
    """Solve ``a : b = c : ?`` by 3CosAdd over unit vectors, excluding ``a``, ``b``, ``c``."""
    for w in (a, b, c):
        if w not in vectors:
            raise KeyError(w)

    def unit(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return v / np.linalg.norm(v)

    q = unit(vectors[b]) - unit(vectors[a]) + unit(vectors[c])
    best, best_cos = "", -np.inf
    for w, v in vectors.items():
        if w in (a, b, c):
            continue
        cos = float(unit(v) @ q) / float(np.linalg.norm(q))
        if cos > best_cos:
            best, best_cos = w, cos
    return best


def _test_lora_count(fn: Callable[..., Any]) -> int:
    from llmbook.models.lora import LoRALinear

    def reference(shapes: Sequence[tuple[int, int]], r: int) -> int:
        total = 0
        for d_out, d_in in shapes:
            layer = LoRALinear(torch.nn.Linear(d_in, d_out), r=r)
            total += sum(p.numel() for p in layer.parameters() if p.requires_grad)
        return total

    cases: list[tuple[list[tuple[int, int]], int]] = [
        ([(8, 8)], 1),
        ([(12, 4), (4, 4)], 2),
        ([(6, 10)] * 3, 6),
        ([(32, 16), (16, 32), (16, 16)], 4),
    ]
    for shapes, r in cases:
        expect(fn(shapes, r), reference(shapes, r), f"shapes={shapes}, r={r}（与 LoRALinear 比较）")
    expect(fn([(4096, 4096)] * 2, 8), 2 * 8 * (4096 + 4096), "两个 4096×4096 的投影，r=8")
    expect(fn([], 4), 0, "没有要适配的层")
    _raises(fn, ValueError, "r=0", [(8, 8)], 0)
    _raises(fn, ValueError, "r=5 大于 4×16 层较小的维度 4", [(16, 16), (4, 16)], 5)
    return len(cases) + 4


@exercise("7.3.2", "LoRA 的可训练参数量", test=_test_lora_count)
def lora_param_count(shapes: Sequence[tuple[int, int]], r: int) -> int:
    """Trainable LoRA numbers for linear layers of shape ``(d_out, d_in)`` at rank ``r``."""
    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}")
    total = 0
    for d_out, d_in in shapes:
        if r > min(d_out, d_in):
            raise ValueError(f"r={r} exceeds min(d_out, d_in) of a {d_out}×{d_in} layer")
        total += r * (d_in + d_out)  # A: r×d_in, B: d_out×r
    return total


answer(
    "7.3.3",
    "不物化注意力矩阵省下多少显存",
    """
标准实现先算出分数矩阵 $S=QK^\\top/\\sqrt{d_h}$，再算 $P=\\operatorname{softmax}(S)$，两者都是每个头一个 $T\\times T$ 的矩阵。批大小 1、$T=4096$、32 个头、bf16（每个数 2 字节）时，一层的 $P$ 就有

$4096^2\\times 32\\times 2 = 2^{30}$ 字节 $=1$ GiB。

训练时反向传播要用到 $P$，所以每一层的 $P$ 都得留到反向结束：32 层就是 32 GiB，还不算 $S$ 本身和 dropout 的掩码。它随 $T^2$ 增长：$T$ 加到 32,768（8 倍），每层变成 64 GiB，一张 80 GB 的卡连一层都放不下。

FlashAttention 把 $Q,K,V$ 按块读进片上高速缓存，用“在线 softmax”（逐块更新每行的最大值和指数和）直接累加出输出 $PV$，整个 $T\\times T$ 矩阵从不写回显存；每行只保存两个统计量（或合成一个 logsumexp），反向传播时按块重新计算 $P$。额外显存从 $O(T^2)$ 降到 $O(T)$（每个头每行一个数），同时显存读写大幅减少，所以它既省显存又更快——多做的那点重算远比读写一个 $T\\times T$ 矩阵便宜。
""",
)


def _test_attention(fn: Callable[..., Any]) -> int:
    import torch.nn.functional as F

    from llmbook.book.exercises._common import _tensor_close

    g = torch.Generator().manual_seed(0)
    cases = [
        ((2, 5, 8), (2, 5, 8), True),
        ((1, 3, 7, 4), (1, 3, 7, 4), True),
        ((2, 3, 4), (2, 6, 4), False),
        ((4, 16), (4, 16), False),
        ((1, 1, 2), (1, 1, 2), True),
    ]
    for qs, ks, causal in cases:
        q, k = torch.randn(*qs, generator=g), torch.randn(*ks, generator=g)
        v = torch.randn(*ks[:-1], 3, generator=g)
        want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        _tensor_close(fn(q, k, v, causal), want, f"q {qs}、k {ks}、causal={causal}（与 SDPA 比较）")
    return len(cases)


@exercise("7.3.4", "照论文写缩放点积注意力", test=_test_attention)
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over the last two dimensions, optionally causal."""
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    if causal:
        t_q, t_k = scores.shape[-2:]
        mask = torch.ones(t_q, t_k, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


answer(
    "7.3.5",
    "算力最优与推理成本",
    """
(a) $N_\\text{opt}=\\sqrt{C/120}\\propto C^{1/2}$，$D_\\text{opt}=20N_\\text{opt}\\propto C^{1/2}$。算力增加 100 倍，参数量和词元数各增加 $\\sqrt{100}=10$ 倍：多出来的算力在模型变大和数据变多之间平分（按对数计）。

(b) Chinchilla 最优化的只是**训练**的算力：在给定训练预算下让损失最低。但一个模型训练一次，却要为很多用户生成很多词元，每个词元约 $2N$ 次浮点运算，推理的总成本与 $N$ 成正比，$N$ 还决定了需要多大的显存、响应有多快。一个比 $N_\\text{opt}$ 小、但训练了远多于 $20N$ 个词元的模型，训练时多花了一些算力（同样的损失，训练不是最省的），换来的是之后每一次推理都更便宜、更快，也更容易部署到小设备上。只要推理的词元总数足够大，“训练 + 推理”的总成本反而更低。LLaMA 就把 70 亿参数的模型训练了 1 万亿个词元（约每参数 140 个），远超 20；损失随数据量增加仍在缓慢下降，所以“过度训练”小模型并不浪费。
""",
)


# ---------------------------------------------------------------------------------------
# 7.4 其他资源推荐

answer(
    "7.4.1",
    "许可证决定能做什么",
    """
（以下是按本节表格的一般理解，不是法律意见；实际使用前要读数据集主页的最新条款，必要时咨询法务。）

- **chinese-poetry（MIT）**：允许商用，保留版权与许可声明即可，可以用于训练。
- **中文维基百科（CC BY-SA）**：允许商用，但要求署名，并且“相同方式共享”——基于它的衍生作品要用同样的许可发布。训练出的模型算不算衍生作品，目前在法律上并无定论，所以常见做法是可以用、但要记录来源并评估风险。
- **人民日报标注语料、THUCNews、LCQMC、CLUE 的多数子任务**：限研究使用（LCQMC 还要签协议），不能用于商用模型的训练。
- **C-Eval（CC BY-NC-SA 4.0）**：NC 是“非商业性使用”，商用产品不能用；SA 是“相同方式共享”，基于它改编的作品也必须以同样的许可发布。**CMMLU（CC BY-NC 4.0）** 同样不能商用。

此外，C-Eval、CMMLU 是**评测基准**，即使许可允许，也绝不能放进训练语料：那样分数就不再说明能力（数据污染）。合规的做法是：训练只用许可允许商用的数据；两个基准只在内部研究中用来评测，并用 8.7 节的去重工具（或练习 7.4.2 的函数）确认训练语料与它们没有重叠。
""",
)


def _test_contaminated(fn: Callable[..., Any]) -> int:
    train = [
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
        "白日依山尽，黄河入海流。",
        "本次考试时间为２０２４年６月７日上午九点",
        "春眠不觉晓，  处处闻啼鸟。",
    ]
    test = [
        "举头望明月，低头思故乡",  # shares 8-grams with train[0]
        "欲穷千里目，更上一层楼。",  # clean
        "时间为2024年6月7日",  # full-width digits in train: NFKC makes them equal
        "黄河入海",  # shorter than n, a substring of train[1]
        "黄河入江",  # shorter than n, not a substring
        "春眠不觉晓， 处处闻啼鸟",  # whitespace runs collapse to one space
        "",  # empty: never contaminated
        "明月光，疑是地",  # 7 characters < n = 8, a substring
    ]
    expect(fn(train, test, 8), [0, 2, 3, 5, 7], "n=8 的八条测试文本")
    expect(fn(train, test, 4), [0, 2, 3, 5, 7], "n=4")
    expect(fn(train, test[1:2], 3), [], "n=3，一条干净的测试文本")
    expect(fn(train, ["千里目，更上", "一层楼"], 2), [], "n=2，没有共同的两字片段")
    expect(fn(train, ["依山望明月"], 2), [0], "n=2，共享“明月”")
    expect(fn([], test, 8), [], "空的训练集")
    _raises(fn, ValueError, "n=0", train, test, 0)
    return 7


@exercise("7.4.2", "训练集与测试集的重叠", test=_test_contaminated)
def contaminated(train_texts: Sequence[str], test_texts: Sequence[str], n: int = 8) -> list[int]:
    """Indices of test texts sharing an ``n``-character substring with some training text."""
    from llmbook.data.quality import normalise

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    train = [normalise(t) for t in train_texts]
    grams = {t[i : i + n] for t in train for i in range(len(t) - n + 1)}
    out = []
    for i, text in enumerate(test_texts):
        t = normalise(text)
        if not t:
            continue
        if len(t) >= n:
            hit = any(t[j : j + n] in grams for j in range(len(t) - n + 1))
        else:
            hit = any(t in s for s in train)
        if hit:
            out.append(i)
    return out


answer(
    "7.4.3",
    "重叠检查查不到什么",
    """
$n$ 的取值是在两类错误之间折中：$n$ 太小，“中华人民共和国”“根据以下材料”这类常见片段会让大量无辜的题目被判为污染（假阳性）；$n$ 太大，只改了几个字的题目就漏过去了（假阴性）。英文工作常用 13 个词的片段（GPT-3 的污染分析即如此）；中文按字计，一个词约 1.5 个字，8–13 个字是常见的起点，最好在已知干净和已知污染的样本上调一调。

逐字片段重叠查不到的污染至少有三类：

1. **改写**：同一道题换了说法、换了数字或选项顺序；
2. **翻译**：英文基准的题目被翻成中文后混进语料（反之亦然）；
3. **间接泄露**：语料里没有原题，但有题目的解析、答案讨论或“某基准答案汇总”之类的网页。

应对办法：用 8.7 节的 MinHash 近似去重放宽到字面相近的改写；用句向量的相似度检索找语义相近的题目；基准发布方在数据中嵌入独一无二的“金丝雀字符串”（BIG-bench 就是这样做的），训练方过滤掉含有它的文档；更根本的是用模型训练截止日期之后新出的题目、或从不公开的私有测试集来评测。报告分数时，最好把“查出重叠”和“未查出重叠”两部分题目的分数分开列出：两者差距很大，就说明分数里有记忆的成分。
""",
)


def _test_corpus_stats(fn: Callable[..., Any]) -> int:
    from collections import Counter

    from llmbook.data.quality import exact_duplicates

    def reference(texts: list[str]) -> dict[str, Any]:
        counts = Counter("".join(texts))
        return {
            "texts": len(texts),
            "chars": sum(counts.values()),
            "vocab": len(counts),
            "hapax": sum(c == 1 for c in counts.values()) / len(counts),
            "dup_rate": sum(exact_duplicates(texts)) / len(texts),
        }

    cases = [
        ["床前明月光", "疑是地上霜", "床前明月光"],
        ["ａｂ", "ab", "c"],  # full-width letters normalise to half-width: a duplicate
        ["春  眠", "春 眠", ""],  # whitespace runs collapse: a duplicate
        ["好", "好", "好", "不好"],
    ]
    for texts in cases:
        got, want = fn(list(texts)), reference(texts)
        if not isinstance(got, dict) or sorted(got) != sorted(want):
            raise ExerciseFailure(
                f"{texts}：应返回键为 {sorted(want)} 的字典，你的函数返回 {got!r}"
            )
        for key, value in want.items():
            expect_close(got[key], value, f"{texts} 的 {key!r}", tol=1e-9)
    _raises(fn, ValueError, "空列表", [])
    _raises(fn, ValueError, "只有空文本", ["", ""])
    return len(cases) + 2


@exercise("7.4.4", "量一量语料", test=_test_corpus_stats)
def corpus_stats(texts: Sequence[str]) -> dict[str, Any]:
    """Texts, characters, vocabulary, hapax share and exact-duplicate rate of a corpus."""
    from collections import Counter

    from llmbook.data.quality import normalise

    counts = Counter("".join(texts))
    if not counts:
        raise ValueError("the corpus is empty (no texts, or only empty texts)")
    seen: set[str] = set()
    dup = 0
    for t in texts:
        key = normalise(t)
        dup += key in seen
        seen.add(key)
    return {
        "texts": len(texts),
        "chars": sum(counts.values()),
        "vocab": len(counts),
        "hapax": sum(1 for c in counts.values() if c == 1) / len(counts),
        "dup_rate": dup / len(texts),
    }


answer(
    "7.4.5",
    "公平地比较字表，写评论的数据卡",
    """
前缀实验里，每份语料的字表都随长度增长，但远慢于线性：字数增加一百倍，不同的字只增加几倍。所以“不同的字 ÷ 字数”必然随语料变长而变小。拿全部唐诗（一百多万字）与只取 1 万字的评论比较，唐诗的比值会小得多，于是得出“唐诗的用字比评论单调”的结论——而在同样长度的前缀上比较，恰恰是唐诗用到的不同的字最多。比值的差别来自长度，不是来自语料本身。

评论的数据卡最需要写清楚的字段：

- **来源与收集方式**：哪个网站、哪个时期、怎样抓取；原始文件混入了网页导航栏之类的非评论文字。
- **重复与清洗**：原始文件里约一半是重复行，去重和去掉标签冲突的句子之后还剩多少条；划分必须在去重之后做，否则测试集会原样出现在训练集里。
- **标签的含义与质量**：好评/差评是怎样来的（用户自己选的星级，还是人工标注），有多少句子同时出现在两类里。
- **许可证与个人信息**：能否商用、是否含有用户名、电话、地址等需要脱敏的信息。
- **已知的偏差**：商品类别、平台、年代的分布，这决定了在其他领域的评论上能否推广。
""",
)
