"""Execution time of every section notebook against the 3-minute budget (2 CPU cores).

Executes each ``chapters/NN_slug/N_M_slug.ipynb`` in a fresh kernel (nothing is written back) and
reports its wall time; ``ratio`` = budget / time, so > 1 means inside the budget.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BUDGET_S = 180.0
ROOT = Path(__file__).resolve().parents[1]


def time_chapter(path: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    t0 = time.perf_counter()
    client.execute()
    return time.perf_counter() - t0


def run(chapters: list[str] | None = None) -> dict:
    paths = sorted((ROOT / "chapters").glob("[0-9][0-9]_*/[0-9]*_*.ipynb"))
    if chapters:  # chapter folders (05_gpt_project) or sections (5_4_results)
        paths = [p for p in paths if p.stem in chapters or p.parent.name in chapters]
    rows, total = [], 0.0
    for path in paths:
        seconds = time_chapter(path)
        total += seconds
        rows.append(
            {
                "metric": path.stem,
                "ours": round(seconds, 1),
                "peer": BUDGET_S,
                "ratio": BUDGET_S / seconds,
                "unit": "s (budget)",
                "note": "within budget" if seconds <= BUDGET_S else "OVER BUDGET",
            }
        )
        print(f"  {path.stem}: {seconds:.1f} s", flush=True)
    return {
        "title": "Chapter execution time (2 CPU cores, budget 3 min each)",
        "rows": rows,
        "total seconds": round(total, 1),
        "cpu cores": os.cpu_count(),
    }


if __name__ == "__main__":
    print(run(sys.argv[1:] or None))
