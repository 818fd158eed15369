"""Exercises of section 6.12 (retrieval-augmented generation)."""

from __future__ import annotations

from collections.abc import Sequence

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect
from llmbook.book.exercises.ch6._helpers import Fn


def _test_pack(fn: Fn) -> int:
    cases = [
        ("几号？", ["甲乙丙", "丁戊"], 20, 2),
        ("几号？", ["甲乙丙丁戊己庚辛", "子丑"], 8, 2),  # the first is cut to 5 characters
        ("几号？", ["甲乙丙丁戊己庚辛", "子丑"], 8, 6),  # too little room: dropped
        ("几号？", ["甲乙", "丙丁戊己庚辛壬癸", "子"], 9, 3),  # cut, and "子" is not taken
        ("几号？", ["甲乙", "丙丁戊己庚辛壬癸", "子"], 9, 5),  # dropped, and "子" neither
        ("问？", [], 5, 1),
        ("问？", ["一二三"], 2, 1),  # the question exactly fills the budget
        ("什么时候？", ["今天", "明天", "后天"], 11, 1),
    ]
    for question, passages, budget, min_piece in cases:
        case = f"question={question!r}, passages={passages}, budget={budget}, min_piece={min_piece}"
        want = pack_passages(question, passages, budget, min_piece)
        got = fn(question, list(passages), budget, min_piece)
        try:
            got = [str(p) for p in got]
        except TypeError:
            raise ExerciseFailure(
                f"{case}：应返回段落（字符串）的列表，你的函数返回 {got!r}"
            ) from None
        expect(got, want, case)
    try:
        fn("一二三四五六？", ["甲"], 5, 1)
    except ValueError:
        pass
    else:
        raise ExerciseFailure("问题本身 7 个字、预算只有 5 时，应当抛出 ValueError")
    return len(cases) + 1


@exercise("6.12.1", "在预算内装入检索到的段落", test=_test_pack)
def pack_passages(
    question: str, passages: Sequence[str], budget: int, min_piece: int = 16
) -> list[str]:
    used = len(question)
    if used > budget:
        raise ValueError(f"问题本身 {used} 个字，超过预算 {budget}")
    kept: list[str] = []
    for p in passages:
        room = budget - used
        if len(p) <= room:
            kept.append(p)
            used += len(p)
            continue
        if room >= min_piece:
            kept.append(p[:room])
        break
    return kept


answer(
    "6.12.2",
    "端到端准确率的上界",
    r"""
把事件分开：$G$ 表示金标准段落进入了上下文，$C$ 表示回答正确。由全概率公式

$$P(C)=P(G)\,P(C\mid G)+P(\neg G)\,P(C\mid \neg G).$$

$P(G)$ 就是装入上下文后的召回率（检索到且没有在打包时被截掉或丢掉），$P(C\mid G)$ 可以用“给金标准段落”的条件近似——不过多放几段干扰段落后阅读器更难挑中，实际的 $P(C\mid G)$ 往往比只给金标准段落时低。$P(C\mid\neg G)$ 是资料里没有答案时仍然答对的概率：答案恰好出现在别的段落里（同一事件被多篇报道）或者被猜中，通常很小。于是端到端准确率大约不超过“召回率 × 金标准条件下的准确率”再加一个小项。

用本节的表格代入：金标准条件下的准确率本身就是天花板，检索器再好也不能超过它；两者都低时，先改进哪一环，要看哪一个因子更小——这正是本节把错误拆成“检索没找到”和“阅读器没读对”两类的原因。
""",
)

answer(
    "6.12.3",
    "精确匹配、包含匹配与字 F1",
    r"""
精确匹配要求规范化之后逐字相等，“２０周年”和“２０”算错，“党的十一届三中全会召开２０周年”也算错，它低估了那些意思对、边界不对的回答。包含匹配只要求回答里含有标准答案，“２０周年”被“２０周年以来”包含就算对，但一个把整段资料抄下来的回答也能“包含”答案，所以它会高估，必须配合长度上限（本节的阅读器最多生成 24 个词元）才有意义。

反过来，标准答案较长（例如“西南暖湿气流较为旺盛”这样的原因）时，回答只要少一个字，前两种指标都判错；字 F1（预测与答案共有字数的精确率和召回率的调和平均）对部分正确给部分分，本节限定复制的“２０”对“２０周年”得 0.67。但字 F1 也会高估：数字题里“１９９７”与“１９７７年”共有三个字，F1 不低，意思却完全不对。好的做法是同时报告两三种指标，并抽查一些判对和判错的例子，确认指标和人的判断一致。
""",
)

answer(
    "6.12.4",
    "让阅读器学会说“资料中没有”",
    r"""
阅读器的训练题里，答案**总是**在资料中，它从没见过“资料里没有答案”的情形，所以闭卷或检索失败时它也会照样抄出一个像答案的片段——语气同样肯定。要让它学会拒答，就要在训练数据里加入无法回答的题：用同样的方法出题，但把含答案的段落换成别的段落（或者只给干扰段落），目标回答写成“资料中没有”。这正是 SQuAD 2.0 加入不可回答问题的思路。

评估时要分开统计两类错误：该答而拒答（过于保守），不该答而乱答（幻觉）。无法回答的题在训练中占的比例是一个旋钮：比例越高，模型越爱拒答。还可以用生成答案时第一个词元的概率作为置信度，低于阈值就拒答，在验证集上选阈值，画出“覆盖率—准确率”曲线。
""",
)
