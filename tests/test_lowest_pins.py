"""book/lowest_pins.py: the ``==`` pins `make lowest` installs, derived from pyproject.toml."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lowest_pins", ROOT / "book" / "lowest_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lp = _load()


def _project() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_core_dependency_is_pinned_at_its_lower_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Compared with packaging's parser: one pin per dependency, at its '>=' version."""
    assert lp.main([]) == 0
    pins = [Requirement(line) for line in capsys.readouterr().out.splitlines()]
    expected = [Requirement(r) for r in _project()["dependencies"]]
    assert [p.name for p in pins] == [r.name for r in expected]
    for pin, req in zip(pins, expected, strict=True):
        (lower,) = [s.version for s in req.specifier if s.operator == ">="]
        assert str(pin.specifier) == f"=={lower}"


def test_extras_lowest_and_pinned_are_added(capsys: pytest.CaptureFixture[str]) -> None:
    assert lp.main(["--extra", "serve", "--lowest", "httpx", "--pinned", "pytest"]) == 0
    lines = capsys.readouterr().out.splitlines()
    n_core = len(_project()["dependencies"])
    serve = [Requirement(r).name for r in _project()["optional-dependencies"]["serve"]]
    assert [Requirement(x).name for x in lines[n_core:]] == [*serve, "httpx", "pytest"]
    assert lines[-1] == lp.requirements_pin("pytest", (ROOT / "requirements.txt").read_text())


def test_lowest_pin_keeps_markers_and_drops_upper_bounds() -> None:
    assert lp.lowest_pin("torch>=2.13,<3") == "torch==2.13"
    assert lp.lowest_pin("uvicorn[standard] >= 0.23") == "uvicorn==0.23"
    assert lp.lowest_pin('tomli>=2; python_version < "3.11"') == 'tomli==2; python_version < "3.11"'


@pytest.mark.parametrize("req", ["numpy", "numpy<3", "numpy==1.24", "numpy>=1,>=2"])
def test_a_dependency_without_one_lower_bound_is_refused(req: str) -> None:
    with pytest.raises(ValueError, match="needs exactly one '>=' lower bound"):
        lp.lowest_pin(req)


def test_requirements_pin_matches_normalised_names() -> None:
    text = "# comment\nRouge_Score==0.1.2  # oracle\nnumpy==2.4.6\n"
    assert lp.requirements_pin("rouge-score", text) == "Rouge_Score==0.1.2"
    with pytest.raises(ValueError, match="'scipy' has no 'name==version' pin"):
        lp.requirements_pin("scipy", text)


def test_unknown_extra_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        lp.main(["--extra", "nope"])
    assert e.value.code == 2
    assert "pyproject.toml has no extra 'nope'" in capsys.readouterr().err
