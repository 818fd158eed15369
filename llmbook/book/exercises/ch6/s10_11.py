"""Exercises of sections 6.10, 6.11 (chapter 6)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect

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
