"""练习 1.4.4 与 1.4.5：按依赖图排出阅读顺序（拓扑排序），以及把依赖细化到节。"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect

_BOOK_EDGES = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (5, 7), (5, 8), (6, 9), (7, 9), (8, 9)]


def _test_reading_order(fn: Callable[..., Any]) -> int:
    cases: list[tuple[list[tuple[int, int]], list[int], list[int], str]] = [
        (_BOOK_EDGES, [6], [1, 2, 3, 4, 5, 6], "本书的依赖图，只读第 6 章"),
        (_BOOK_EDGES, [7, 2], [1, 2, 3, 4, 5, 7], "想读第 7 章和第 2 章"),
        (_BOOK_EDGES, [9], list(range(1, 10)), "本书的依赖图，第 9 章要读全书"),
        (_BOOK_EDGES, [1], [1], "第 1 章没有前置章节"),
        (_BOOK_EDGES, [], [], "没有想读的章"),
        ([(3, 1), (2, 1)], [1], [2, 3, 1], "前置章节编号比目标大：先读编号小的可读章"),
        ([(4, 2), (1, 3), (3, 2)], [2], [1, 3, 4, 2], "编号最小的章（1）先读，它解锁 3"),
        ([(1, 2)], [5], [5], "不在任何一条边上的章"),
    ]
    for edges, targets, want, case in cases:
        expect(fn(edges, targets), want, f"{case}（edges={edges}，targets={targets}）")
    try:
        got = fn([(1, 2), (2, 3), (3, 1)], [3])
    except ValueError:
        pass
    else:
        raise ExerciseFailure(f"有环的依赖图 1→2→3→1：应抛出 ValueError，你的函数返回 {got!r}")
    return len(cases) + 1


@exercise("1.4.4", "按依赖图排出阅读顺序", test=_test_reading_order)
def reading_order(edges: Sequence[tuple[int, int]], targets: Sequence[int]) -> list[int]:
    before: dict[int, set[int]] = {}
    for a, b in edges:
        before.setdefault(b, set()).add(a)
    needed: set[int] = set()
    todo = list(targets)
    while todo:
        c = todo.pop()
        if c not in needed:
            needed.add(c)
            todo.extend(before.get(c, ()))
    waiting = {c: len(before.get(c, set()) & needed) for c in needed}
    ready = [c for c, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        c = heapq.heappop(ready)
        order.append(c)
        for d in needed:
            if c in before.get(d, ()):
                waiting[d] -= 1
                if waiting[d] == 0:
                    heapq.heappush(ready, d)
    if len(order) < len(needed):
        raise ValueError("依赖图中有环：这些章节互为前置，排不出阅读顺序")
    return order


answer(
    "1.4.5",
    "把依赖图细化到节",
    r"""
不需要。检索式问答（6.4 节）直接用到的是：分词与词表（2.2、2.4 节）、Transformer 解码器的结构
（3.x 中讲注意力与 Transformer 的几节）、GPT 检查点的加载与生成（5.3、5.4 节）以及评估用的
bpc 与困惑度（1.2 节）。词向量（2.5、2.6 节）、循环网络、大部分数学推导和消融实验（5.5 节）
都可以先跳过，等需要时再回来。细化之后，要读的内容通常只剩章级答案的一半左右，具体比例取决于
你画出的边。

细化的代价是维护：正文改了，依赖也会变，手写的图很快就会过时。更好的办法是让代码生成它：
每个页面里的 `` {ref}`sec-N-M` `` 交叉引用就是“这一节用到了那一节”的边，用正则表达式从所有 `.md`
里抽出这些引用，就得到节级的有向图；再用 1.4.4 的 `reading_order` 排出顺序。要注意引用并不都是
前置依赖（有的是“后文还会讲到”的前向引用，它们会造成环），可以只保留从编号大的节指向编号小的节的
边，或者在页面里用不同的写法区分“前置”与“参见”。
""",
)
