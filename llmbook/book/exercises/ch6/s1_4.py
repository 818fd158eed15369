"""Exercises of sections 6.1, 6.2, 6.3, 6.4 (chapter 6)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises.ch6._helpers import Fn, _floats, _ints, _pair, _tensor


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
