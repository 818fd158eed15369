"""Chapter 2.7's tokenizer comparison at equal compute, from the shipped artifact.

``data/results/ch2-tokenizers`` (built by ``python -m llmbook.experiments build
ch2-tokenizers``) trains the same small GPT on People's Daily with each tokenizer for the
same number of tokens and scores bits per character on the held-out sentences, charging
unknown pieces the bits to spell them out.  The peer of every row is the character-level
tokenizer (ratio = character bpc / this bpc, > 1: better than characters).  Nothing is
timed: this section reports the artifact.

Usage: ``python benchmarks/bench_tokenizers.py`` (also run by ``benchmarks/run_all.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from llmbook.experiments.artifacts import read_card  # noqa: E402
from llmbook.experiments.tokcompare import load_results  # noqa: E402


def run() -> dict[str, Any]:
    """The tokenizer table (for run_all.py)."""
    card = read_card("results/ch2-tokenizers")
    results = load_results()
    char = next(r for r in results if r["name"] == "char")
    rows = [
        dict(
            metric=f"valid bpc, {r['name']}",
            ours=f"{r['bpc']:.3f}",
            peer=f"{char['bpc']:.3f}",
            ratio=char["bpc"] / r["bpc"],
            unit="bits/char",
            note=(
                f"vocab {r['vocab_size']:,}; {r['chars_per_token']:.2f} chars/token; "
                f"unk {r['unk_rate']:.2%}; without spelling cost {r['bpc_raw']:.3f}"
            ),
        )
        for r in results
    ]
    return {
        "title": "Tokenizers at equal compute (chapter 2.7)",
        "rows": rows,
        "notes": f"From the shipped artifact data/results/ch2-tokenizers: {card['data']}",
    }


if __name__ == "__main__":
    from run_all import render

    print(render("bench_tokenizers", run(), 0.0))
