"""第 3.5 节的练习：掩码语言模型（参考答案与隐藏的检查）。

编程题与 PyTorch 的 ``F.cross_entropy(ignore_index=-100)`` 及 ``llmbook.models.bert``
的掩码规则逐元素比较。
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llmbook.book.exercises import ExerciseFailure, answer, exercise
from llmbook.book.exercises._common import Fn, _gen, _randn


# ------------------------------------------------------------------ 3.5.1 MLM loss
def _test_mlm_loss(fn: Fn) -> int:
    g = _gen(35)
    n = 0
    for B, T, V, keep, case in [
        (2, 8, 11, 0.15, "批 2、长 8、词表 11，约 15% 的位置有标签"),
        (1, 5, 7, 0.5, "批 1，约一半位置有标签"),
        (3, 6, 5, 1.0, "每个位置都有标签（此时与普通交叉熵相同）"),
    ]:
        logits = _randn(B, T, V, g=g, scale=3.0)
        labels = torch.randint(V, (B, T), generator=g)
        drop = torch.rand(B, T, generator=g) >= keep
        drop[0, 0] = False  # at least one labelled position
        labels[drop] = -100
        want = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
        got = fn(logits, labels)
        if not isinstance(got, Tensor) or got.dim() != 0:
            raise ExerciseFailure(f"{case}：应返回一个标量张量，你的函数返回了 {got!r:.80}")
        if not torch.allclose(got.float(), want, atol=1e-5, rtol=1e-4):
            all_pos = F.cross_entropy(logits.reshape(-1, V), labels.clamp(min=0).reshape(-1))
            hint = ""
            if torch.allclose(got.float(), all_pos, atol=1e-5):
                hint = "（看起来把标签为 -100 的位置也算进去了）"
            raise ExerciseFailure(
                f"{case}：应为 {float(want):.5f}，你的函数返回 {float(got):.5f}{hint}"
            )
        n += 1
    return n


@exercise("3.5.1", "掩码语言模型的损失", test=_test_mlm_loss)
def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    chosen = labels != -100  # 只在被选中的位置上计算
    logp = logits.log_softmax(dim=-1)[chosen]  # [N, V]
    return -logp.gather(1, labels[chosen][:, None]).mean()


# ------------------------------------------------------------------ 3.5.2 80/10/10
def _reference_apply_mask(
    ids: Tensor, u: Tensor, r: Tensor, random_ids: Tensor, mask_id: int, n_special: int
) -> tuple[Tensor, Tensor]:
    ordinary = (ids >= n_special) & (ids != mask_id)
    chosen = ordinary & (u < 0.15)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_ids, inputs)
    return inputs, labels


def _test_apply_mask(fn: Fn) -> int:
    g = _gen(350)
    n = 0
    for B, T, case in [
        (2, 12, "批 2、长 12"),
        (1, 40, "一条长 40 的序列，含特殊符号"),
        (4, 30, "批 4、长 30，末尾是填充"),
    ]:
        ids = torch.randint(4, 30, (B, T), generator=g)
        ids[:, 0] = 2  # [CLS]
        if n == 2:
            ids[:, -5:] = 0  # padding
        if n == 1:
            ids[0, 7] = 3
        u = torch.rand(B, T, generator=g) * 0.3  # many chosen positions
        u[0, 0] = 0.0  # [CLS] would be chosen by its number, but must not be
        r = torch.rand(B, T, generator=g)
        r[0, 1], r[0, 2], r[0, 3] = 0.8, 0.9, 0.7999  # the boundaries of the 80/10/10 split
        u[0, 1:4] = 0.01
        random_ids = torch.randint(4, 30, (B, T), generator=g)
        want_in, want_lab = _reference_apply_mask(ids, u, r, random_ids, 30, 4)
        got = fn(ids.clone(), u, r, random_ids, 30, 4)
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise ExerciseFailure(
                f"{case}：应返回 (inputs, labels) 两个张量，你的函数返回了 {got!r:.80}"
            )
        got_in, got_lab = got
        for name, a, b in (("labels", got_lab, want_lab), ("inputs", got_in, want_in)):
            if not isinstance(a, Tensor) or a.shape != b.shape or not torch.equal(a.long(), b):
                raise ExerciseFailure(
                    f"{case}：{name} 不对；第一处不同的位置见 torch.nonzero(got != want)"
                )
        n += 1
    return n


@exercise("3.5.2", "BERT 的 80/10/10 掩码规则", test=_test_apply_mask)
def apply_mask(
    ids: Tensor, u: Tensor, r: Tensor, random_ids: Tensor, mask_id: int, n_special: int
) -> tuple[Tensor, Tensor]:
    return _reference_apply_mask(ids, u, r, random_ids, mask_id, n_special)


answer(
    "3.5.3",
    "80/10/10 规则改变了多少输入",
    r"""
一个普通字被选中的概率是 $0.15$。被选中后：以 $0.8$ 换成 `[MASK]`，一定改变；以 $0.1$ 换成
随机字，随机字从 $V'$ 个普通字中均匀抽取，恰好抽回原字的概率是 $1/V'$；以 $0.1$ 保持不变。所以

$$
P(\text{输入被改动}) = 0.15\,\Bigl(0.8 + 0.1\,\bigl(1-\tfrac1{V'}\bigr)\Bigr)\approx 0.135 ,
\qquad P(\text{输入是 [MASK]}) = 0.12 .
$$

若 100% 换成 `[MASK]`：模型只在看到 `[MASK]` 的位置上受训练，它学到的是“`[MASK]` 处该填什么”，
而对没有被遮住的字，它的输出表示从来不必包含“这个字本身是什么、是否合理”的信息；微调和使用时输入里
根本没有 `[MASK]`，训练与使用的输入分布不一致。保留 10% 原字，迫使模型对每个看得见的字也要
给出好的表示（它不知道哪个字是被“选中但未改”的）；10% 随机字则让模型不能完全相信看得见的字，
要结合上下文判断它是否被替换过。全部换成随机字则噪声太大（约 15% 的字是错的），模型也无法
知道该在哪里预测。
""",
)

answer(
    "3.5.4",
    "每一步的监督信号：GPT 与 BERT",
    r"""
一个窗口 64 个字。GPT 在每个位置都预测下一个字，每个窗口 64 个（本书的实现里 63 或 64 个）
预测目标；BERT 只在约 $15\%$ 的普通字上计算损失，约 $0.15\times 63\approx 9.5$ 个（第一个位置是
`[CLS]`，不会被选中）。每步 32 个窗口，GPT 约 2,048 个目标，BERT 约 300 个，少约 6.7 倍；
要得到 400 步 GPT 的目标数，BERT 约需 $400\times 6.7\approx 2{,}700$ 步。

但二者不能只按目标数折算：BERT 的每个目标能看到两边的上下文，预测更容易、表示也更适合理解任务；
GPT 的每个目标只能看左边，且大部分目标在窗口开头，上下文很短。这正是 ELECTRA 等后续工作的出发点：
让模型对 **每个** 位置都做一个判断（这个字是否被替换过），以提高每步的样本效率。
""",
)
