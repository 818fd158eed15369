"""Multiple-choice questions built from the poem corpus: 下一句, 填字, 作者 (and a "seen" 下一句).

The shipped file ``data/eval/poetry_mc.jsonl`` holds one question a line::

    {"id": "next_line-000", "task": "next_line", "poem_id": 74,
     "context": "春晖开紫苑，", "choices": ["…，", "淑景媚兰场，", …], "answer": 1}

A model sees ``context`` and must pick the choice that truly continues it
(:mod:`llmbook.evaluation.multiple_choice` scores each choice by its log-likelihood).
:func:`build_poetry_mc` rebuilds the file from ``poetry.jsonl.xz`` alone, with no random
generator: every choice of poem, line, character and distractor is fixed by a SHA-1 of
the task name and the poem, so the same data give the same questions on every machine
(``tests/test_multiple_choice.py`` checks that the shipped file equals the rebuilt one).

Tasks (:data:`MC_TASKS`), 4 choices each:

* ``next_line`` — the first ``k`` lines of a **test-split** poem (the split of
  :func:`llmbook.data.poetry.poem_lm_texts`, which the book's models never train on);
  which line comes next?  Distractors are lines of the same length from other test
  poems, given the true line's punctuation so that the mark gives nothing away.
* ``next_line_seen`` — the same construction on **training-split** poems: questions whose
  answers a model trained on the corpus has seen (for the contamination experiment).
* ``fill_char`` — one character of a test poem is hidden; the context is the poem up to
  it and each choice is a candidate character followed by the rest of its line.
  Distractors are characters at the same position of same-length lines of other test
  poems.
* ``author`` — a whole test poem followed by ``作者``; which poet wrote it?  Distractors
  are other poets of the test split, drawn as often as they occur there (one entry per
  poem, like the right answers), names of 2–4 characters only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmbook.data.registry import _repo_data_dir, data_path

__all__ = [
    "MCItem",
    "MC_TASKS",
    "MC_FILE",
    "build_poetry_mc",
    "write_poetry_mc",
    "load_poetry_mc",
    "items_to_jsonl",
]

#: The shipped question file, relative to ``data/``.
MC_FILE = "eval/poetry_mc.jsonl"

#: Task name → (split the poems come from, one-line description).
MC_TASKS: dict[str, tuple[str, str]] = {
    "next_line": ("test", "下一句：给出诗的前几句，四个候选句中哪一句是原诗的下一句"),
    "next_line_seen": ("train", "下一句（训练集诗歌，用于数据污染实验）"),
    "fill_char": ("test", "填字：诗中挖去一个字，四个候选字中哪一个是原字"),
    "author": ("test", "作者：四位诗人中谁写了这首诗"),
}

#: Questions per task in the shipped file (more for the two 下一句 sets, whose gap the
#: contamination experiment measures).
N_PER_TASK = {"next_line": 1000, "next_line_seen": 1000, "fill_char": 300, "author": 300}

_PUNCT = "，。？！；"
_SEGMENT_RE = re.compile(r"([^，。？！；、]+)([，。？！；])")
_NAME_RE = re.compile(r"[\u4e00-\u9fff]{2,4}")


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question: ``choices[answer]`` is the true continuation."""

    context: str
    choices: tuple[str, ...]
    answer: int
    task: str = ""
    id: str = ""
    poem_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def text(self) -> str:
        """The context followed by the right answer (what a contamination check looks at)."""
        return self.context + self.choices[self.answer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "poem_id": self.poem_id,
            "context": self.context,
            "choices": list(self.choices),
            "answer": self.answer,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MCItem:
        return cls(
            context=d["context"],
            choices=tuple(d["choices"]),
            answer=int(d["answer"]),
            task=d.get("task", ""),
            id=d.get("id", ""),
            poem_id=d.get("poem_id"),
        )


def _h(*parts: object) -> int:
    """A big integer fixed by ``parts`` alone (SHA-1), the builder's only source of chance."""
    key = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int(hashlib.sha1(key).hexdigest(), 16)


def _segments(text: str) -> list[tuple[str, str]] | None:
    """``[(line, mark), …]`` if ``text`` is nothing but lines each ending in a mark."""
    segs = _SEGMENT_RE.findall(text)
    if not segs or "".join(a + b for a, b in segs) != text:
        return None
    return segs


def _pick(pool: Sequence[str], n: int, exclude: set[str], *key: object) -> list[str] | None:
    """``n`` distinct members of ``pool`` not in ``exclude``, chosen by hashes of ``key``."""
    out: list[str] = []
    for j in range(50 * n):
        cand = pool[_h(*key, j) % len(pool)]
        if cand not in exclude and cand not in out:
            out.append(cand)
            if len(out) == n:
                return out
    return None


def _with_answer(answer: str, distractors: list[str], *key: object) -> tuple[list[str], int]:
    """Put ``answer`` at a hash-chosen position among the distractors."""
    pos = _h(*key, "answer-position") % (len(distractors) + 1)
    choices = distractors[:pos] + [answer] + distractors[pos:]
    return choices, pos


def _ordered(poems: Sequence[Any], task: str) -> list[tuple[Any, list[tuple[str, str]]]]:
    """Poems that are clean line sequences, in a hash order fixed by the task."""
    out = []
    for p in poems:
        segs = _segments(p.text)
        if segs is not None:
            out.append((p, segs))
    out.sort(key=lambda ps: _h(task, ps[0].text))
    return out


def _next_line(poems: Sequence[Any], task: str, n: int) -> list[MCItem]:
    ordered = _ordered(poems, task)
    by_len: dict[int, list[str]] = {}
    for _, segs in sorted(ordered, key=lambda ps: ps[0].id):
        for line, _ in segs:
            by_len.setdefault(len(line), []).append(line)
    items: list[MCItem] = []
    for p, segs in ordered:
        k = 1 + _h(task, "k", p.text) % (len(segs) - 1)
        line, mark = segs[k]
        picked = _pick(by_len[len(line)], 3, {ln for ln, _ in segs}, task, p.text)
        if picked is None:
            continue
        choices, answer = _with_answer(line + mark, [d + mark for d in picked], task, p.text)
        context = "".join(a + b for a, b in segs[:k])
        items.append(MCItem(context, tuple(choices), answer, task, "", p.id))
        if len(items) == n:
            break
    return items


def _fill_char(poems: Sequence[Any], task: str, n: int) -> list[MCItem]:
    ordered = _ordered(poems, task)
    by_slot: dict[tuple[int, int], list[str]] = {}
    for _, segs in sorted(ordered, key=lambda ps: ps[0].id):
        for line, _ in segs:
            for j, ch in enumerate(line):
                by_slot.setdefault((len(line), j), []).append(ch)
    items: list[MCItem] = []
    for p, segs in ordered:
        i = _h(task, "line", p.text) % len(segs)
        line, mark = segs[i]
        j = _h(task, "char", p.text) % len(line)
        picked = _pick(by_slot[(len(line), j)], 3, {line[j]}, task, p.text)
        if picked is None:
            continue
        rest = line[j + 1 :] + mark
        choices, answer = _with_answer(line[j] + rest, [c + rest for c in picked], task, p.text)
        context = "".join(a + b for a, b in segs[:i]) + line[:j]
        items.append(MCItem(context, tuple(choices), answer, task, "", p.id))
        if len(items) == n:
            break
    return items


def _author(poems: Sequence[Any], task: str, n: int) -> list[MCItem]:
    named = [p for p in poems if _NAME_RE.fullmatch(p.author)]
    # one entry per poem, so that distractors are as frequent as right answers: a model
    # that simply prefers prolific poets gains nothing
    authors = [p.author for p in sorted(named, key=lambda p: p.id)]
    items: list[MCItem] = []
    for p, _ in _ordered(named, task):
        picked = _pick(authors, 3, {p.author}, task, p.text)
        if picked is None:
            continue
        choices, answer = _with_answer(p.author, picked, task, p.text)
        items.append(MCItem(p.text + "作者", tuple(choices), answer, task, "", p.id))
        if len(items) == n:
            break
    return items


def build_poetry_mc(
    n_per_task: int | None = None, tasks: Iterable[str] | None = None
) -> list[MCItem]:
    """Rebuild the shipped questions, in :data:`MC_TASKS` order.

    ``n_per_task``: questions per task (default :data:`N_PER_TASK`, the shipped sizes);
    ``tasks``: a subset of :data:`MC_TASKS`.  Deterministic: the result depends only on
    ``poetry.jsonl.xz`` and the arguments (a smaller ``n_per_task`` gives a prefix).
    """
    from llmbook.data.poetry import _lm_split

    if n_per_task is not None and n_per_task < 1:
        raise ValueError(f"n_per_task must be >= 1, got {n_per_task}")
    tasks = list(MC_TASKS) if tasks is None else list(tasks)
    for t in tasks:
        _check_task(t)
    split = _lm_split()
    builders = {
        "next_line": _next_line,
        "next_line_seen": _next_line,
        "fill_char": _fill_char,
        "author": _author,
    }
    out: list[MCItem] = []
    for t in tasks:
        n = N_PER_TASK[t] if n_per_task is None else n_per_task
        made = builders[t](split[MC_TASKS[t][0]], t, n)
        out.extend(
            MCItem(it.context, it.choices, it.answer, t, f"{t}-{i:03d}", it.poem_id)
            for i, it in enumerate(made)
        )
    return out


def items_to_jsonl(items: Iterable[MCItem]) -> str:
    """The JSON-lines text of ``items`` (the exact bytes of the shipped file, as UTF-8)."""
    return "".join(json.dumps(it.to_dict(), ensure_ascii=False) + "\n" for it in items)


def write_poetry_mc(path: str | Path | None = None) -> Path:
    """Write :func:`build_poetry_mc` to ``path`` (default ``data/eval/poetry_mc.jsonl``).

    After rewriting the shipped file, run ``make manifest`` (or
    :func:`llmbook.data.registry.write_manifest`).
    """
    path = Path(path) if path is not None else _repo_data_dir() / MC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(items_to_jsonl(build_poetry_mc()), encoding="utf-8")
    return path


def _check_task(task: str) -> None:
    if task not in MC_TASKS:
        listing = "; ".join(f"{k}: {v[1]}" for k, v in MC_TASKS.items())
        raise ValueError(f"unknown multiple-choice task {task!r}; the shipped tasks are {listing}")


def load_poetry_mc(task: str | None = None) -> list[MCItem]:
    """The shipped questions of ``task`` (one of :data:`MC_TASKS`), or all of them."""
    if task is not None:
        _check_task(task)
    path = data_path(MC_FILE)
    items = [
        MCItem.from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return [it for it in items if task is None or it.task == task]


if __name__ == "__main__":  # python -m llmbook.data.mcq && make manifest
    print(write_poetry_mc())
