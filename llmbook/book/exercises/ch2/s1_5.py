"""Exercises of sections 2.1, 2.2, 2.3, 2.4, 2.5 (chapter 2)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect, expect_close
from llmbook.book.exercises.ch2._helpers import (
    _analogy_space,
    _expect_raises,
    _pair,
    _TwoCharTokenizer,
)

answer(
    "2.1.1",
    "n-gram 表与词向量表的参数量",
    r"""
一个 n 元模型的上文是前 $n-1$ 个词元，可能的上文有 $|V|^{n-1}$ 种；每个上文对应一个 $|V|$ 维的
条件分布，因为各项之和为 1，只有 $|V|-1$ 个自由参数。所以完整的表共有

$$
|V|^{\,n-1}\,(|V|-1)
$$

个自由参数。取 $|V|=6000$、$n=3$：$6000^2\times5999\approx3.6\times10^7\times6\times10^3
\approx2.2\times10^{11}$，两千多亿个数，比 GPT-3 的参数还多。而一张 $d=128$ 的词向量表只有
$6000\times128=768{,}000$ 个参数，小了五个数量级以上——它的大小随 $|V|$ 线性增长，与 $n$ 无关。

`NGramLM` 不需要这么多存储，因为它从不显式地存完整的表：它只存训练语料中**真正出现过**的
1 到 $n$ 元组合的计数（排好序的整数数组），种类数不超过训练语料的位置数乘以阶数，在一百多万字的
唐诗上只是几百万个数；没见过的组合的概率由平滑公式在查询时从低阶计数现算出来。代价是它没有
泛化能力：没见过的组合只能退回低阶，不能从相似的组合借用证据——这正是词向量要解决的问题。
""",
)

answer(
    "2.1.2",
    "从词向量到语言模型",
    r"""
词向量只是“词 → 向量”的一张查找表，它给出词与词之间的相似度，却不给出任何序列上的概率，
也就不能回答“下一个词是什么”，所以它本身不是语言模型。Word2Vec 的训练目标虽然是预测上下文，
但它预测的是窗口内不分先后的邻居，最后被保留下来的也只是向量表本身。

要得到一个只看前 $n-1$ 个词的神经语言模型（Bengio 等人 2003 年的做法），在词向量表之上加三样东西：
把前 $n-1$ 个词的向量拼接成一个 $(n-1)d$ 维的向量；接一层（或几层）非线性的隐藏层，如
$\mathbf h=\tanh(W\mathbf x+\mathbf b)$；再接一个输出层和 softmax，
$P(w_t\mid w_{t-n+1..t-1})=\operatorname{softmax}(U\mathbf h+\mathbf c)_{w_t}$。整个网络连同词向量
一起用最大似然（交叉熵）训练。

与同阶的 n-gram 相比，区别在没见过的组合上。n-gram 若没见过“江东”之后的某个字，只能退回低阶，
完全用不上“江南”之后见过的证据；神经模型里，“江南”和“江东”出现在相似的上下文中，向量相近，
隐藏层的输入相近，输出的分布也就相近，见过的组合的证据自然地分给了相似的组合。参数量也不再随 $n$
指数增长，只随 $n$ 线性增长（拼接的向量变长）。
""",
)


# ---------------------------------------------------------------------- 2.2 清洗与分词


def _test_max_match(fn: Callable[..., Any]) -> int:
    life = {"研究", "研究生", "生命", "起源"}
    bridge = {"南京", "南京市", "市长", "长江", "大桥", "长江大桥"}
    prc = {"中华人民共和国", "中华", "人民", "共和国", "成立"}
    cases: list[tuple[str, set[str], int, list[str], str]] = [
        ("研究生命起源", life, 3, ["研究生", "命", "起源"], "经典的歧义句"),
        ("研究生命起源", life, 2, ["研究", "生命", "起源"], "max_len = 2 时取不到“研究生”"),
        (
            "他说的确实在理",
            {"的确", "确实", "实在", "在理"},
            4,
            ["他", "说", "的确", "实在", "理"],
            "交集型歧义",
        ),
        ("南京市长江大桥", bridge, 4, ["南京市", "长江大桥"], "最长的词优先"),
        ("南京市长江大桥", bridge, 2, ["南京", "市长", "江", "大桥"], "max_len = 2"),
        (
            "中华人民共和国成立",
            prc,
            3,
            ["中华", "人民", "共和国", "成立"],
            "词典中比 max_len 长的词用不上",
        ),
        ("ABC模型", {"模型"}, 4, ["A", "B", "C", "模型"], "词典里没有的字切成单字"),
        ("", life, 3, [], "空字符串"),
    ]
    for text, words, max_len, want, case in cases:
        expect(
            fn(text, words, max_len),
            want,
            f"{case}：max_match({text!r}, {sorted(words)}, {max_len})",
        )
    return len(cases)


@exercise("2.2.1", "正向最大匹配分词", test=_test_max_match)
def max_match(text: str, words: set[str], max_len: int) -> list[str]:
    # 贪心：一旦取了最长的“研究生”就不再回头，于是剩下“命”。jieba 切成“研究/生命/起源”，
    # 因为它在所有可能切分组成的有向无环图上找整句概率最大的路径，而不是每一步只看眼前最长的词。
    out: list[str] = []
    i = 0
    while i < len(text):
        for size in range(min(max_len, len(text) - i), 0, -1):
            piece = text[i : i + size]
            if size == 1 or piece in words:
                out.append(piece)
                i += size
                break
    return out


def _test_halfwidth(fn: Callable[..., Any]) -> int:
    from llmbook.text.chinese import FULLWIDTH_ALNUM

    cases = [
        ("１９９８年１月１日", "全角数字"),
        ("ＧＰＴ－２，ｏｋ！", "字母、数字与全角标点混排"),
        ("ＡＺａｚ０９", "两端的字母和数字"),
        ("＠［｀｛／：", "紧挨着字母、数字区间的全角符号"),
        ("全角空格　不变，句号。", "全角空格和中文标点"),
        ("", "空字符串"),
    ]
    for text, case in cases:
        expect(fn(text), text.translate(FULLWIDTH_ALNUM), f"{case}：to_halfwidth({text!r})")
    return len(cases)


@exercise("2.2.2", "全角字母数字转半角", test=_test_halfwidth)
def to_halfwidth(text: str) -> str:
    out = []
    for ch in text:
        half = chr(ord(ch) - 0xFEE0) if "\uff10" <= ch <= "\uff5a" else ch
        out.append(half if half.isascii() and half.isalnum() else ch)
    return "".join(out)


answer(
    "2.2.3",
    "语言模型为什么不去停用词",
    r"""
停用词里不只有“的”“了”这类虚词，还有“不”“没”这样决定意思的词。“我不喜欢这部电影”去掉停用词后，
“我”和“不”都没了，剩下的是“喜欢”“电影”这样的内容词，意思正好反了；“他没有去北京”会变成“去 北京”。即使只去掉“的”“了”“在”，
剩下的也不再是通顺的中文：“我吃了饭”和“我在吃饭”的区别就在这两个字上。

语言模型要学的是整个语言的分布，它必须会预测每一个词，包括最常见的虚词；用去过停用词的文本训练，
学到的是另一种“电报体”的语言，生成的文本不合语法，算出的概率和 bpc 也不能与别的模型比较。
何况高频虚词正是最容易预测的部分，去掉它们并不能让模型“专注于内容”。

去停用词合理的场合，是只关心“这段文字讲什么”、用词袋表示文本的下游任务：关键词提取、基于
TF-IDF 的检索、主题分类和聚类。那里词序和语法本来就被丢掉了，“的”“是”在每篇文档里都出现很多次，
只会淹没真正区分主题的词。但停用词表要按任务定：情感分析里“不”“没”恰恰是关键特征，不能去掉。
""",
)


# ---------------------------------------------------------------------- 2.3 分词质量


def _test_seg_prf(fn: Callable[..., Any]) -> int:
    from llmbook.text.chinese import segmentation_scores

    long_ok = [["中国", "人民", "银行", "决定", "下调", "存款", "准备金率", "，", "支持", "经济"]]
    cases: list[tuple[list[list[str]], list[list[str]], str]] = [
        ([["江", "泽民", "同志"]], [["江泽民", "同志"]], "切得比标准粗"),
        ([["一", "一一"]], [["一一", "一"]], "同一个字符串出现两次，但区间不同"),
        (
            long_ok + [["天安门"]],
            long_ok + [["天", "安门"]],
            "两句：按词数合计（微平均），不是逐句平均",
        ),
        ([["我", "爱", "北京"]], [["我", "爱", "北京"]], "完全一致"),
        ([["研究生", "命"]], [["研究", "生命"]], "没有一个词对上（F1 取 0）"),
    ]
    for gold, pred, case in cases:
        s = segmentation_scores(gold, pred)
        got = fn(gold, pred)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise ExerciseFailure(
                f"{case}：应返回三元组 (precision, recall, f1)，你的函数返回 {got!r}"
            )
        for name, value, want in zip(
            ("精确率", "召回率", "F1"), got, (s["precision"], s["recall"], s["f1"])
        ):
            expect_close(value, want, f"{case}（gold={gold}, pred={pred}），{name}", 1e-9)
    _expect_raises(fn, ([["今天"]], [["明天"]]), ValueError, "两种分词连起来不是同一段文字")
    return len(cases) + 1


@exercise("2.3.1", "分词的精确率、召回率与 F1", test=_test_seg_prf)
def seg_prf(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> tuple[float, float, float]:
    def spans(words: Sequence[str]) -> set[tuple[int, int]]:
        out, i = set(), 0
        for w in words:
            out.add((i, i + len(w)))
            i += len(w)
        return out

    n_gold = n_pred = n_ok = 0
    for g, p in zip(gold, pred, strict=True):
        if "".join(g) != "".join(p):
            raise ValueError(f"{g} 和 {p} 不是同一段文字的分词")
        gs, ps = spans(g), spans(p)
        n_gold, n_pred, n_ok = n_gold + len(gs), n_pred + len(ps), n_ok + len(gs & ps)
    precision = n_ok / n_pred if n_pred else 0.0
    recall = n_ok / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


answer(
    "2.3.2",
    "切得太粗时精确率高于召回率",
    r"""
把 $m$ 对互不重叠的相邻标准词各合并成一个词，其余全对。每合并一对，系统输出就少一个词，
并且这两个标准词都没被切对，合并出的那个词也不在标准答案里：

- 系统输出的词数 $|S|=|G|-m$；
- 两者共有的词数 $|G\cap S|=|G|-2m$（被合并的 $2m$ 个标准词都没对上，其余都对上）。

所以

$$
P=\frac{|G|-2m}{|G|-m},\qquad R=\frac{|G|-2m}{|G|}.
$$

两者分子相同，而 $P$ 的分母 $|G|-m$ 小于 $R$ 的分母 $|G|$，所以只要 $m\ge1$（且 $|G|>2m$，分子为正），
就有 $P>R$。反过来，一个切得太细的分词器（把标准词拆开）召回率会高于精确率。

本节 jieba 的精确率（约 0.86）高于召回率（约 0.79），与这个推导一致：分歧表里最常见的“一/种”
“这/是”“江/泽民”“人民/检察院”“本报/讯”，都是 jieba 把标准答案中的两个词合成了一个——它整体上比
北大规范切得粗。
""",
)

answer(
    "2.3.3",
    "用户词典解决不了的分歧",
    r"""
用户词典只能往词典里**加词**，提高某些片段成词的概率，所以它解决的是 jieba 切得太细或不认识的情形：
新词、专名、术语（表中的“1997年”“其琛”这类词）。它解决不了 jieba 切得**太粗**的分歧：“一种”“这是”
“就是”“江泽民”“人民检察院”“本报讯”在 jieba 的词典里本来就是高频词，加再多的词也不会让它把这些词拆开，
而这类分歧恰恰是分歧表里最多的，所以 $F_1$ 只提高了一点。

若一定要与标注一致，可以从词典里删掉这些词（`jieba.del_word("一种")`），或用
`jieba.suggest_freq(("一", "种"), tune=True)` 调低它们成词的频率，迫使 jieba 切开；人名则可以先用带词性
标注的分词（`jieba.posseg`）找出人名，再按姓氏表把姓和名拆开；也可以在分词之后按规则后处理。

对训练语言模型来说，通常不值得。语言模型不在乎“一种”是一个词元还是两个，在乎的是同一段文字在训练
和使用时总被切成同样的样子：规范统一比符合某一套标注规范更重要。与其花力气把 jieba 调成北大规范，
不如像后来的模型那样改用字级或子词级分词器，从根本上绕开“什么是词”的问题。
""",
)


# ---------------------------------------------------------------------- 2.4 分词器


def _test_char_vocab(fn: Callable[..., Any]) -> int:
    from llmbook.text.tokenizers import CharTokenizer

    cases: list[tuple[list[str], int, str]] = [
        (["床前明月光", "明月几时有"], 1, "两句诗，min_freq = 1"),
        (["床前明月光", "明月几时有"], 2, "两句诗，min_freq = 2"),
        (["甲乙", "乙甲丙"], 1, "次数相同按第一次出现的先后（不是按码位）"),
        (["人民日报，人民日报。", "2022 年"], 1, "标点、数字和空格也是字"),
        (["你好"], 3, "没有一个字达到阈值"),
    ]
    for texts, min_freq, case in cases:
        want = CharTokenizer.fit(texts, min_freq=min_freq).itos
        expect(fn(texts, min_freq), want, f"{case}：char_vocab({texts}, {min_freq})")
    return len(cases)


@exercise("2.4.1", "字级词表", test=_test_char_vocab)
def char_vocab(texts: Sequence[str], min_freq: int) -> list[str]:
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(t)
    # Counter 按插入顺序保存，sorted 是稳定排序：次数相同的保持第一次出现的先后
    kept = [ch for ch, c in sorted(counts.items(), key=lambda x: -x[1]) if c >= min_freq]
    return ["<pad>", "<unk>", "<bos>", "<eos>", *kept]


def _test_tok_stats(fn: Callable[..., Any]) -> int:
    from llmbook.text.bpe import train_bpe
    from llmbook.text.tokenizers import CharTokenizer, compare_tokenizers

    toks: list[tuple[Any, list[str], str]] = [
        (CharTokenizer.fit(["今天天气很好"]), ["今天天气不错", "好"], "字级分词器，有没见过的字"),
        (
            train_bpe(["人民日报，人民日报。人民代表大会"], 300),
            ["人民日报社", "人民代表"],
            "字节级 BPE（没有 <unk>，一个词元可以是多个字，也可以不到一个字）",
        ),
        (_TwoCharTokenizer(), ["人民日报好", "中国经济发展"], "每两个字一个词元的分词器"),
    ]
    for tok, texts, case in toks:
        row = compare_tokenizers({"tok": tok}, texts)[0]
        cpt, unk = _pair(fn(tok, texts), f"{case}，文本 {texts}", "(chars_per_token, unk_rate)")
        expect_close(cpt, 1 / row["tokens_per_char"], f"{case}，文本 {texts}，每词元字数", 1e-9)
        expect_close(unk, row["unk_rate"], f"{case}，文本 {texts}，<unk> 比例", 1e-9)
    return len(toks)


@exercise("2.4.2", "每词元字数与 <unk> 比例", test=_test_tok_stats)
def tok_stats(tok: Any, texts: Sequence[str]) -> tuple[float, float]:
    n_chars = n_tok = n_unk = 0
    for t in texts:
        ids = tok.encode(t)
        n_chars += len(t)
        n_tok += len(ids)
        n_unk += sum(1 for i in ids if i == tok.unk_id)
    return n_chars / n_tok, n_unk / n_tok


answer(
    "2.4.3",
    "让字级分词器也无损",
    r"""
几种办法，各有代价：

- **字节回退**（SentencePiece 的 `byte_fallback` 就是这样做的）：词表里另加 256 个字节词元，遇到词表外的字，
  就把它的 UTF-8 字节（汉字是三个）逐个编成字节词元，解码时再把字节拼回去。任何字符串都能还原，词表只
  多 256 项。代价是生僻字要占三个词元，模型要学会成组地输出字节，生成时也可能输出拼不成合法 UTF-8 的
  字节序列，解码时要处理。
- **预先把所有字放进词表**：例如把全部约两万个常用 CJK 统一汉字、ASCII 和常见标点都加进词表，不管训练
  语料里有没有。代价是大量词元在训练中从未出现，它们的嵌入行和输出行都只是随机初始值，模型几乎不会
  正确地预测它们；而且 Unicode 有十几万个字符（还有表情符号、各种文字），终究列不全。
- **转义拼写**：遇到词表外的字，输出一个特殊标记再跟上它的码位（如 `<U+56E7>` 拆成若干个十六进制数字
  词元）。能还原，但序列变长，模型还要学这种拼写规则。
- **空格单独处理**：空格的问题只是训练语料里恰好没有空格，可以把空格、换行、制表符这些空白字符固定放进
  词表（或像 SentencePiece 那样把空格换成一个可见的符号 `▁` 当作普通字符）。代价几乎为零。

字节级 BPE 其实就是把“字节回退”做到了底：从字节出发，常见的字被合并成一个词元，少见的字留在字节层面，
所以永远不会有 `<unk>`。
""",
)


# ---------------------------------------------------------------------- 2.5 词向量


def _test_analogy(fn: Callable[..., Any]) -> int:
    from llmbook.text.embeddings import Embeddings

    n = 0
    toy = {
        "北京": [1.0, 0.0, 0.2],
        "中国": [0.0, 1.0, 0.2],
        "东京": [1.0, 0.0, -0.3],
        "日本": [0.0, 1.0, -0.3],
        "巴黎": [1.0, 0.1, 0.9],
        "法国": [0.1, 1.0, 0.9],
    }
    expect(fn(toy, "北京", "中国", "东京"), "日本", "北京 : 中国 = 东京 : ?（小例子）")
    n += 1
    space = _analogy_space()
    emb = Embeddings(list(space), np.stack(list(space.values())))
    for a, b, c in [
        ("词0", "词1", "词2"),
        ("词3", "词4", "词5"),
        ("词7", "词11", "词13"),
        ("词8", "词9", "词10"),
        ("词20", "词21", "词22"),
        ("词30", "词31", "词32"),
    ]:
        want = emb.analogy(a, b, c, k=1)[0][0]
        got = fn(space, a, b, c)
        expect(got, want, f"40 个长短不一的随机 6 维向量，{a} : {b} = {c} : ?")
        n += 1
    return n


@exercise("2.5.1", "3CosAdd 类比", test=_test_analogy)
def analogy(vectors: Mapping[str, Sequence[float] | npt.ArrayLike], a: str, b: str, c: str) -> str:
    def unit(w: str) -> npt.NDArray[np.float64]:
        v = np.asarray(vectors[w], dtype=float)
        return v / np.linalg.norm(v)

    q = unit(b) - unit(a) + unit(c)
    q = q / np.linalg.norm(q)
    candidates = [w for w in vectors if w not in (a, b, c)]
    return max(candidates, key=lambda w: float(unit(w) @ q))


answer(
    "2.5.2",
    "两两余弦的平均值",
    r"""
把和向量的长度平方展开：

$$
\Bigl\lVert\sum_{i=1}^{n}\mathbf u_i\Bigr\rVert^2=\sum_{i=1}^{n}\sum_{j=1}^{n}\mathbf u_i^\top\mathbf u_j
=\sum_{i=1}^{n}\lVert\mathbf u_i\rVert^2+\sum_{i\ne j}\mathbf u_i^\top\mathbf u_j
=n+\sum_{i\ne j}\cos(\mathbf u_i,\mathbf u_j),
$$

这里用到了单位向量 $\lVert\mathbf u_i\rVert^2=1$，以及单位向量的内积就是余弦。有序对 $(i,j)$、$i\ne j$
共有 $n(n-1)$ 个（每个无序对算两次，两次的余弦相同，不影响平均值），所以

$$
\frac{1}{n(n-1)}\sum_{i\ne j}\cos(\mathbf u_i,\mathbf u_j)=\frac{\lVert\sum_i\mathbf u_i\rVert^2-n}{n(n-1)}.
$$

只要把这一档的单位向量加起来、求一次长度，计算量是 $O(nd)$，而不是构造 $n\times n$ 矩阵的 $O(n^2d)$；
单是出现 5–9 次的词就有六千多个，这一点很重要。

因为 $\lVert\sum_i\mathbf u_i\rVert^2\ge0$，平均值至少是 $-n/(n(n-1))=-1/(n-1)$，在单位向量之和为零时取到
（例如 $n=2$ 时两个相反的向量，平均余弦为 $-1$）；$n$ 很大时这个下界接近 0，所以一大批向量不可能两两都
“相反”。平均值最大为 1，当且仅当 $\lVert\sum_i\mathbf u_i\rVert=n$，即所有向量完全同向。本节 3 轮模型里
出现 5–9 次的词平均余弦超过 0.9，说明它们几乎都指向同一个方向。
""",
)

answer(
    "2.5.3",
    "比较词表不同的模型",
    r"""
`min_count` 越高，词表越小，凡是题面含有生僻词的类比题都落到词表之外，成了“答不了”的题。被排除的
恰恰是难题：生僻词的向量训练得最差，这些题本来最容易答错。只看可答题，等于让模型自己挑选考题，
剩下的都是高频词之间的简单题，准确率自然升高。可是模型实际能答对的题变少了（按全部题算，`min_count=20`
答对的题比 `min_count=2` 少），对使用者来说它变差了，而不是变好了。

公平的做法有两种：

1. 以**全部题**为分母报告准确率，答不了的题算错（本节的图就是这样画的），同时报告覆盖率，让读者看到
   分数里有多少是因为“没法答”而丢的；
2. 或者只在**所有被比较的模型都能答**的那部分题（各模型可答题的交集）上比较准确率，保证大家做的是同一
   份试卷。

相似度评测同理：要报告参与计算 Spearman 系数的词对占多少，只在共同覆盖的词对上比较。
""",
)


# ---------------------------------------------------------------------- 2.6 负采样跳字模型
