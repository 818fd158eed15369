"""Exercises with auto-graded coding tasks: ``check("5.3.2", your_function)``.

Every section of chapters 1–8 ends with 练习.  A coding exercise names an id
(``"5.3.2"``: section 5.3, exercise 2) and the function the reader should write; the
reader checks it with

>>> from llmbook.book.exercises import check
>>> check("1.1.1", lambda counts: ...)          # doctest: +SKIP
✗ 练习 1.1.1（……）：……

:func:`check` runs the function against hidden test cases and says in Chinese what is
wrong (the input, the expected and the returned value, or the exception raised).
Thinking and derivation questions have a text answer.  The reference solutions live in
the chapter modules ``llmbook/book/exercises/chN.py`` next to their tests, are shown
(collapsed) in the solutions appendix by :func:`show_solution`, and CI runs every one
through its own checker (``tests/test_exercises.py`` and the appendix page).

A chapter module registers its exercises with two decorators::

    @exercise("1.1.1", "齐普夫定律的斜率", test=_test_zipf)
    def zipf_slope(counts): ...          # the reference solution

    answer("1.1.2", "为什么……", "参考答案的 Markdown 文本")
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Exercise",
    "ExerciseFailure",
    "exercise",
    "answer",
    "expect",
    "expect_close",
    "check",
    "get",
    "all_exercises",
    "show_solution",
]

_ID = re.compile(r"^([1-9])\.(\d+)\.(\d+)$")
CHAPTERS = range(1, 10)


class ExerciseFailure(AssertionError):
    """A hidden test case failed; the message says what was wrong, in Chinese."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: an id, a short title, a checker (coding exercises) and a solution."""

    id: str
    title: str
    test: Callable[[Callable[..., Any]], int] | None  #: runs the cases, returns how many
    solution: Callable[..., Any] | str  #: the reference function, or an answer text

    @property
    def is_code(self) -> bool:
        return self.test is not None


_REGISTRY: dict[str, Exercise] = {}


def _check_id(ex_id: str) -> re.Match[str]:
    m = _ID.match(ex_id) if isinstance(ex_id, str) else None
    if m is None:
        raise ValueError(
            f"an exercise id looks like '5.3.2' (section 5.3, exercise 2), got {ex_id!r}"
        )
    return m


def _register(ex: Exercise) -> None:
    _check_id(ex.id)
    if ex.id in _REGISTRY and _REGISTRY[ex.id] != ex:
        raise ValueError(f"exercise {ex.id} is registered twice")
    _REGISTRY[ex.id] = ex


def exercise(
    ex_id: str, title: str, *, test: Callable[[Callable[..., Any]], int]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the reference solution of a coding exercise.

    ``test(fn)`` runs the hidden cases against ``fn`` (raising :class:`ExerciseFailure`
    via :func:`expect` on the first wrong answer) and returns the number of cases.
    """

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _register(Exercise(ex_id, title, test, fn))
        return fn

    return deco


def answer(ex_id: str, title: str, text: str) -> None:
    """Register a thinking or derivation exercise with its reference answer (Markdown)."""
    if not text.strip():
        raise ValueError(f"exercise {ex_id} needs a non-empty answer")
    _register(Exercise(ex_id, title, None, text.strip()))


def expect(got: Any, want: Any, case: str) -> None:
    """Fail with a Chinese message unless ``got == want``; ``case`` describes the input."""
    if got != want:
        raise ExerciseFailure(f"{case}：应为 {want!r}，你的函数返回 {got!r}")


def expect_close(got: Any, want: float, case: str, tol: float = 1e-6) -> None:
    """Like :func:`expect` for numbers: ``|got - want| <= tol · max(1, |want|)``."""
    try:
        ok = math.isfinite(float(got)) and abs(float(got) - want) <= tol * max(1.0, abs(want))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ExerciseFailure(f"{case}：应约为 {want:.6g}，你的函数返回 {got!r}")


def _load(chapter: int) -> None:
    try:
        importlib.import_module(f"llmbook.book.exercises.ch{chapter}")
    except ModuleNotFoundError as e:
        if e.name != f"llmbook.book.exercises.ch{chapter}":
            raise


def get(ex_id: str) -> Exercise:
    """The registered exercise ``ex_id``; an unknown id lists the known ones of its chapter."""
    m = _check_id(ex_id)
    _load(int(m.group(1)))
    if ex_id not in _REGISTRY:
        same = sorted(k for k in _REGISTRY if k.startswith(m.group(1) + "."))
        raise KeyError(f"没有编号为 {ex_id} 的练习；第 {m.group(1)} 章的练习有：{same}")
    return _REGISTRY[ex_id]


def all_exercises(chapters: Iterable[int] = CHAPTERS) -> list[Exercise]:
    """Every registered exercise of ``chapters``, in id order."""
    wanted = set(chapters)
    for c in wanted:
        _load(c)

    def key(e: Exercise) -> tuple[int, ...]:
        return tuple(int(x) for x in e.id.split("."))

    return sorted((e for e in _REGISTRY.values() if int(e.id.split(".")[0]) in wanted), key=key)


def check(ex_id: str, fn: Callable[..., Any], *, quiet: bool = False) -> bool:
    """Run the hidden test cases of coding exercise ``ex_id`` against ``fn``.

    Prints (unless ``quiet``) ``✓`` with the number of cases, or ``✗`` with what was
    wrong, and returns whether every case passed.  An exception raised by ``fn`` counts
    as a wrong answer and is reported with its type and message.
    """
    ex = get(ex_id)
    if ex.test is None:
        raise ValueError(f"练习 {ex_id} 是思考题，没有自动检查；参考答案见附录")
    if not callable(fn):
        raise TypeError(f"check() 需要一个函数，得到的是 {type(fn).__name__}")
    try:
        n = ex.test(fn)
    except ExerciseFailure as e:
        msg, ok = f"✗ 练习 {ex_id}（{ex.title}）：{e}", False
    except Exception as e:  # the reader's function raised
        msg, ok = f"✗ 练习 {ex_id}（{ex.title}）：你的函数抛出了 {type(e).__name__}: {e}", False
    else:
        msg, ok = f"✓ 练习 {ex_id}（{ex.title}）：全部 {n} 项检查通过", True
    if not quiet:
        print(msg)
    return ok


def show_solution(ex_id: str) -> bool:
    """Show the reference solution of ``ex_id`` (answer text, or source then its check).

    In a notebook the text is rendered as Markdown (so formulas display) and code as a
    Python block; elsewhere both are printed.  Returns whether a code solution passes.
    """
    ex = get(ex_id)
    head = f"**练习 {ex.id}**：{ex.title}"
    body = (
        ex.solution
        if isinstance(ex.solution, str)
        else ("```python\n" + inspect.getsource(ex.solution).rstrip() + "\n```")
    )
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython is a dependency of the book
        shell = None
    if shell is not None:
        display(Markdown(f"{head}\n\n{body}"))
    else:
        print(f"{head}\n\n{body}")
    return True if isinstance(ex.solution, str) else check(ex_id, ex.solution)
