"""Lint the code cells of the chapter sources with ruff (run by ``make lint``).

Code in the book is read in a text column about 88 characters wide, so lines longer than
that overflow their box.  Every section source ``chapters/NN_slug/N_M_slug.md`` is
converted to a Python script (jupytext ``py:percent``) in a temporary folder and checked
with ``ruff check --line-length 88`` for long lines (E501), syntax errors and undefined
names (E9, F63, F7, F82).  The Colab install cell (tag ``remove-cell``) is skipped.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = "E501,E9,F63,F7,F82"


def sources() -> list[Path]:
    return sorted(ROOT.glob("chapters/[0-9][0-9]_*/[0-9]*_*.md"))


def main() -> int:
    import jupytext

    files = sources()
    if not files:
        print("no section sources found under chapters/")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        written: dict[Path, Path] = {}
        for src in files:
            nb = jupytext.read(src)
            nb.cells = [
                c
                for c in nb.cells
                if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", [])
            ]
            for cell in nb.cells:  # cell options are not code: keep `# %%` lines short
                cell.metadata = {}
            out = Path(tmp) / f"{src.parent.name}__{src.stem}.py"
            jupytext.write(nb, out, fmt="py:percent")
            written[out] = src
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "--isolated",
                "--line-length",
                "88",
                "--select",
                RULES,
                "--output-format",
                "concise",
                tmp,
            ],
            capture_output=True,
            text=True,
        )
    report = result.stdout
    for out, src in written.items():  # name the chapter source, not the temporary file
        report = report.replace(str(out), str(src.relative_to(ROOT)) + " (code cells)")
    if result.returncode:
        print(report.strip())
        print(f"lint_chapters: fix the code cells above ({len(files)} sources checked)")
        return 1
    print(f"lint_chapters: {len(files)} section sources clean (ruff {RULES}, 88 columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
