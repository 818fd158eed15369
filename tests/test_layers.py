"""The package's layers: every import runs downward, and no modules import each other in a cycle.

The ranks below are the architecture of ``llmbook`` (see the package docstring): a module may
import from its own subpackage or from a subpackage of a *lower* rank, never from one of the
same or a higher rank.  Both top-level and in-function (lazy) imports count, since a lazy
import that runs upward is still a dependency that runs upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llmbook

PKG = Path(llmbook.__file__).resolve().parent

#: rank of each top-level part of the package: lower ranks never import higher ones
RANKS = {
    "_lazy": 0,
    "utils": 0,
    "interfaces": 0,
    "optim": 0,
    "data": 1,
    "text": 2,
    "models": 3,
    "generation": 4,
    "evaluation": 5,
    "training": 6,
    "applications": 7,
    "serving": 7,
    "experiments": 8,
    "book": 8,
    "cli": 9,
    "__main__": 9,
    "__init__": 9,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _part(module: str) -> str:
    """``llmbook.data.poetry`` -> ``data``; ``llmbook`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """Every ``llmbook`` module that ``path`` imports, with its line number."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    me = _module_name(path)
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("llmbook")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                pkg = me.split(".")
                if not path.name == "__init__.py":
                    pkg = pkg[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            if not base.startswith("llmbook"):
                continue
            for a in node.names:  # `from llmbook.data import poetry` imports a module
                sub = f"{base}.{a.name}"
                is_module = (PKG.parent / (sub.replace(".", "/") + ".py")).is_file() or (
                    PKG.parent / sub.replace(".", "/") / "__init__.py"
                ).is_file()
                out.append((sub if is_module else base, node.lineno))
    return out


MODULES = sorted(PKG.rglob("*.py"))


def test_every_part_has_a_rank() -> None:
    parts = {_part(_module_name(p)) for p in MODULES}
    assert parts <= set(RANKS), f"give these a rank in RANKS: {sorted(parts - set(RANKS))}"


def _upward(path: Path, source: str | None = None) -> list[str]:
    me = _module_name(path)
    mine = _part(me)
    bad = []
    for target, line in _imports(path, source):
        theirs = _part(target)
        if theirs == mine or target == "llmbook":
            continue
        if RANKS[theirs] >= RANKS[mine]:
            bad.append(
                f"{path.relative_to(PKG.parent)}:{line} imports {target} ({theirs}, rank "
                f"{RANKS[theirs]}) from {mine} (rank {RANKS[mine]})"
            )
    return bad


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_only_run_downward(path: Path) -> None:
    bad = _upward(path)
    assert not bad, "imports that run upward or sideways:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        me = _module_name(path)
        graph.setdefault(me, set()).update(
            t for t, _ in _imports(path) if t != me and not me.startswith(t + ".")
        )
    # the package __init__ files only hold lazy accessors; an edge into a package means
    # "some module of it": resolve it to the package's own __init__, which imports nothing
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_catches_an_upward_import() -> None:
    """The rule above can fail: a lazy import of a model inside a data module is reported."""
    probe = PKG / "data" / "probe.py"  # not written: the source is passed in
    source = "def f():\n    from llmbook.models.gpt import GPT\n    return GPT\n"
    (bad,) = _upward(probe, source)
    assert "data/probe.py:2 imports llmbook.models.gpt" in bad
    assert _upward(probe, "from llmbook.data.registry import data_path\n") == []


def test_no_module_is_too_long() -> None:
    long = {
        str(p.relative_to(PKG.parent)): n
        for p in MODULES
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 520
    }
    assert not long, f"split these modules (over ~500 lines): {long}"
