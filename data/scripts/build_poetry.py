"""Build data/poetry.jsonl.xz from the npm package ``chinese-poetry`` (MIT licence).

Run from the repository root:  python data/scripts/build_poetry.py
(`make data` runs it and then rewrites data/MANIFEST.sha256).

Steps: ``npm pack chinese-poetry@2.0.1`` into a temporary folder, read every Tang poem
(全唐诗, stored in traditional characters) and every Song ci (全宋词), convert the Tang
poems to simplified characters with OpenCC (t2s), drop records with no text, and write
one JSON object per line: id, dynasty, kind, title, author, paragraphs.
The output is deterministic (sorted input files, xz has no timestamp).
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.0.1"
OUT = Path(__file__).resolve().parents[1] / "poetry.jsonl.xz"


def _npm_pack(dest: Path) -> Path:
    print(f"npm pack chinese-poetry@{VERSION} …", flush=True)
    subprocess.run(
        ["npm", "pack", f"chinese-poetry@{VERSION}", "--silent"],
        cwd=dest,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return dest / f"chinese-poetry-{VERSION}.tgz"


def _members(tar: tarfile.TarFile, prefix: str) -> list[tarfile.TarInfo]:
    return sorted(
        (m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()),
        key=lambda m: (len(m.name), m.name),
    )


def main() -> None:
    from opencc import OpenCC

    t2s = OpenCC("t2s")
    with tempfile.TemporaryDirectory() as tmp:
        tgz = _npm_pack(Path(tmp))
        records = []
        with tarfile.open(tgz) as tar:
            for m in _members(tar, "package/dist/quantangshi/poet.tang."):
                for p in json.load(tar.extractfile(m)):  # type: ignore[arg-type]
                    paras = [t2s.convert(s).strip() for s in p.get("paragraphs", []) if s.strip()]
                    if not paras:
                        continue
                    records.append(
                        {
                            "dynasty": "唐",
                            "kind": "诗",
                            "title": t2s.convert(p.get("title", "")).strip(),
                            "author": t2s.convert(p.get("author", "")).strip(),
                            "paragraphs": paras,
                        }
                    )
            for m in _members(tar, "package/dist/songci/ci.song."):
                for p in json.load(tar.extractfile(m)):  # type: ignore[arg-type]
                    paras = [s.strip() for s in p.get("paragraphs", []) if s.strip()]
                    if not paras:
                        continue
                    records.append(
                        {
                            "dynasty": "宋",
                            "kind": "词",
                            "title": p.get("rhythmic", "").strip(),
                            "author": p.get("author", "").strip(),
                            "paragraphs": paras,
                        }
                    )
            licence = tar.extractfile("package/LICENSE").read().decode()  # type: ignore[union-attr]
    text = "".join(
        json.dumps({"id": i, **r}, ensure_ascii=False) + "\n" for i, r in enumerate(records)
    )
    OUT.write_bytes(lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    (OUT.parent / "LICENSE-chinese-poetry.txt").write_text(licence, encoding="utf-8")
    print(f"wrote {OUT} ({len(records)} poems, {OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    sys.exit(main())
