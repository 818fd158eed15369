"""Verifiable quatrain rewards: form, rhyme (十三辙 of pypinyin finals), 平仄, combined reward."""

from __future__ import annotations

import random
import statistics

import pytest

from llmbook.evaluation.poem_rewards import (
    RHYME_GROUPS,
    form_score,
    instruction_form,
    instruction_reward,
    line_tones,
    poem_reward,
    quatrain_lines,
    rhyme_group,
    rhyme_score,
    score_quatrain,
    tone_score,
)

JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"  # 李白, an old-style quatrain
DENGGUAN = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # 王之涣, a regular one


def test_rhyme_groups_and_tones_of_single_characters() -> None:
    finals = [f for fs in RHYME_GROUPS.values() for f in fs]
    assert len(RHYME_GROUPS) == 13 and len(finals) == len(set(finals))  # a partition
    assert rhyme_group("光") == rhyme_group("霜") == rhyme_group("乡") == "江阳"
    assert rhyme_group("流") == rhyme_group("楼") == "油求"  # liu (iou) and lou (ou)
    assert rhyme_group("鱼") == rhyme_group("诗") == "一七"  # ü and -i join i
    assert rhyme_group("月") == "乜斜" and rhyme_group("人") == rhyme_group("云") == "人辰"
    assert rhyme_group("abc") is None and rhyme_group("") is None
    assert line_tones("床前明月光") == ["平", "平", "平", "仄", "平"]  # 2 2 2 4 1


def test_hand_made_form_scores() -> None:
    assert quatrain_lines("床前，明月光。\n") == [("床前", "，"), ("明月光", "。")]
    assert form_score(JINGYESI, "五言绝句") == 1.0
    # three lines: count 3/4, lengths 3/4, punctuation 2/4 (line 3 must not end with 。)
    three = "床前明月光，疑是地上霜。举头望明月。"
    assert form_score(three) == pytest.approx((0.75 + 0.75 + 0.5) / 3)
    # a 五言 poem where a 七言 one was asked for: lines and marks right, no line long enough
    assert form_score(JINGYESI, "七言绝句") == pytest.approx(2 / 3)
    assert score_quatrain(JINGYESI, "七言绝句").rhyme == 0.0  # not judged: wrong lengths
    assert form_score("床前明月光疑是地上霜举头望明月低头思故乡") == pytest.approx(0.25 / 3)
    assert form_score("") == form_score("，。，。") == 0.0  # marks alone earn nothing
    assert quatrain_lines("山，，水。") == [("山", "，"), ("水", "。")]
    with pytest.raises(ValueError, match="form must be"):
        form_score(JINGYESI, "五言律诗")


def test_rhyme_needs_two_different_characters_of_one_group() -> None:
    assert rhyme_score(JINGYESI) == 1.0  # 霜 / 乡
    assert rhyme_score(DENGGUAN) == 1.0  # 流 / 楼
    assert rhyme_score(JINGYESI.replace("故乡", "故人")) == 0.0  # 霜 / 人
    assert rhyme_score(JINGYESI.replace("故乡", "白霜")) == 0.0  # the same character


def test_tone_checks_counted_by_hand() -> None:
    # 登鹳雀楼 keeps every rule: 日仄 山平 / 河平 海仄 / 穷平 里仄 / 上仄 层平, 对 and 粘
    assert tone_score(DENGGUAN) == 1.0
    assert poem_reward(DENGGUAN) == 1.0
    # 静夜思 is not a regular poem: of the 7 checks only 前/月, 头/故 and 前/是 hold
    assert tone_score(JINGYESI) == pytest.approx(3 / 7)
    s = score_quatrain(JINGYESI)
    assert s.reward == pytest.approx(0.5 * 1 + 0.3 * 1 + 0.2 * 3 / 7)
    assert score_quatrain(JINGYESI, weights=(0.6, 0.4, 0.0)).reward == 1.0
    with pytest.raises(ValueError, match="sum to 1"):
        score_quatrain(JINGYESI, weights=(0.5, 0.5, 0.5))


def test_instruction_reward_reads_the_form() -> None:
    assert instruction_form("写一首七言绝句，题为春晓") == "七言绝句"
    assert instruction_reward("写一首五言绝句，题为登楼", DENGGUAN) == 1.0
    assert instruction_reward("写一首七言绝句，题为登楼", DENGGUAN) < 0.4
    form_rhyme = instruction_reward("写一首五言绝句", JINGYESI, weights=(0.6, 0.4, 0.0))
    assert form_rhyme == score_quatrain(JINGYESI, weights=(0.6, 0.4, 0.0)).reward == 1.0
    with pytest.raises(ValueError, match="exactly one"):
        instruction_form("写一首词")


def test_real_quatrains_score_high_and_scrambled_ones_low() -> None:
    from llmbook.data.poetry import load_poems

    rng = random.Random(0)
    for form in ("五言绝句", "七言绝句"):
        poems = rng.sample(load_poems(form=form), 80)
        real = [score_quatrain(p.text, form) for p in poems]
        assert statistics.mean(s.form for s in real) > 0.98
        assert sum(s.form == 1.0 for s in real) >= 0.95 * len(real)
        assert statistics.mean(s.rhyme for s in real) > 0.6  # Mandarin keeps most rhymes
        assert statistics.mean(s.reward for s in real) > 0.8
        scrambled = []
        for p in poems:
            chars = list(p.text)
            rng.shuffle(chars)
            scrambled.append(score_quatrain("".join(chars), form))
        assert max(s.form for s in scrambled) < 0.8
        assert statistics.mean(s.reward for s in scrambled) < 0.35
        # the same characters in random order inside the form: the tones get worse
        kept = []
        for p in poems:
            chars = [c for c in p.text if c not in "，。？！；"]
            rng.shuffle(chars)
            n = len(chars) // 4
            lines = ["".join(chars[i * n : (i + 1) * n]) for i in range(4)]
            kept.append(score_quatrain(f"{lines[0]}，{lines[1]}。{lines[2]}，{lines[3]}。", form))
        assert statistics.mean(s.tones for s in real) > statistics.mean(s.tones for s in kept)
        assert statistics.mean(s.rhyme for s in real) > statistics.mean(s.rhyme for s in kept) + 0.3
