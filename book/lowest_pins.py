"""Print ``name==version`` pins for the lowest versions that pyproject.toml declares.

``make lowest`` installs these pins into a separate virtual environment and runs the unit
tests there, so every ``>=`` lower bound in ``[project] dependencies`` is one that CI has
actually run.  The pins are generated here, from pyproject.toml itself, so the job cannot
drift from what the package declares.

usage: python book/lowest_pins.py [--extra NAME ...] [--lowest DIST ...] [--pinned DIST ...]

  --extra NAME   also pin the lower bounds of the optional extra NAME (e.g. ``serve``)
  --lowest DIST  also pin the lower bound of DIST, found in any extra (e.g. ``httpx`` of ``dev``)
  --pinned DIST  also print DIST's exact ``==`` pin from requirements.txt (the test tools,
                 which are not dependencies of the package and have no lower bound to prove)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent

# "name[extra] >=1.2,<3 ; marker" -> name, specifiers, marker
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*?)\s*(?:;(?P<marker>.*))?$"
)


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name (``Rouge_Score`` -> ``rouge-score``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    """The normalised distribution name a requirement string starts with."""
    m = _REQUIREMENT.match(requirement)
    return _normalise(m["name"]) if m else requirement


def lowest_pin(requirement: str) -> str:
    """``"numpy>=1.24,<3"`` -> ``"numpy==1.24"``; an environment marker is kept.

    Raises ``ValueError`` when the requirement has no ``>=`` lower bound, because then there
    is no lowest version to install and check.
    """
    m = _REQUIREMENT.match(requirement)
    if m is None:
        raise ValueError(f"cannot parse the requirement {requirement!r} in pyproject.toml")
    bounds = [s.strip()[2:].strip() for s in m["spec"].split(",") if s.strip().startswith(">=")]
    if len(bounds) != 1:
        raise ValueError(
            f"requirement {requirement!r} in pyproject.toml needs exactly one '>=' lower bound "
            "(the oldest version the tests pass with) so that `make lowest` can install and "
            "test it; write e.g. 'name>=1.2'"
        )
    marker = f"; {m['marker'].strip()}" if m["marker"] else ""
    return f"{m['name']}=={bounds[0]}{marker}"


def requirements_pin(dist: str, requirements: str) -> str:
    """The ``dist==version`` line for ``dist`` in the text of requirements.txt."""
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, _ = line.partition("==")
        if sep and _normalise(name) == _normalise(dist):
            return line
    raise ValueError(f"{dist!r} has no 'name==version' pin in requirements.txt; add one there")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], metavar="NAME")
    parser.add_argument("--lowest", nargs="*", default=[], metavar="DIST")
    parser.add_argument("--pinned", nargs="*", default=[], metavar="DIST")
    args = parser.parse_args(argv)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    for extra in args.extra:
        if extra not in extras:
            parser.error(f"pyproject.toml has no extra {extra!r}; it has: {', '.join(extras)}")
        requirements += extras[extra]
    declared = {_name(r): r for group in extras.values() for r in group}
    for dist in args.lowest:
        if _normalise(dist) not in declared:
            parser.error(f"{dist!r} is in no extra of pyproject.toml; add it to one (e.g. dev)")
        requirements.append(declared[_normalise(dist)])
    try:
        pins = [lowest_pin(r) for r in requirements]
        text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
        pins += [requirements_pin(d, text) for d in args.pinned]
    except ValueError as e:
        print(f"lowest_pins.py: {e}", file=sys.stderr)
        return 1
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
