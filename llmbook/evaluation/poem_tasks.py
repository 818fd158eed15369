"""An instruction set built from the poetry corpus: four tasks whose answers come from the data.

Every regular quatrain (五言/七言绝句) with a title and an author gives one instruction
per task:

=======  =======================================  ==========================
task     instruction                              response
=======  =======================================  ==========================
写诗     写一首五言绝句，题为{题目}                 the poem
续写     续写下一句，上句是{第 1 或第 3 句}          the next line
作者     {首句}，{次句}。这两句诗的作者是谁？        the author
题目     {全诗}为这首诗拟一个题目                    the title
=======  =======================================  ==========================

Split the *poems* first (:func:`llmbook.data.poetry.poetry_split`), then build the tasks
of each split: a held-out instruction is then about a poem the model never saw in SFT.
:func:`score_response` says whether a response has the requested form, is on topic
and is exactly right; :func:`llmbook.evaluation.instructions.evaluate_tasks` applies it
to a model's answers.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from llmbook.data.poetry import Poem
from llmbook.evaluation.poems import form_compliance
from llmbook.text.tokenizers import VocabTokenizer

__all__ = ["TASKS", "PoemTask", "poem_tasks", "poem_task_splits", "TaskScore", "score_response"]

#: the four tasks, in the order the book's tables list them
TASKS = ("写诗", "续写", "作者", "题目")
_FORMS = ("五言绝句", "七言绝句")
_MAX_TITLE = 12


@dataclass(frozen=True)
class PoemTask:
    """One instruction with its reference answer and the poem it was made from."""

    task: str
    instruction: str
    response: str
    poem: Poem

    @property
    def pair(self) -> tuple[str, str]:
        return self.instruction, self.response


def _make(task: str, p: Poem, rng: random.Random) -> PoemTask:
    lines = p.lines
    if task == "写诗":
        return PoemTask(task, f"写一首{p.form}，题为{p.title}", p.text, p)
    if task == "续写":
        i = rng.choice((0, 2))
        return PoemTask(task, f"续写下一句，上句是{lines[i]}", lines[i + 1], p)
    if task == "作者":
        return PoemTask(task, f"{lines[0]}，{lines[1]}。这两句诗的作者是谁？", p.author, p)
    return PoemTask(task, f"{p.text}为这首诗拟一个题目", p.title, p)


def poem_tasks(
    poems: Iterable[Poem],
    tasks: Sequence[str] = TASKS,
    tokenizer: VocabTokenizer | None = None,
    seed: int = 0,
) -> list[PoemTask]:
    """One :class:`PoemTask` per task for every usable quatrain of ``poems``, in order.

    Usable: a 五言 or 七言绝句 of four lines, a title of at most 12 characters and an
    author.  With ``tokenizer``, tasks whose text has a character outside its
    vocabulary are skipped, so no ``<unk>`` enters the data.  ``seed`` picks which
    couplet the 续写 task asks about.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {TASKS}")
    rng = random.Random(seed)
    out = []
    for p in poems:
        if p.form not in _FORMS or len(p.lines) != 4 or not p.author:
            continue
        if not p.title or len(p.title) > _MAX_TITLE:
            continue
        for task in tasks:
            t = _make(task, p, rng)
            if tokenizer is not None and not all(
                c in tokenizer for c in t.instruction + t.response
            ):
                continue
            out.append(t)
    if not out:
        raise ValueError(
            "no usable quatrain among the poems (五言/七言绝句 with four lines, a title of "
            "at most 12 characters and an author)"
        )
    return out


@dataclass(frozen=True)
class TaskScore:
    """How one response did: ``format_ok``, ``on_topic`` and ``exact`` (None: not scored)."""

    format_ok: bool
    on_topic: bool | None
    exact: bool | None


def _han(text: str) -> str:
    """The CJK ideographs of ``text`` (punctuation, letters and digits dropped)."""
    return "".join(c for c in text if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf")


def score_response(task: PoemTask, output: str, authors: frozenset[str] = frozenset()) -> TaskScore:
    """Score ``output`` as an answer to ``task``.

    * 写诗: form = four lines of the requested length (:func:`form_compliance`); on
      topic = uses a character of the title; never exactly right.
    * 续写: form = one line of Han characters as long as the given one; on topic =
      shares a character with the given line; exact = the poem's next line.
    * 作者: form = a name in ``authors`` (the poets of the training set) or, without
      them, 2–4 Han characters; exact = the poem's author.
    * 题目: form = 1–12 characters on one line; on topic = shares a character with the
      poem; exact = the poem's title.
    """
    out = output.strip()
    if task.task == "写诗":
        return TaskScore(
            form_compliance(out, task.poem.form)["both"],
            any(c in out for c in _han(task.poem.title)),
            None,
        )
    if task.task == "续写":
        upper = task.instruction.removeprefix("续写下一句，上句是")
        ok = len(out) == len(upper) and _han(out) == out
        return TaskScore(ok, bool(set(_han(out)) & set(upper)), out == task.response)
    if task.task == "作者":
        ok = out in authors if authors else (2 <= len(out) <= 4 and _han(out) == out)
        return TaskScore(ok, None, out == task.response)
    ok = 1 <= len(out) <= _MAX_TITLE and "\n" not in out
    return TaskScore(ok, bool(set(_han(out)) & set(_han(task.poem.text))), out == task.response)


def poem_task_splits(
    tokenizer: VocabTokenizer | None = None, eval_per_task: int = 50
) -> tuple[list[PoemTask], list[PoemTask], frozenset[str]]:
    """The book's instruction data: ``(train tasks, held-out tasks, training poets)``.

    Tang quatrains are split by :func:`~llmbook.data.poetry.poetry_split`; the training
    tasks come from the train split, the held-out ones (the first ``eval_per_task`` of
    each task, in corpus order) from the test split, so no held-out question is about a
    poem seen in SFT.  The poets are the answers of the training 作者 tasks, for the
    format check of :func:`score_response`.
    """
    from llmbook.data.poetry import load_poems, poetry_split

    if eval_per_task < 1:
        raise ValueError(f"eval_per_task must be >= 1, got {eval_per_task}")
    split = poetry_split(load_poems(dynasty="唐", form=list(_FORMS)))
    train = poem_tasks(split["train"], tokenizer=tokenizer)
    test = poem_tasks(split["test"], tokenizer=tokenizer)
    held = [t for name in TASKS for t in [x for x in test if x.task == name][:eval_per_task]]
    authors = frozenset(t.response for t in train if t.task == "作者")
    return train, held, authors
