"""Rewrite data/MANIFEST.sha256 (and its copy in llmbook/resources/) from data/'s files.

Every file under data/ is listed except the manifest itself and the build scripts in
data/scripts/ (code, not data).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

DATA = Path(__file__).resolve().parents[1]
SKIP = {"MANIFEST.sha256"}


def main() -> None:
    lines = []
    for path in sorted(p for p in DATA.rglob("*") if p.is_file()):
        rel = path.relative_to(DATA).as_posix()
        if (
            rel in SKIP
            or rel.startswith("scripts/")
            or "__pycache__" in rel
            or rel.endswith(".part")
        ):
            continue
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    text = "".join(lines)
    (DATA / "MANIFEST.sha256").write_text(text, encoding="utf-8")
    res = DATA.parent / "llmbook" / "resources"
    res.mkdir(exist_ok=True)
    (res / "MANIFEST.sha256").write_text(text, encoding="utf-8")
    print(f"data/MANIFEST.sha256: {len(lines)} files")


if __name__ == "__main__":
    main()
