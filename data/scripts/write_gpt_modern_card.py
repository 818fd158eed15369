"""Write data/checkpoints/gpt-modern/MODEL_CARD.md from the checkpoint's meta.json.

Run after `python -m llmbook train --config configs/cpu-modern.toml` (which exports the
checkpoint), then `make manifest`.  The shipped checkpoint was trained before that
config existed, by a script with the same settings; its meta.json keeps the facts that
script recorded (valid bpc on the first 200 held-out paragraphs), which this card reads
as well as the trainer's own (valid bpc on all of them).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "checkpoints" / "gpt-modern"
COMMAND = "python -m llmbook train --config configs/cpu-modern.toml"


def main() -> None:
    meta = json.loads((ROOT / "meta.json").read_text(encoding="utf-8"))
    cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))["model_config"]
    if "valid_bpc" in meta:  # written by `python -m llmbook train`
        bpc = f"{meta['valid_bpc']:.3f} 比特/字（全部验证段落）"
    else:  # the shipped checkpoint's meta.json
        bpc = f"{meta['valid_bpc_people_daily']:.3f} 比特/字（前 200 个验证段落）"
    card = f"""# gpt-modern — 现代汉语字级小 GPT（第 6 章）

* 结构：GPT（`llmbook.models.gpt`），{cfg["n_layer"]} 层，宽度 {cfg["n_embd"]}，{cfg["n_head"]} 个头，
  上下文 {cfg["block_size"]} 字，词表 {cfg["vocab_size"]} 字（含 4 个特殊符号），共 {meta["parameters"]:,} 个参数。
* 预训练语料：《人民日报》1998 年 1 月段落（按哈希留出 2% 作验证）+ 评论情感数据的**训练划分**；
  验证集与测试集的评论一条也不在其中，包括作为更长文本片段出现的情形
  （`llmbook.data.modern.modern_pretraining_texts`，由 `tests/test_finetune.py` 检查）。
* 训练：{meta["steps"]} 步，训练语料 {meta["train_tokens"]:,} 字，{meta["threads"]} 个 CPU 线程，
  用时 {meta["wall_seconds"] / 60:.0f} 分钟（与其他任务共享 CPU）；最终验证损失 {meta["final_val_loss"]:.3f}，
  《人民日报》验证段落上 {bpc}。
* 复现：`{COMMAND}`（设置见 `configs/cpu-modern.toml`，与训练本检查点时相同）
* 用途与局限：教学用。模型很小、训练很短，生成的文字只在局部通顺；它是第 6 章情感分类
  微调（`python -m llmbook.experiments.sentiment sentiment`）的起点。
"""
    (ROOT / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    print(card)


if __name__ == "__main__":
    main()
