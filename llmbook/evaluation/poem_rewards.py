"""Verifiable rewards for a generated quatrain (五言/七言绝句): form, rhyme, level/oblique tones.

A reward a program can check, with no learned reward model, for reinforcement learning
from verifiable rewards (:mod:`llmbook.training.grpo`, :mod:`llmbook.training.dpo`).  Three
parts, each in ``[0, 1]``:

* **form** — the mean of three checks: the text has four lines (one point less per
  quarter of the lines too many or too few); the share of the four lines with exactly 5
  (五言) or 7 (七言) Chinese characters; the share of the four lines whose punctuation is
  right: lines 2 and 4 end with 。？！, lines 1 and 3 with ，；？！.
* **rhyme** — 1 when the last characters of lines 2 and 4 fall in the same rhyme group
  and are different characters (the same character twice is no rhyme: otherwise a policy
  could earn it by repeating one word), else 0.  The groups are the thirteen 辙 of
  modern northern Chinese (十三辙) applied to the pinyin final of ``pypinyin`` (read in the
  context of the whole line, so that polyphonic characters get their usual reading):
  e.g. 光 guang and 霜 shuang are both 江阳.  This is a **modern-Mandarin approximation**:
  Tang poets rhymed by the rhyme books of Middle Chinese (the later 平水韵), and some of
  their rhymes no longer rhyme in Mandarin.
* **tones** (平仄) — tone 1 and 2 count as level (平), tones 3 and 4 as oblique (仄),
  the neutral tone as unknown.  Checked on the even positions, the ones that matter in
  regular verse: within each line the 2nd and 4th characters differ (七言: also the 4th
  and 6th); lines 1/2 and 3/4 are opposite at the 2nd character (对), lines 2/3 the same
  (粘).  The score is the share of the checks that hold among those whose characters have
  a known tone.  Also an approximation: the old entering tone (入声) is gone from
  Mandarin, its characters spread over all four modern tones, so some correct Tang lines
  fail here.

Rhyme and tones are judged only when all four lines have the right length (otherwise
they are 0): a reward for rhyme in a text that is not a quatrain would be easy to game.
The combined reward is ``weights[0]·form + weights[1]·rhyme + weights[2]·tones`` with
weights that sum to 1 (default 0.5, 0.3, 0.2), so it lies in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "QUATRAIN_FORMS",
    "RHYME_GROUPS",
    "QuatrainScore",
    "quatrain_lines",
    "rhyme_group",
    "line_tones",
    "form_score",
    "rhyme_score",
    "tone_score",
    "score_quatrain",
    "poem_reward",
    "instruction_form",
    "instruction_reward",
]

#: characters per line of each quatrain form
QUATRAIN_FORMS = {"五言绝句": 5, "七言绝句": 7}

#: the thirteen rhyme groups (十三辙) as pinyin finals (``pypinyin`` strict finals:
#: ü is written ``v``; ``ui``/``iu``/``un`` are ``uei``/``iou``/``uen``)
RHYME_GROUPS: dict[str, tuple[str, ...]] = {
    "发花": ("a", "ia", "ua"),
    "梭波": ("o", "e", "uo"),
    "乜斜": ("ie", "ve", "ue", "ê"),
    "一七": ("i", "v", "er"),
    "姑苏": ("u",),
    "怀来": ("ai", "uai"),
    "灰堆": ("ei", "uei", "ui"),
    "遥条": ("ao", "iao"),
    "油求": ("ou", "iou", "iu"),
    "言前": ("an", "ian", "uan", "van"),
    "人辰": ("en", "in", "uen", "un", "vn"),
    "江阳": ("ang", "iang", "uang"),
    "中东": ("eng", "ing", "ong", "iong", "ueng"),
}
_GROUP_OF = {final: group for group, finals in RHYME_GROUPS.items() for final in finals}

_PAUSE = "，；？！"  # may end lines 1 and 3
_STOP = "。？！"  # may end lines 2 and 4
_MARKS = "，。？！；、："


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def quatrain_lines(text: str) -> list[tuple[str, str]]:
    """Split ``text`` into ``(line, mark)`` pairs at Chinese punctuation.

    Whitespace is dropped, and so are empty lines (a mark right after a mark: 「，。，。」
    has no line at all); a last line without a mark gets ``""``.
    """
    out: list[tuple[str, str]] = []
    cur = ""
    for ch in "".join(text.split()):
        if ch in _MARKS:
            if cur:
                out.append((cur, ch))
            cur = ""
        else:
            cur += ch
    if cur:
        out.append((cur, ""))
    return out


def _chars_per_line(form: str) -> int:
    if form not in QUATRAIN_FORMS:
        raise ValueError(f"form must be one of {sorted(QUATRAIN_FORMS)}, got {form!r}")
    return QUATRAIN_FORMS[form]


def _line_ok(line: str, n: int) -> bool:
    return len(line) == n and all(_is_han(c) for c in line)


def form_score(text: str, form: str = "五言绝句") -> float:
    """Form in ``[0, 1]``: line count, line lengths and punctuation (module docstring)."""
    n = _chars_per_line(form)
    lines = quatrain_lines(text)
    count = max(0.0, 1.0 - abs(len(lines) - 4) / 4)
    first = lines[:4]
    length = sum(_line_ok(line, n) for line, _ in first) / 4
    punct = (
        sum(
            mark != "" and mark in (_PAUSE if i % 2 == 0 else _STOP)
            for i, (_, mark) in enumerate(first)
        )
        / 4
    )
    return (count + length + punct) / 3


@lru_cache(maxsize=4096)
def _pinyin(line: str, style: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    st = {"finals": Style.FINALS, "tones": Style.TONE3}[style]
    return tuple(lazy_pinyin(line, style=st, strict=True, neutral_tone_with_five=True))


def rhyme_group(line: str) -> str | None:
    """The 十三辙 group of the last character of ``line`` (read in context), or None.

    None for a non-Chinese last character or a final outside the table (e.g. ``ng``).
    """
    if not line or not _is_han(line[-1]):
        return None
    finals = _pinyin(line, "finals")
    return _GROUP_OF.get(finals[-1]) if len(finals) == len(line) else None


def line_tones(line: str) -> list[str | None]:
    """平 (tones 1, 2), 仄 (tones 3, 4) or None (neutral tone, not Chinese) per character."""
    syllables = _pinyin(line, "tones")
    if len(syllables) != len(line):  # pypinyin kept a non-Chinese run together
        return [None] * len(line)
    out: list[str | None] = []
    for s in syllables:
        tone = s[-1:]
        out.append("平" if tone in ("1", "2") else "仄" if tone in ("3", "4") else None)
    return out


def _four_lines(text: str, n: int) -> list[str] | None:
    lines = [line for line, _ in quatrain_lines(text)]
    if len(lines) != 4 or not all(_line_ok(line, n) for line in lines):
        return None
    return lines


def rhyme_score(text: str, form: str = "五言绝句") -> float:
    """1.0 when lines 2 and 4 rhyme (same 十三辙 group, different characters), else 0.0.

    0.0 too when the text is not four lines of the right length.
    """
    lines = _four_lines(text, _chars_per_line(form))
    if lines is None or lines[1][-1] == lines[3][-1]:
        return 0.0
    g2, g4 = rhyme_group(lines[1]), rhyme_group(lines[3])
    return float(g2 is not None and g2 == g4)


def tone_score(text: str, form: str = "五言绝句") -> float:
    """Share of the 平仄 checks that hold (module docstring); 0.0 if none can be judged."""
    n = _chars_per_line(form)
    lines = _four_lines(text, n)
    if lines is None:
        return 0.0
    tones = [line_tones(line) for line in lines]
    checks: list[tuple[str | None, str | None, bool]] = []  # (a, b, should they be equal?)
    for t in tones:  # positions 2, 4 (and 6) alternate within a line
        checks.append((t[1], t[3], False))
        if n == 7:
            checks.append((t[3], t[5], False))
    checks += [(tones[0][1], tones[1][1], False), (tones[2][1], tones[3][1], False)]  # 对
    checks.append((tones[1][1], tones[2][1], True))  # 粘
    judged = [(a == b) == same for a, b, same in checks if a is not None and b is not None]
    return sum(judged) / len(judged) if judged else 0.0


@dataclass(frozen=True)
class QuatrainScore:
    """The parts of the reward and their weighted sum ``reward`` (all in ``[0, 1]``)."""

    form: float
    rhyme: float
    tones: float
    reward: float


def score_quatrain(
    text: str, form: str = "五言绝句", weights: Sequence[float] = (0.5, 0.3, 0.2)
) -> QuatrainScore:
    """Form, rhyme and tone scores of ``text`` as a quatrain of ``form``, and their sum.

    ``weights`` (form, rhyme, tones) must be ``>= 0`` and sum to 1; ``(0.6, 0.4, 0.0)``
    leaves the tones out.
    """
    if len(weights) != 3 or min(weights) < 0 or not math.isclose(sum(weights), 1.0):
        raise ValueError(f"weights must be 3 numbers >= 0 that sum to 1, got {tuple(weights)}")
    f = form_score(text, form)
    r = rhyme_score(text, form)
    t = tone_score(text, form) if weights[2] else 0.0
    total = weights[0] * f + weights[1] * r + weights[2] * t
    return QuatrainScore(f, r, t, min(1.0, max(0.0, total)))


def poem_reward(
    text: str, form: str = "五言绝句", weights: Sequence[float] = (0.5, 0.3, 0.2)
) -> float:
    """The combined reward in ``[0, 1]`` of :func:`score_quatrain`."""
    return score_quatrain(text, form, weights).reward


def instruction_form(instruction: str) -> str:
    """The quatrain form an instruction asks for (「写一首七言绝句…」 → 七言绝句)."""
    found = [f for f in QUATRAIN_FORMS if f in instruction]
    if len(found) != 1:
        raise ValueError(
            f"the instruction must name exactly one of {sorted(QUATRAIN_FORMS)}: {instruction!r}"
        )
    return found[0]


def instruction_reward(
    instruction: str, response: str, weights: Sequence[float] = (0.5, 0.3, 0.2)
) -> float:
    """:func:`poem_reward` of ``response`` in the form that ``instruction`` names.

    Has the ``reward_fn(instruction, response)`` signature of the RL trainers;
    ``functools.partial(instruction_reward, weights=(0.6, 0.4, 0.0))`` rewards form and
    rhyme only.
    """
    return poem_reward(response, instruction_form(instruction), weights)
