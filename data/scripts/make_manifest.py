"""Rewrite data/MANIFEST.sha256 (and its copy in llmbook/resources/) from data/'s files.

Every file under data/ is listed except the manifest itself and the build scripts in
data/scripts/ (code, not data); see :func:`llmbook.data.registry.write_manifest`.
"""

from __future__ import annotations

from llmbook.data.registry import write_manifest


def main() -> None:
    print(f"data/MANIFEST.sha256: {write_manifest()} files")


if __name__ == "__main__":
    main()
