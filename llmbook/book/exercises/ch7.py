"""Exercises of chapter 7 (tools and resources): reference solutions and their checkers.

Every coding exercise is checked against the package's own functions (``torch.nn.LSTM``,
:mod:`llmbook.training.compute`, :class:`llmbook.models.lora.LoRALinear`,
:meth:`llmbook.text.embeddings.Embeddings.analogy`, :func:`llmbook.data.quality.normalise`)
or against values computed by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from llmbook.book.exercises import ExerciseFailure, answer, exercise, expect

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
# 7.1 学习资源推荐

answer(
    "7.1.1",
    "读完第 3 章后补 LSTM",
    """
按本节的表，配合第 3 章阅读的资源有四份，各取其中讲循环网络的部分：

- **Jurafsky & Martin 第 3 版草稿**中讲 RNN 与 LSTM 的那一章：标准的讲法，配有门控单元的图和习题；
- **邱锡鹏《神经网络与深度学习》**讲循环神经网络的那一章：中文术语规范，专门分析了长程依赖问题（梯度消失与爆炸）以及门控机制为什么能缓解它；
- **CS224N** 中讲语言模型、RNN 与梯度消失的几讲及对应作业；
- **李宏毅《机器学习》**课程里讲 RNN/LSTM 的部分，直觉讲得最生动。

数学上的疑问（为什么连乘的雅可比矩阵会让梯度指数衰减）可以再查 Goodfellow《Deep Learning》讲序列建模的一章。

此时不建议先读《NLP with Transformers》：表里它对应的是第 6–7 章，讲的是 Hugging Face 生态的工程用法（微调、部署、压缩），默认读者已经懂 Transformer，既不讲 LSTM 的原理，也不会回答“梯度为什么能跨越很多时间步”。按本节的顺序，应当先把原理补齐（教材 + 公开课），再去看工程。
""",
)

answer(
    "7.1.2",
    "对照两份 GPT 实现",
    """
值得逐项对照的是那些“同名为 GPT、细节却可以不同”的设计选择。下面每一项都给出在本书代码里查看的位置：

1. **分词**：按字（本书第 5 章的 `CharTokenizer`）还是按 BPE 子词（`llmbook.text.tokenizers.BPETokenizer`）？词表大小直接决定嵌入层和输出层的参数量。
2. **位置编码**：可学习的位置向量（GPT-2 式，本书默认）还是 RoPE？看 `GPTConfig` 的 `pos` 开关与 `llmbook.models.positional`。
3. **归一化的位置与种类**：预归一化（LayerNorm 在子层之前）还是后归一化，LayerNorm 还是 RMSNorm？看 `GPTConfig.norm` 与第 4 章的讨论。
4. **偏置与权重共享**：线性层有没有偏置（`bias`），输出层是否与词嵌入共享（`tie_weights`）。这两项也正是 7.2 节与 Hugging Face 互转时要处理的约定。
5. **注意力的实现**：显式写出 softmax（便于看权重）还是调用融合核 `scaled_dot_product_attention`（快、省显存，但不返回权重，见 8.6 节）。
6. **初始化与训练循环**：残差投影是否按层数缩放初始化；学习率预热 + 余弦衰减、AdamW 的权重衰减作用在哪些参数上、梯度裁剪阈值——看 `llmbook.training.trainer.TrainConfig` 与 `train`。

对照的方法：把两份实现在同一配置下的参数量算出来（`sum(p.numel() for p in model.parameters())`），先让它们相等，再比较同一批数据上的初始损失（应接近 $\\ln V$）和前几百步的损失曲线。参数量或初始损失不一致，就说明上面某一项不同。
""",
)

# ---------------------------------------------------------------------------------------
# 7.2 开发工具推荐


def _test_lstm_params(fn: Callable[..., Any]) -> int:
    n = 0
    for e, h in [(64, 128), (1, 1), (300, 50), (7, 3)]:
        want = sum(p.numel() for p in torch.nn.LSTM(e, h, batch_first=True).parameters())
        expect(fn(e, h, "pytorch"), want, f"E={e}, H={h}, framework='pytorch'（与 nn.LSTM 比较）")
        expect(fn(e, h, "keras"), 4 * (h * (e + h) + h), f"E={e}, H={h}, framework='keras'")
        n += 2
    _raises(
        fn, ValueError, "framework='tensorflow'（只认 'keras' 和 'pytorch'）", 8, 8, "tensorflow"
    )
    return n + 1


@exercise("7.2.1", "两个框架的 LSTM 参数量", test=_test_lstm_params)
def lstm_params(E: int, H: int, framework: str) -> int:
    """Parameters of one LSTM layer (input width ``E``, hidden width ``H``)."""
    biases = {"keras": 1, "pytorch": 2}
    if framework not in biases:
        raise ValueError(f"framework must be 'keras' or 'pytorch', got {framework!r}")
    # four gates, each: input weights H×E, recurrent weights H×H, and one or two biases
    return 4 * (H * (E + H) + biases[framework] * H)


def _fake_gpt2_state(d: int = 4, vocab: int = 10, block: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = {
        "transformer.wte.weight": (vocab, d),
        "transformer.wpe.weight": (block, d),
        "transformer.h.0.ln_1.weight": (d,),
        "transformer.h.0.ln_1.bias": (d,),
        "transformer.h.0.attn.c_attn.weight": (d, 3 * d),
        "transformer.h.0.attn.c_attn.bias": (3 * d,),
        "transformer.h.0.attn.c_proj.weight": (d, d),
        "transformer.h.0.attn.c_proj.bias": (d,),
        "transformer.h.0.mlp.c_fc.weight": (d, 4 * d),
        "transformer.h.0.mlp.c_fc.bias": (4 * d,),
        "transformer.h.0.mlp.c_proj.weight": (4 * d, d),
        "transformer.h.0.mlp.c_proj.bias": (d,),
        "transformer.h.1.attn.c_proj.weight": (d, d),
        "transformer.ln_f.weight": (d,),
        "lm_head.weight": (vocab, d),
    }
    return {k: torch.randn(*s, generator=g) for k, s in shapes.items()}


def _test_conv1d_to_linear(fn: Callable[..., Any]) -> int:
    from llmbook.models.hf import CONV1D_WEIGHTS

    n = 0
    for d in (4, 6):
        state = _fake_gpt2_state(d)
        before = {k: v.clone() for k, v in state.items()}
        got = fn(state)
        if not isinstance(got, dict):
            raise ExerciseFailure(f"d={d}：应返回一个 dict，你的函数返回 {got!r}")
        expect(sorted(got), sorted(state), f"d={d}：返回的 dict 的键")
        for key, value in before.items():
            want = value.t() if key.endswith(CONV1D_WEIGHTS) else value
            out = got[key]
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else out
            expect(shape, tuple(want.shape), f"d={d}：{key} 的形状")
            expect(torch.equal(out, want), True, f"d={d}：{key} 的数值（Conv1D 权重要转置）")
            n += 1
        for key, value in before.items():
            expect(torch.equal(state[key], value), True, f"d={d}：不应修改输入的 {key}")
    expect(fn({}), {}, "空的 state_dict")
    return n + 1


@exercise("7.2.2", "Conv1D 权重转成 nn.Linear", test=_test_conv1d_to_linear)
def conv1d_to_linear(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Transpose GPT-2's Conv1D weights (``[in, out]``) to ``nn.Linear``'s ``[out, in]``."""
    from llmbook.models.hf import CONV1D_WEIGHTS  # attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj

    return {k: (v.t() if k.endswith(CONV1D_WEIGHTS) else v) for k, v in state.items()}


def _test_gpt2_param_count(fn: Callable[..., Any]) -> int:
    from llmbook.training.compute import param_count

    small: dict[str, Any] = {
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "activation_function": "gelu_new",
    }
    expect(fn(dict(small)), 124_439_808, "GPT-2 small 的 config.json")
    medium = dict(small, n_embd=1024, n_layer=24, n_head=16)
    expect(fn(medium), 354_823_168, "GPT-2 medium 的 config.json")
    cases: list[tuple[dict[str, Any], int]] = [
        ({"vocab_size": 3000, "n_positions": 64, "n_embd": 96, "n_layer": 2, "n_head": 4}, 4),
        (dict(small, n_layer=2, tie_word_embeddings=False), 4),
        (
            {
                "vocab_size": 100,
                "n_positions": 16,
                "n_embd": 8,
                "n_layer": 3,
                "n_head": 2,
                "n_inner": 16,
            },
            2,
        ),
        (
            {
                "vocab_size": 50,
                "n_positions": 32,
                "n_embd": 16,
                "n_layer": 1,
                "n_head": 4,
                "n_inner": 80,
                "tie_word_embeddings": False,
            },
            5,
        ),
    ]
    for cfg, ratio in cases:
        want = param_count(
            {
                "vocab_size": cfg["vocab_size"],
                "block_size": cfg["n_positions"],
                "n_layer": cfg["n_layer"],
                "n_head": cfg["n_head"],
                "n_embd": cfg["n_embd"],
                "bias": True,
                "tie_weights": cfg.get("tie_word_embeddings", True),
                "mlp_ratio": ratio,
            }
        )
        expect(fn(dict(cfg)), want, f"config = {cfg}")
    return 2 + len(cases)


@exercise("7.2.3", "从 config.json 算 GPT-2 的参数量", test=_test_gpt2_param_count)
def gpt2_param_count(config: dict[str, Any]) -> int:
    """Parameters of ``GPT2LMHeadModel`` described by a GPT-2 ``config.json`` dict."""
    v, t, d, n_layer = (config[k] for k in ("vocab_size", "n_positions", "n_embd", "n_layer"))
    h = config.get("n_inner") or 4 * d  # None (or absent) means 4 * n_embd
    ln = 2 * d  # LayerNorm: gain and bias
    attn = d * 3 * d + 3 * d + d * d + d  # c_attn and c_proj, with biases
    mlp = d * h + h + h * d + d  # c_fc and c_proj, with biases
    total = v * d + t * d + n_layer * (attn + mlp + 2 * ln) + ln  # + final ln_f
    if not config.get("tie_word_embeddings", True):
        total += v * d  # a separate lm_head (GPT-2's lm_head has no bias)
    return int(total)


answer(
    "7.2.4",
    "两个偏置与一个偏置",
    """
PyTorch 的 LSTM 在每个时间步计算四个门的预激活

$z_t = W_{ih}x_t + b_{ih} + W_{hh}h_{t-1} + b_{hh}$，

再切成四段分别过 sigmoid/tanh（顺序是输入门 i、遗忘门 f、候选值 g、输出门 o）。两个偏置在任何地方都只以和 $b_{ih}+b_{hh}$ 的形式出现，所以对任意一组 $(b_{ih}, b_{hh})$，取 Keras 的偏置 $b=b_{ih}+b_{hh}$ 就得到完全相同的函数；反过来，Keras 的任意 $b$ 都可以写成 $b_{ih}=b,\\ b_{hh}=0$。两者能表示的函数集合相同，PyTorch 只是多了 $4H$ 个冗余参数（训练时这两个偏置收到的梯度完全相同）。

从 PyTorch 搬到 Keras：

- `kernel`（形状 `[E, 4H]`）$= W_{ih}^\\top$，`recurrent_kernel`（`[H, 4H]`）$= W_{hh}^\\top$——Keras 按 `[输入, 输出]` 存放，和 GPT-2 的 `Conv1D` 一样要转置；
- `bias`（`[4H]`）$= b_{ih} + b_{hh}$；
- 四个门的排列顺序两边相同（Keras 是 i、f、c、o，c 即 PyTorch 的 g），不必重排。

从 Keras 搬到 PyTorch 则把两个矩阵转置回来，令 $b_{ih}=b$、$b_{hh}=0$。搬完后的检验方法和 7.2 节一样：喂同一批输入，比较两边输出的最大差（应在 $10^{-5}$ 量级）。
""",
)

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
