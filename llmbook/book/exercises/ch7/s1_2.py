"""第 7 章的练习（7.1 学习资源、7.2 开发工具）：参考答案与隐藏的检查。

Coding exercises are checked against ``torch.nn.LSTM``, :mod:`llmbook.training.compute`,
:data:`llmbook.models.hf.CONV1D_WEIGHTS` and :func:`llmbook.training.checkpoint.verify_checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _write_checkpoint(root: Path, files: dict[str, bytes]) -> Path:
    import hashlib
    import json

    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    table = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    (root / "checkpoint.json").write_text(json.dumps({"files": table}), encoding="utf-8")
    return root


def _test_changed_files(fn: Callable[..., Any]) -> int:
    import tempfile

    from llmbook.training.checkpoint import CheckpointError, verify_checkpoint

    files = {"model.safetensors": b"\x00" * 64 + b"weights", "config.json": b"{}", "a.txt": b"x"}
    with tempfile.TemporaryDirectory() as d:
        good = _write_checkpoint(Path(d) / "good", files)
        verify_checkpoint(good)  # the reference implementation accepts it
        expect(fn(good), [], "完好的检查点")
        expect(fn(str(good)), [], "目录以字符串给出")
        bad = _write_checkpoint(Path(d) / "bad", files)
        data = bytearray(files["model.safetensors"])
        data[-1] ^= 1
        (bad / "model.safetensors").write_bytes(bytes(data))
        (bad / "a.txt").unlink()
        try:
            verify_checkpoint(bad)
            raise ExerciseFailure("内部错误：参考实现应拒绝被改动的检查点")
        except CheckpointError:
            pass
        expect(fn(bad), ["a.txt", "model.safetensors"], "改了一个比特、删了一个文件的检查点")
        (Path(d) / "empty").mkdir()
        _raises(fn, FileNotFoundError, "没有 checkpoint.json 的目录", Path(d) / "empty")
    return 4


@exercise("7.1.3", "核对检查点的文件指纹", test=_test_changed_files)
def changed_files(directory: str | Path) -> list[str]:
    """Names listed in ``checkpoint.json`` whose SHA-256 differs or that are missing."""
    import hashlib
    import json

    root = Path(directory)
    manifest = root / "checkpoint.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} does not exist: not an llmbook checkpoint directory")
    table = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    bad = []
    for name, digest in table.items():
        f = root / name
        if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            bad.append(name)
    return sorted(bad)


answer(
    "7.1.4",
    "同一个种子，不同的结果",
    """
不说明代码有错。固定种子只保证随机数序列相同；浮点加法不满足结合律，而 CPU 的多线程、GPU 的并行归约、不同版本的计算核（cuBLAS、oneDNN、SDPA 的不同实现）会以不同的顺序做加法，所以每一步的结果在最后几位就不同。训练是几千步的迭代，这样的微小差别会被放大，最终损失在小数点后第二位不同是正常的。只有同一台机器、同样的线程数、同样的库版本（GPU 上还要打开 `torch.use_deterministic_algorithms(True)` 之类的开关）才能期望逐位相同。

报告里应写明：代码版本（git 提交号）、所有库的版本（最好附上 `requirements.txt` 或 `pip freeze`）、硬件（CPU/GPU 型号、线程数）、随机种子、全部超参数、数据的来源与划分（最好附上文件的 SHA-256），以及用时。

要说“A 比 B 好”，不能各跑一次就比较：应当对 A 和 B 各用若干个种子（例如 3–5 个）训练，报告均值和标准差（或置信区间）；只有两者的差距明显大于种子之间的波动，结论才可靠。两个版本还应当在同一台机器、同一组库上运行，并且用同一份验证集、同一种评测口径。
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


answer(
    "7.2.5",
    "GGUF 文件有多大",
    """
参数量：词嵌入 $V d$（输出层与它共享，不另算）、位置向量 $T d$，每层注意力 $4d^2+4d$、MLP $8d^2+5d$、两个 LayerNorm $4d$，最后的 LayerNorm $2d$。代入 $V=6551,\\ d=128,\\ T=80$、4 层：

$6551\\times128 + 80\\times128 + 4\\times(12\\times128^2+13\\times128) + 2\\times128 = 1{,}642{,}112$。

（7.2 节 peft 报告的总数 1,650,304 里还包括 8,192 个 LoRA 参数。）每个数 4 字节，约 $6.57\\times10^6$ 字节 $\\approx 6.26$ MiB，再加上文件头里的字表（6,551 个字符串和它们的分数、类型），就是本节看到的文件大小。f16 约为一半（约 3.2 MiB，LayerNorm 和偏置这些向量仍存 f32，所以略多于一半），int8 约四分之一（每块还要存一个缩放因子），4 比特约八分之一多一点。

词嵌入和 LayerNorm 常保留较高的精度：LayerNorm 的参数和偏置很少，量化省不下多少空间，却直接缩放每一层的激活，误差会传遍整个网络；词嵌入（在这里也是输出层）决定每个词元的 logits，它的误差直接改变下一个词元的概率，而小模型里它占参数的大头，误差也最显眼。量化是拿精度换空间，应当花在矩阵大、对误差不敏感的地方（注意力和 MLP 的投影矩阵）。
""",
)

answer(
    "7.2.6",
    "没有签名的 BLEU",
    """
至少有这些情况会让“BLEU = 35.2”无法比较：

1. **分词方式**：中文按字（`char`）、按 sacrebleu 的 `zh` 规则、先用 jieba 分词再按空格，或者根本不切分（`none`，中文句子就成了一个词，BLEU 接近 0）。本节同一批续写在 `char` 与 `none` 下分别是很低的正数和 0。
2. **参考译文的个数**：多参考的 BLEU 明显高于单参考。
3. **平滑方法与大小写**：句子级 BLEU 常用平滑，不同平滑方法分数不同；英文是否区分大小写也会改变分数。
4. **语料级还是句子级**：把句子级 BLEU 取平均，与语料级 BLEU（先汇总 n 元组计数）不是一回事。
5. **文本预处理**：是否做了全角/半角规范化、是否去掉了标点、测试集的版本。

sacrebleu 的签名（`nrefs:1|case:mixed|eff:no|tok:char|smooth:exp|version:2.6.0`）把这些选择都写了出来。

开放式对话没有唯一的标准答案，BLEU 这类与参考逐字比较的指标不适用。可以：用人工评测（成对比较两个系统的回答，统计胜率）；用一个更强的模型当裁判打分或做成对比较，并随机交换顺序以减少位置偏差；对可验证的部分做自动检查（格式是否符合要求、事实是否正确、是否拒绝了不该回答的问题）；同时报告验证集上的困惑度或 bpc 作为语言建模能力的参考。
""",
)
