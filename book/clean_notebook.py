"""Strip what a saved, executed notebook should not keep (run by ``make notebook``).

* **stderr streams** of cells whose output nbval does not check: progress-bar refreshes
  (a minute of training stores hundreds of them), library warnings that print machine
  paths.  The book never shows stderr (``nb_output_stderr: remove`` in ``_config.yml``);
  cells tagged ``nbval-check-output`` keep everything, since nbval compares their streams.
* **execution metadata** (timestamps), so that re-executing an unchanged notebook gives
  an unchanged file.

Usage: ``python book/clean_notebook.py chapters/01_background/1_1_origin.ipynb …``;
``--check`` exits 1 (naming the files) when a notebook would change, without writing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CHECKED = "nbval-check-output"


def clean(nb: dict[str, Any]) -> int:
    """Clean ``nb`` in place; return how many outputs and metadata entries were removed."""
    removed = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        if meta.pop("execution", None) is not None:
            removed += 1
        if CHECKED in meta.get("tags", []):
            continue
        outputs = cell.get("outputs", [])
        kept = [
            o
            for o in outputs
            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
        ]
        removed += len(outputs) - len(kept)
        cell["outputs"] = kept
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report, don't write")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        n = clean(nb)
        if n and args.check:
            dirty.append(f"{path} ({n} outputs to strip)")
        elif n:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path}: removed {n} stderr outputs / execution stamps")
    if dirty:
        print("not clean (run `python book/clean_notebook.py` on them):\n  " + "\n  ".join(dirty))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
