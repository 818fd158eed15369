"""The small, cited table of notable language models that chapter 1 plots.

``data/models_timeline.csv`` lists, for each model, the year it was first made public,
its parameter count as stated in (or commonly quoted from) its paper, its main language,
the organisation and the BibTeX key of the paper in ``references.bib``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

__all__ = ["ModelEntry", "load_models_timeline"]


@dataclass(frozen=True)
class ModelEntry:
    model: str
    year: int
    parameters: int
    language: str
    organization: str
    cite: str
    note: str


def load_models_timeline() -> list[ModelEntry]:
    """Rows of ``data/models_timeline.csv``, sorted by year then size."""
    from llmbook.data.registry import data_path

    path = data_path("models_timeline.csv")
    with path.open(encoding="utf-8", newline="") as f:
        rows = [
            ModelEntry(
                r["model"],
                int(r["year"]),
                int(r["parameters"]),
                r["language"],
                r["organization"],
                r["cite"],
                r["note"],
            )
            for r in csv.DictReader(f)
        ]
    if not rows:
        raise ValueError(f"{path} has no rows")
    return sorted(rows, key=lambda e: (e.year, e.parameters))
