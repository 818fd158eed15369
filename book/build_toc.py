"""Write ``_toc.yml`` from the chapter folders, so the table of contents cannot drift.

Each chapter ``chapters/NN_slug/`` holds ``index.md`` (the chapter page) and one notebook per
section, ``N_M_slug.ipynb``, generated from the MyST source ``N_M_slug.md`` beside it; the
sections are listed in numeric order (1.2 before 1.10).  ``--check`` exits 1 when
``_toc.yml`` is not what this script would write (``tests/test_book.py`` runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SECTION_RE = re.compile(r"^(\d+)_(\d+)_[a-z0-9_]+\.md$")

HEADER = """\
# Table of contents (Jupyter Book 1.x), written by `python book/build_toc.py`: do not edit.
# Chapters are folders chapters/NN_slug/ (index.md + one notebook per section).
format: jb-book
root: chapters/00_preface
parts:
  - caption: 正文
    numbered: true
    chapters:
"""

FOOTER = """\
  - caption: 参考
    chapters:
      - file: chapters/glossary
      - file: chapters/bibliography
"""


def sections(folder: Path) -> list[str]:
    """Section page names of a chapter folder, in numeric order."""
    found = []
    for path in folder.iterdir():
        m = SECTION_RE.match(path.name)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), path.stem))
    return [stem for _, stem in sorted(found)]


def render() -> str:
    lines = [HEADER]
    for folder in sorted(p for p in CHAPTERS.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        if not (folder / "index.md").is_file():
            raise SystemExit(f"{folder.relative_to(ROOT)} has no index.md (the chapter page)")
        lines.append(f"      - file: chapters/{folder.name}/index\n")
        secs = sections(folder)
        if secs:
            lines.append("        sections:\n")
            lines += [f"          - file: chapters/{folder.name}/{s}\n" for s in secs]
    lines.append(FOOTER)
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, don't write")
    args = parser.parse_args(argv)
    text = render()
    path = ROOT / "_toc.yml"
    if args.check:
        if path.read_text(encoding="utf-8") != text:
            print("_toc.yml is out of date: run `python book/build_toc.py`")
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
