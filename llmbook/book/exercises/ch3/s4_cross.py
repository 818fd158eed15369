"""3.4 节编码器—解码器部分的练习：单头交叉注意力、对齐份额，以及多音字从哪里得到上下文。

编程题与 ``llmbook.models.attention.attention``（带填充掩码）逐元素比较。
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmbook.book.exercises import ExerciseFailure, answer, exercise
from llmbook.book.exercises._common import Fn, _gen, _randn, _tensor_close


def _out_weights(got: object, case: str) -> tuple[object, object]:
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise ExerciseFailure(f"{case}：应返回 (输出, 权重) 两个张量，你的函数返回了 {got!r:.80}")
    return got[0], got[1]


def _test_cross_attention(fn: Fn) -> int:
    from llmbook.models.attention import attention

    g = _gen(40)
    cases = [
        (2, 3, 5, 4, 4, [5, 2], "批大小 2，源序列长 5 与 2（第二句有 3 个填充位置）"),
        (1, 4, 3, 6, 2, [3], "没有填充，d_model 6、d_k 2"),
        (3, 1, 4, 4, 4, [1, 4, 3], "解码器只有 1 个位置（生成的第一步）"),
    ]
    for B, T, S, d, dk, lens, case in cases:
        dec, enc = _randn(B, T, d, g=g), _randn(B, S, d, g=g)
        w_q, w_k, w_v = (_randn(dk, d, g=g) for _ in range(3))
        src_pad = torch.arange(S)[None, :] >= torch.tensor(lens)[:, None]
        enc = enc.masked_fill(src_pad[..., None], 100.0)  # 填充位置放上很大的数
        want_out, want_w = attention(
            dec @ w_q.T, enc @ w_k.T, enc @ w_v.T, mask=(~src_pad)[:, None, :]
        )
        got_out, got_w = _out_weights(fn(dec, enc, w_q, w_k, w_v, src_pad.clone()), case)
        _tensor_close(got_w, want_w, case + "，注意力权重（查询来自解码器，键来自编码器）")
        _tensor_close(got_out, want_out, case + "，输出（值来自编码器）")
    return len(cases)


@exercise("3.4.4", "单头交叉注意力", test=_test_cross_attention)
def cross_attention(
    dec: Tensor, enc: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, src_pad: Tensor
) -> tuple[Tensor, Tensor]:
    q = dec @ w_q.T  # [B, T, d_k]：查询来自解码器
    k, v = enc @ w_k.T, enc @ w_v.T  # [B, S, d_k]：键和值来自编码器的输出
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # [B, T, S]
    scores = scores.masked_fill(src_pad[:, None, :], float("-inf"))  # 不用因果掩码
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


answer(
    "3.4.5",
    "多音字的上下文是从哪条路来的",
    r"""
解码器预测“行”的读音时，可以从三条路得到“银”这个邻字的信息：

1. **编码器的自注意力**：编码器不用因果掩码，“行”位置的表示在编码器的每一层都可以
   看左右两边的字；经过两层之后，“行”的编码器输出已经是“银行里的行”，而不只是
   “行”这个字。
2. **交叉注意力**：解码器在这一步的查询可以把一部分权重放到“银”的位置上，直接读邻字。
3. **解码器的自注意力**：它看得到自己已经写出的 yin2，也就间接知道了前一个字。

热力图只显示第 2 条路。交叉注意力几乎全部落在“行”自己身上，并不说明模型没有用到
上下文——上下文多半已经在第 1 条路里被编码器“写进”了“行”的表示。检验的办法正是本节
的对照：把同一个字放进不同的句子，比较它的编码器输出（余弦相似度明显小于 1）和
模型给出的读音概率。第 3 条路在这个任务里只能帮一半忙：它只知道左边已经写出的读音，
而“行长”的“长”读 zhang3 要看的是左边的“行”；“长江”之类的读音却常常由右边的字决定，
只有编码器和交叉注意力看得到右边。
""",
)
