"""Exercises of chapter 6 (applications): reference solutions, checkers and answers.

Coding exercises are checked against the package's own functions (LoRA in
:mod:`llmbook.models.lora`, the SFT targets of :mod:`llmbook.training.sft`,
:func:`llmbook.generation.repetition.distinct_n`, BM25 in
:mod:`llmbook.applications.retrieval`, int8 quantisation in :mod:`llmbook.models.quant`,
the KV cache, :func:`llmbook.evaluation.multiple_choice.chance_p_value`, GRPO's
advantages) or against values computed by hand.  Every case is a tiny inline example.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close

Fn = Callable[..., Any]


def _pair(got: Any, case: str) -> tuple[Any, Any]:
    """``got`` as a pair ``(a, b)``, or a Chinese failure saying a pair was expected."""
    if isinstance(got, (tuple, list)) and len(got) == 2:
        return got[0], got[1]
    raise ExerciseFailure(f"{case}：应返回一个二元组 (…, …)，你的函数返回 {got!r}")


def _ints(got: Any, case: str) -> list[int]:
    try:
        return [int(v) for v in got]
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个整数列表，你的函数返回 {got!r}") from None


def _floats(got: Any, case: str) -> list[float]:
    try:
        return [float(v) for v in got]
    except (TypeError, ValueError):
        raise ExerciseFailure(f"{case}：应返回一个数的列表，你的函数返回 {got!r}") from None


def _tensor(got: Any, case: str, dtype: Any = None) -> Any:
    import torch

    try:
        t = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        raise ExerciseFailure(f"{case}：应返回一个张量（或数组），你的函数返回 {got!r}") from None
    return t.to(dtype) if dtype is not None else t


# --------------------------------------------------------------------------- 6.1


def _test_lora_count(fn: Fn) -> int:
    from llmbook.models import lora
    from llmbook.models.gpt import GPT, GPTConfig

    cases: list[tuple[list[tuple[int, int]], int, int]] = [
        ([(24, 8)], 2, 64),
        ([(24, 8), (8, 8)], 4, 4 * 32 + 4 * 16),
        ([(10, 3)], 1, 13),
        ([], 4, 0),
        ([(768 * 3, 768)] * 12, 8, 12 * 8 * (768 * 4)),
    ]
    for shapes, r, want in cases:
        expect(
            fn(list(shapes), r), want, f"shapes={shapes[:3]}{'…' if len(shapes) > 3 else ''}, r={r}"
        )
    n = len(cases)
    for targets, r in [(["c_attn"], 4), (["c_attn", "c_proj"], 2), (["c_fc"], 3)]:
        model = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=8))
        lora.apply_lora(model, targets, r=r, alpha=2 * r)
        shapes = [
            (int(m.base.weight.shape[0]), int(m.base.weight.shape[1]))
            for m in model.modules()
            if isinstance(m, lora.LoRALinear)
        ]
        want = sum(p.numel() for p in lora.lora_parameters(model))
        expect(
            fn(list(shapes), r),
            want,
            f"小 GPT 上对 {targets} 加秩 {r} 的 LoRA，各层权重形状 {shapes}",
        )
        n += 1
    return n


@exercise("6.1.1", "LoRA 要训练多少参数", test=_test_lora_count)
def lora_num_params(shapes: Sequence[tuple[int, int]], r: int) -> int:
    return sum(r * (d_out + d_in) for d_out, d_in in shapes)


def _test_lora_merge(fn: Fn) -> int:
    import torch
    from torch import nn

    from llmbook.models.lora import LoRALinear

    g = torch.Generator().manual_seed(0)
    cases = [(3, 4, 1, 1.0), (6, 5, 4, 8.0), (4, 4, 2, 2.0), (5, 3, 2, 8.0), (8, 6, 3, 1.0)]
    for d_out, d_in, r, alpha in cases:
        w0 = torch.randn(d_out, d_in, generator=g)
        a = torch.randn(r, d_in, generator=g)
        b = torch.randn(d_out, r, generator=g)
        layer = LoRALinear(nn.Linear(d_in, d_out, bias=False), r=r, alpha=alpha)
        with torch.no_grad():
            layer.base.weight.copy_(w0)
            layer.lora_A.copy_(a)
            layer.lora_B.copy_(b)
        layer.merge()
        want = layer.base.weight.detach().clone()
        case = f"W0 {d_out}×{d_in}，秩 r={r}，alpha={alpha}"
        w0_in = w0.clone()
        got = _tensor(fn(w0_in, a.clone(), b.clone(), alpha), case, torch.float32)
        expect(tuple(got.shape), tuple(want.shape), case + "（形状）")
        if not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
            raise ExerciseFailure(
                f"{case}：合并后的第一行应为 {[round(x, 4) for x in want[0].tolist()]}，"
                f"你的函数给出 {[round(x, 4) for x in got[0].tolist()]}"
            )
        if not torch.equal(w0_in, w0):
            raise ExerciseFailure(f"{case}：你的函数改动了传入的 W0，应返回一个新矩阵")
    return len(cases)


@exercise("6.1.2", "把 LoRA 合并进权重", test=_test_lora_merge)
def merge_lora_weight(w0: Any, a: Any, b: Any, alpha: float) -> Any:
    r = a.shape[0]
    return w0 + (alpha / r) * (b @ a)


answer(
    "6.1.3",
    "为什么 B 初始化为零",
    r"""
记 $g=\partial\mathcal L/\partial h$，$s=\alpha/r$。由 $h=W_0x+s\,BAx$ 得

$$\frac{\partial\mathcal L}{\partial B}=s\,g\,(Ax)^\top,\qquad \frac{\partial\mathcal L}{\partial A}=s\,B^\top g\,x^\top .$$

- **$B=0$、$A$ 随机**（LoRA 的做法）：增量 $BA=0$，训练开始时模型与预训练模型完全相同，不会一上来就破坏预训练学到的东西；同时 $Ax\ne0$，所以 $B$ 的梯度不为零，第一步就开始学，$B$ 离开零之后 $A$ 也有了梯度。
- **两者都为零**：$\partial\mathcal L/\partial B=s\,g\,(0\cdot x)^\top=0$，$\partial\mathcal L/\partial A=s\,0^\top g\,x^\top=0$，两个梯度永远为零，LoRA 分支一个参数也学不动（这是一个鞍点）。
- **两者都随机**：梯度没有问题，但 $BA$ 一开始就是一个随机矩阵，等于往每层的权重上加了噪声，模型在训练开始时就已偏离预训练模型，要先花若干步把这份噪声“学回去”。

反过来让 $A=0$、$B$ 随机也能同时满足“起点不变”和“有梯度”两条；把哪一个设为零只是一种约定。
""",
)

answer(
    "6.1.4",
    "分类头该接在哪个位置",
    r"""
因果注意力让位置 $t$ 只看得见位置 $0,\dots,t$。

- **不能直接取位置 $T-1$**：右侧补齐时，较短的评论在 $T-1$ 处是一个 `<pad>`，它的隐状态虽然也“看过”整条评论，但混进了若干个填充词元，而且填充的个数取决于同一批里最长的那条评论——同一条评论放进不同的批次，表示就不一样，训练和推理也对不上。
- **取最后一个真实字符 $\text{lengths}-1$**：它恰好看过整条评论、一个填充也没看到。因为填充都在它的右边，因果掩码让它们对真实位置毫无影响，所以这个隐状态与不做填充、单独处理这条评论时完全相同。这正是 `GPTClassifier.pool` 的做法。
- **不取第一个位置**：它只看得见第一个字，对整条评论一无所知。这与 BERT 一类双向编码器不同，在那里 `[CLS]` 能通过双向注意力看到全句。

若改用左侧补齐，真实内容都挤在右端，位置 $T-1$ 总是最后一个真实字符，可以直接取它；但这时填充在真实字符的左边，必须用注意力掩码挡住它们，而且用可学习的绝对位置嵌入时，真实字符的位置编号会随填充多少而改变，要相应地调整位置编号。右侧补齐加“取最后一个真实位置”最简单。
""",
)

# --------------------------------------------------------------------------- 6.2


def _test_sft_targets(fn: Fn) -> int:
    from llmbook.text.chat import CHAT
    from llmbook.text.tokenizers import CharTokenizer
    from llmbook.training import sft

    F, T = False, True
    cases = [
        (
            [2, 4, 6, 7, 5, 11, 12, 8],
            [F, F, F, F, F, T, T, T],
            ([2, 4, 6, 7, 5, 11, 12], [-100, -100, -100, -100, 11, 12, 8]),
        ),
        ([1, 5], [F, T], ([1], [5])),
        ([3, 9, 9, 4], [F, F, F, F], ([3, 9, 9], [-100, -100, -100])),
        (
            [2, 7, 8, 3, 9, 4, 7, 8, 3, 6, 4],
            [F, F, F, F, T, T, F, F, F, T, T],
            ([2, 7, 8, 3, 9, 4, 7, 8, 3, 6], [-100, -100, -100, 9, 4, -100, -100, -100, 6, 4]),
        ),
    ]
    tok = CharTokenizer.fit(["问答春风明月\n", "床前光疑是地上霜"])
    for messages in (
        [("user", "春风"), ("assistant", "明月")],
        [
            ("system", "床前"),
            ("user", "明月"),
            ("assistant", "是霜"),
            ("user", "春风"),
            ("assistant", "地上光"),
        ],
    ):
        ids, mask = CHAT.encode_chat(tok, messages)
        cases.append((ids, mask, sft.sft_chat_example(tok, messages, 64, CHAT)))
    for ids, mask, (want_x, want_y) in cases:
        case = f"ids={ids}, mask={[int(m) for m in mask]}"
        x, y = _pair(fn(list(ids), list(mask)), case)
        expect(_ints(x, case), list(want_x), case + "（输入）")
        expect(_ints(y, case), list(want_y), case + "（目标）")
    return len(cases)


@exercise("6.2.1", "只在回答上算损失的目标", test=_test_sft_targets)
def sft_inputs_targets(ids: Sequence[int], mask: Sequence[bool]) -> tuple[list[int], list[int]]:
    inputs = list(ids[:-1])
    targets = [t if m else -100 for t, m in zip(ids[1:], mask[1:])]
    return inputs, targets


def _test_distinct(fn: Fn) -> int:
    from llmbook.generation.repetition import distinct_n

    cases = [
        (["春风春风", "春风"], 2),
        (["春风又绿江南岸，明月何时照我还。"], 2),
        (["一声声断一声声", "一夜清风一夜清"], 2),
        (["床前 明月光", "疑是地上霜"], 1),
        (["白日依山尽", "白日依山尽"], 3),
        (["春", "风"], 1),
        (["山，山。山！", "水水"], 2),
    ]
    for texts, n in cases:
        expect_close(fn(list(texts), n), distinct_n(texts, n), f"texts={texts}, n={n}", tol=1e-12)
    for texts, n in [(["春", "风"], 2), (["，。"], 1)]:
        case = f"texts={texts}, n={n}（没有任何 {n} 元组）"
        try:
            got = fn(list(texts), n)
        except ValueError:
            continue
        raise ExerciseFailure(f"{case}：应抛出 ValueError，你的函数返回 {got!r}")
    return len(cases) + 2


@exercise("6.2.2", "distinct-n", test=_test_distinct)
def distinct(texts: Sequence[str], n: int) -> float:
    from llmbook.text.chinese import is_punct

    grams = []
    for text in texts:
        chars = [c for c in text if not c.isspace() and not is_punct(c)]
        grams += [tuple(chars[i : i + n]) for i in range(len(chars) - n + 1)]
    if not grams:
        raise ValueError(f"no {n}-gram in the texts")
    return len(set(grams)) / len(grams)


answer(
    "6.2.3",
    "拼接时的掩码与结束标记",
    r"""
**(1) 损失掩码。** 每条对话各自算出 `(ids, mask)`，拼接时 `ids` 和 `mask` 一起首尾相连，再一起切块；目标仍是“下一个词元，且只在下一个词元属于助手时才算”。这样每个块里只有各条对话的回答和它们的 `<|end|>` 参与损失。块的边界可能把一条对话切成两半，后半截失去了它的提示；通常的做法是尽量按整条对话装箱，装不下的放到下一块。

**(2) 串扰。** 不加块对角掩码时，后一条对话的每个位置都能注意到前一条对话的全部词元。问题通常不大：每条对话都以 `<bos>`、`<|user|>` 开头，模型很快学会在新的对话开始后基本不理会前面的内容（预训练时跨越两篇文档的窗口也是这样）。但它确实会引入一些无关的上下文，在对话短、块长、前后对话主题相近时影响更明显，而且训练时的上下文与推理时（只有一条对话）不一致。追求严格时，用块对角的注意力掩码（或把每条对话的位置编号从 0 重新开始、配合支持变长序列的注意力内核）把各条隔开。

**(3) 为什么 `<|end|>` 算进损失，而 `<|assistant|>` 不算。** 推理时，`<|assistant|>` 是我们写进提示、交给模型的条件；模型要做的是接着写回答，并且**自己决定何时写出** `<|end|>`——生成循环看到它才会停下。如果 `<|end|>` 不在损失里，模型从来没有被要求在回答结束处输出它，就会像基座模型那样一直写下去。反过来，`<|assistant|>` 永远由程序给出，让模型学着生成它没有用处，还会教它在回答里伪造下一轮对话的开头。
""",
)

# --------------------------------------------------------------------------- 6.3


def _test_readings(fn: Fn) -> int:
    cases: list[tuple[list[tuple[str, str]], dict[str, str]]] = [
        (
            [("银行", "yin2 hang2"), ("行走", "xing2 zou3"), ("行人", "xing2 ren2")],
            {"银": "yin2", "行": "xing2", "走": "zou3", "人": "ren2"},
        ),
        (
            [("行走", "xing2 zou3"), ("行人", "xing2 ren2"), ("银行", "yin2 hang2")],
            {"银": "yin2", "行": "xing2", "走": "zou3", "人": "ren2"},
        ),
        ([("行", "hang2"), ("行", "xing2")], {"行": "hang2"}),
        (
            [
                ("长江", "chang2 jiang1"),
                ("长大", "zhang3 da4"),
                ("成长", "cheng2 zhang3"),
                ("长城", "chang2 cheng2"),
                ("长大", "zhang3 da4"),
            ],
            {"长": "zhang3", "江": "jiang1", "大": "da4", "成": "cheng2", "城": "cheng2"},
        ),
        ([], {}),
    ]
    for pairs, want in cases:
        case = f"train_pairs={pairs}"
        got = fn(list(pairs))
        if not isinstance(got, Mapping):
            raise ExerciseFailure(f"{case}：应返回一个字典，你的函数返回 {got!r}")
        expect(dict(got), want, case)
    return len(cases)


@exercise("6.3.1", "查表基线：每个字最常见的读音", test=_test_readings)
def reading_table(train_pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    counts: dict[str, Counter[str]] = {}
    for hanzi, pinyin in train_pairs:
        for ch, syllable in zip(hanzi, pinyin.split()):
            counts.setdefault(ch, Counter())[syllable] += 1
    # most_common keeps the first-seen reading first among equal counts
    return {ch: c.most_common(1)[0][0] for ch, c in counts.items()}


def _test_clipped(fn: Fn) -> int:
    from llmbook.evaluation.metrics import bleu

    cases = [
        ("the the the the", "the cat", 1, (1, 4)),
        ("yin2 hang2 xing2 zou3", "yin2 hang2 hang2 zou3", 1, (3, 4)),
        ("yin2 hang2 xing2 zou3", "yin2 hang2 hang2 zou3", 2, (1, 3)),
        ("hang2 hang2 hang2", "hang2 hang2", 1, (2, 3)),
        ("a b a b a", "a b a b", 2, (3, 4)),
        ("a b", "a b", 3, (0, 0)),
        ("", "a", 1, (0, 0)),
    ]
    for hyp, ref, n, want in cases:
        case = f"hyp={hyp!r}, ref={ref!r}, n={n}"
        matched, total = _pair(fn(hyp, ref, n), case)
        expect((int(matched), int(total)), want, case)
    # one sentence whose n-gram precisions are all non-zero: BLEU's precisions are these
    hyp, ref = "a b c d x f g h i j", "a b c d e f g h i j"
    prec = bleu([hyp], [ref]).precisions
    for n in range(1, 5):
        matched, total = _pair(fn(hyp, ref, n), f"hyp={hyp!r}, ref={ref!r}, n={n}")
        expect_close(
            100 * matched / total,
            prec[n - 1],
            f"hyp={hyp!r}, ref={ref!r}, n={n}（与 metrics.bleu 的精确率比较）",
        )
    return len(cases) + 4


@exercise("6.3.2", "BLEU 的截断 n 元组精确率", test=_test_clipped)
def clipped_precision(hyp: str, ref: str, n: int) -> tuple[int, int]:
    h, r = hyp.split(), ref.split()
    hc = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
    rc = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
    matched = sum(min(c, rc[g]) for g, c in hc.items())
    return matched, max(len(h) - n + 1, 0)


answer(
    "6.3.3",
    "错一个声调，BLEU 掉多少",
    r"""
完全正确率要求整句一个音节都不错，所以这一句记 0。

BLEU 数的是 1–4 元组。10 个音节的句子有 10 个一元组、9 个二元组、8 个三元组、7 个四元组。第 5 个音节错了，包含它的 $n$ 元组都对不上：一元组 1 个、二元组 2 个、三元组 3 个、四元组 4 个。于是

$$p_1=\tfrac{9}{10},\quad p_2=\tfrac{7}{9},\quad p_3=\tfrac{5}{8},\quad p_4=\tfrac{3}{7},$$

长度相同，简短惩罚 $\mathrm{BP}=1$，

$$\mathrm{BLEU}=\big(p_1p_2p_3p_4\big)^{1/4}\times100=(0.1875)^{1/4}\times100\approx65.8 .$$

若错的是最后一个音节，包含它的 $n$ 元组各只有 1 个：$p_n=\tfrac{9}{10},\tfrac{8}{9},\tfrac{7}{8},\tfrac{6}{7}$，乘积恰好是 $0.6$，BLEU $\approx0.6^{1/4}\times100\approx88.0$。

同样是“错一个音节”，BLEU 从 88 到 66 不等，取决于错在哪里；完全正确率则一律记 0。所以 BLEU 能反映“差不多对”，却难以解读成“错了几个字”；对拼音这种一一对应的任务，完全正确率（或逐音节准确率）更直观。语料级 BLEU 把所有句子的计数加在一起再算，单句的数字只用来理解它的构成。
""",
)

# --------------------------------------------------------------------------- 6.4


def _test_bm25(fn: Fn) -> int:
    from llmbook.applications.retrieval import BM25

    docs1 = [["a", "b", "c"], ["a", "a", "d"], ["e"]]
    docs2 = [
        ["北京", "天气", "晴"],
        ["上海", "天气", "多云", "多云"],
        [],
        ["北京", "上海", "高铁", "北京", "天气", "预报", "发布"],
    ]
    cases = [
        (["a", "a"], docs1, 1.5, 0.75),
        (["d", "z"], docs1, 1.5, 0.75),
        (["a", "e"], docs1, 1.2, 0.0),
        (["北京", "天气"], docs2, 1.5, 0.75),
        (["多云", "高铁", "多云"], docs2, 2.0, 1.0),
        (["北京"], docs2, 0.0, 0.5),
        ([], docs2, 1.5, 0.75),
    ]
    for query, docs, k1, b in cases:
        bm = BM25([" ".join(d) for d in docs], k1=k1, b=b, tokenizer=str.split)
        want = bm.scores(" ".join(query)).tolist()
        case = f"query={query}, docs={docs}, k1={k1}, b={b}"
        got = _floats(fn(list(query), [list(d) for d in docs], k1, b), case)
        expect(len(got), len(want), case + "（每个段落一个分数）")
        for i, (g, w) in enumerate(zip(got, want)):
            expect_close(g, w, f"{case}，第 {i} 个段落", tol=1e-9)
    return len(cases)


@exercise("6.4.1", "BM25 打分", test=_test_bm25)
def bm25_scores(
    query: Sequence[str], docs: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75
) -> list[float]:
    n_docs = len(docs)
    avgdl = (sum(len(d) for d in docs) / n_docs) or 1.0
    counts = [Counter(d) for d in docs]
    df = Counter(t for c in counts for t in c)
    out = []
    for d, c in zip(docs, counts):
        norm = k1 * (1 - b + b * len(d) / avgdl)
        s = 0.0
        for t in query:  # a repeated query term counts every time
            if c[t]:
                idf = math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * c[t] * (k1 + 1) / (c[t] + norm)
        out.append(s)
    return out


def _test_info_nce(fn: Fn) -> int:
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    cases = []
    for b, dim, tau in [(4, 3, 0.05), (5, 8, 0.5), (3, 2, 1.0), (1, 4, 0.05), (6, 5, 0.2)]:
        q = torch.randn(b, dim, generator=g) * torch.rand(b, 1, generator=g).add(0.2) * 3
        d = torch.randn(b, dim, generator=g) * torch.rand(b, 1, generator=g).add(0.2) * 3
        cases.append((q, d, tau))
    same = torch.eye(3)
    cases.append((same * 2, same, 0.1))  # each question matches its own passage exactly
    for q, d, tau in cases:
        s = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / tau
        want = float(F.cross_entropy(s, torch.arange(q.size(0))))
        case = f"B={q.size(0)}, 维度 {q.size(1)}, τ={tau}"
        got = fn(q.clone(), d.clone(), tau)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise ExerciseFailure(f"{case}：应返回一个数，你的函数返回 {got!r}") from None
        expect_close(got, want, case, tol=1e-4)
    return len(cases)


@exercise("6.4.2", "批内对比损失 InfoNCE", test=_test_info_nce)
def info_nce(q: Any, d: Any, tau: float) -> float:
    import torch
    import torch.nn.functional as F

    s = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / tau
    return float(F.cross_entropy(s, torch.arange(q.size(0))))


answer(
    "6.4.3",
    "随机排序的期望 MRR",
    r"""
随机排序时，答案段落落在每个名次上的概率都是 $1/N$，所以

$$\mathbb E\Big[\frac1R\Big]=\sum_{k=1}^{N}\frac1N\cdot\frac1k=\frac{H_N}{N},\qquad H_N=\sum_{k=1}^N\frac1k ,$$

$$\text{recall@}k=P(R\le k)=\frac{k}{N}\quad(k\le N),\qquad \text{top-1}=\frac1N .$$

$N=10$ 时 $H_{10}=2.929$，期望 MRR 为 $0.293$，recall@5 为 $0.5$——只有 10 个候选时，瞎排也能得到可观的分数，所以比较检索器时一定要写明候选有多少个，并把随机水平一起报告（`retrieval.chance_metrics` 就是这个公式）。

$N$ 很大时 $H_N\approx\ln N+\gamma$（$\gamma\approx0.577$），期望 MRR 约为 $(\ln N+0.577)/N$。例如 $N=10{,}000$ 时约 $9.79/10{,}000\approx0.001$：段落库一大，随机水平几乎为零，表中各检索器远高于它的差距才有意义。
""",
)

# --------------------------------------------------------------------------- 6.5

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

answer(
    "6.10.1",
    "批次装满之后",
    r"""
预期：`max_batch_size=4` 时，吞吐量在 4 个客户端左右就基本不再增长。批次里最多 4 个序列，再多的请求只能在队列里等空出来的槽位；每一步的计算量封顶，每秒生成的词元数也就封顶了（之后只随机器的忙闲上下浮动）。

延迟则相反：客户端超过 4 个以后，多出来的请求要排队，排队时间大约随“客户端数 / 4”线性增长，p50 和 p99 都会上升；p99 上升得更厉害，因为它由排得最久的那些请求决定。64 个客户端时，一个请求前面排着约 60 个请求，每次只有 4 个在生成，要等十几轮才轮到它。

与 `benchmarks/RESULTS.md` 的离线表格（默认 16 个槽位）比较：那里吞吐量一直涨到 16 个客户端附近才趋平，64 个客户端时的加速也大得多。两者合起来说明，连续批处理的收益上限由批次能装多少序列决定，而批次大小又受 KV 缓存的内存限制——这正是 6.6 节 GQA、缓存量化要解决的问题。测的时候注意：客户端和服务器在同一台两核机器上，绝对数字会随机器忙闲起伏，比较时让几个配置轮流测。
""",
)

answer(
    "6.10.2",
    "n=3 的请求与三个单独的请求",
    r"""
对得上。一个 `n=3`、`seed=7` 的请求，第 $i$ 个回答（$i=0,1,2$）用种子 `choice_seed(7, i)` 初始化自己的随机数生成器，其中第 0 个就是 7 本身。所以把它拆成三个 `n=1` 的请求，种子分别取 `choice_seed(7, 0)`、`choice_seed(7, 1)`、`choice_seed(7, 2)`，得到的三段文字与一次请求里的三个回答逐字相同。

为什么同一个种子无论和谁同批都得到同样的文字：

1. **每个序列有自己的随机数生成器**，按它自己的种子初始化，不与批里的其他序列共享，所以别的序列抽了多少次随机数不影响它；
2. **每个字只抽一个随机数**：`sample_token` 用一个均匀随机数在累积分布上查表（逆变换采样），抽取的次数与批次的组成无关；
3. **每一行的 logits 只取决于这一行自己的词元**：批里的序列各占一个槽位，注意力掩码挡住了缓存里不属于它的部分，所以别的序列不会改变它的下一个字的分布。

严格地说，批次形状不同，矩阵乘法的求和顺序可能不同，logits 会有最后几位的浮点差异；只有当随机数恰好落在两个候选的分界处时，这点差异才会改变抽到的字，实际中极少发生。
""",
)

answer(
    "6.10.3",
    "未实现的字段该拒绝，而不是默默接受",
    r"""
**拒绝的好处。** 客户端发来 `presence_penalty=1.0`，是期待回答里少些重复。如果服务器默默接受、什么也不做，用户会以为惩罚已经生效，拿着“没有效果”的结论去调参数、写报告，错误要很久以后才被发现。`extra="forbid"` 让服务器回一个 422，明确说出哪个字段不被支持：错误发生在请求的那一刻、发生在调用方，调用方可以去掉这个字段或换一个服务。同一个机制也能抓住拼错的字段名（`temprature`），理由完全一样：不支持的选项被悄悄忽略，比明确报错更危险。

**如果要实现它**：OpenAI 的 `presence_penalty` 从每个已经在本序列里出现过的词元的 logit 上减去一个固定值（`frequency_penalty` 则按出现次数成比例地减）。它依赖每个序列各自已经生成的词元，所以应当在 `batching.py` 逐个序列采样的地方修改：`_advance` 拿到这一行的 logits、调用 `sample_token` 之前（或者给 `sample_token` 多传一个参数），按 `seq.new_ids` 里出现过的词元减去惩罚，再做温度和 top-p 处理。它必须按行做，不能在整批的 `_step` 里统一做，因为批里每个序列生成过的词元各不相同。还要把字段加进 `SamplingFields`（声明取值范围，如 $[-2,2]$）和传给工作线程的采样参数里，并补上测试。
""",
)


def _test_sse(fn: Fn) -> int:
    def data(obj: Any) -> str:
        return "data: " + json.dumps(obj, ensure_ascii=False)

    def chunk(content: Any = None, finish: Any = None, role: Any = None) -> str:
        delta: dict[str, Any] = {}
        if role is not None:
            delta["role"] = role
        if content is not ...:
            delta["content"] = content
        return data(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    usage = data(
        {
            "id": "chatcmpl-1",
            "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        }
    )
    cases = [
        (
            [
                chunk(..., role="assistant"),
                "",
                chunk("春"),
                "",
                chunk("风"),
                "",
                chunk("", finish="length"),
                "",
                usage,
                "",
                "data: [DONE]",
                "",
            ],
            "春风",
        ),
        (
            [
                ": keep-alive",
                chunk(None, role="assistant"),
                "",
                chunk("明月"),
                "",
                chunk("光，"),
                "",
                chunk(..., finish="stop"),
                "",
                "data: [DONE]",
                "",
            ],
            "明月光，",
        ),
        ([chunk("明"), "data: [DONE]", chunk("月")], "明"),
        (["data: [DONE]", ""], ""),
        ([chunk("白日"), "", usage, "", chunk("依山尽"), "", "data: [DONE]"], "白日依山尽"),
    ]
    for i, (lines, want) in enumerate(cases):
        shown = [line if len(line) < 50 else line[:47] + "…" for line in lines]
        expect(fn(list(lines)), want, f"第 {i + 1} 个事件流 {shown}")
    return len(cases)


@exercise("6.10.4", "拼起流式输出", test=_test_sse)
def sse_text(lines: Sequence[str]) -> str:
    out = []
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators and ": comment" lines
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            break
        event = json.loads(payload)
        for choice in event.get("choices", []):
            out.append(choice.get("delta", {}).get("content") or "")
    return "".join(out)


# --------------------------------------------------------------------------- 6.11

answer(
    "6.11.1",
    "律诗作示例，只给半首作示例",
    r"""
**能放几首。** 五言律诗 8 句，每句 5 字加 1 个标点，共 48 个字，加上 `<bos>` 和换行是 50 个位置；七言律诗每句 8 个位置，共 64 字、66 个位置。80 字的窗口放下一首示例、再加新诗的 `<bos>` 和最多 9 个字的首句（$66+1+9=76$）就满了，所以 $k$ 只能取 1，放不下第二首。

**跟随比例。** 预期与绝句差不多：单个示例的作用来自训练流里“相邻两首诗同体裁”的统计规律，律诗在诗集里多半也成组出现。可以像 6.11 节那样数一数训练流里“律诗之后的下一首”首句字数相同的比例，与实测的跟随比例对照；两者接近，就再次说明这种“上下文学习”是训练数据里相邻诗的相关性。

**只给前两句。** 提示变成 `<bos> 白日依山尽，黄河入海流。⏎ <bos>`：一首只写了两句就换行的诗在训练数据里几乎不存在，提示偏离了训练分布。但句长的信息仍然清清楚楚，预期模型多半仍会跟随，比例可能比完整示例略低或更不稳定。这个实验的价值在于把“示例的体裁”和“示例是否像训练数据”分开：如果不完整的示例同样有效，说明模型利用的是上文的局部特征（句长），而不是“一首完整的诗”这个整体。结论以你的实测和区间为准。
""",
)

answer(
    "6.11.2",
    "原诗就在上文里",
    r"""
如果模型会从上文复制，这道题就变成了“在上文里找到题面，抄下它后面的那一句”，准确率应当接近 100%——对一个有归纳头的模型，这几乎是送分题。

但实验三表明 `gpt-poetry` 几乎不会复制：同一首诗写第二遍时，每字损失只下降了一点点，随机字伪绝句第二遍的命中率也只有靠猜标点的水平。所以合理的预测是：准确率会比零样本高一些（上文里出现过的字，模型给它们的概率或多或少会升高一点），但远远到不了 100%，提升甚至可能落在区间之内。

动手时注意两点：窗口要装得下原诗（五言绝句 24 字加 `<bos>` 与换行）、题面和选项，只取五言题正好；比较时用同一批题、同一个模型，用配对的自助法看准确率的差是否显著。若结果与预测不符（例如准确率大幅提高），说明模型其实学到了一些复制能力，只是在实验三的平均损失里没有显出来，值得按位置细看第二遍的损失。
""",
)

answer(
    "6.11.3",
    "现代汉语 GPT 会不会复制",
    r"""
做法与实验三相同，只是换成 `gpt-modern` 和它自己的字表：取留出的《人民日报》段落，截成窗口装得下两遍的长度，按训练格式写两遍；再用随机常用字拼成的串作对照。比较第一遍和第二遍各位置的平均损失和命中率。

预期：新闻语料里人名、地名、机构名和数字在同一篇文章里反复出现，“回头看上文里出现过的专名”在训练中能降低损失，所以 `gpt-modern` 比 `gpt-poetry` 更有理由学会复制，第二遍损失的下降应当更明显，尤其是在专名和数字的位置上。

但也可能看不到明显的差别：`gpt-modern` 只有六十多万参数、在 CPU 上只预训练了几十分钟（6.1 节），归纳头的形成需要足够的训练，在这么短的训练里未必出现。两种结果都与“能力跟着数据走”一致，解读时要分开两件事：数据里有没有奖励复制的结构（新闻有，唐诗几乎没有），以及模型的容量和训练量够不够把它学出来。若 `gpt-modern` 的下降明显大于 `gpt-poetry`，就是支持前者的证据；若两者都几乎不降，则说明在这个规模上后者是瓶颈。
""",
)

answer(
    "6.11.4",
    "全对才得分的指标为什么像“突变”",
    r"""
五个词元全对的概率是 $q^5$：

| 单个词元的正确率 $q$ | 0.5 | 0.7 | 0.9 | 0.95 | 0.99 |
| --- | --- | --- | --- | --- | --- |
| 整题全对 $q^5$ | 0.031 | 0.168 | 0.590 | 0.774 | 0.951 |

$q$ 从 0.5 均匀地涨到 0.7，整题正确率只从 3% 涨到 17%，几乎还贴着地面；$q$ 再从 0.7 涨到 0.9，整题正确率一下子跳到 59%。若 $q$ 随模型规模的对数平稳上升，画在同一个横轴上的 $q^5$ 就是一条先平后陡的曲线，看起来像能力在某个规模“突然出现”。题目要求的词元越多，指数越大，这个“拐点”越陡、越靠后。

换成连续的指标，例如正确答案的对数似然 $5\log q$，它随 $q$ 平稳变化，曲线就没有突变。所以看到“涌现”的曲线时，先问三件事：指标是不是“全对才得分”这类不连续的判定；横轴上有几个规模点，拐点附近有没有点；每个点有没有置信区间。这并不否认有些能力确实要到一定规模才可用——对用户来说，一道题答对与否恰恰是全有或全无的——但“可预测的平稳进步”和“不可预测的突变”是两回事，要用连续指标才分得开。
""",
)
