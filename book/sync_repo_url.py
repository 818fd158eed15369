"""Propagate ``repository.url`` from _config.yml to the package and the chapters.

The URL is set in one place, ``_config.yml``.  This script rewrites the copies that must
know it outside the book build: ``llmbook/data/registry.py`` (REPO_URL and RAW_BASE_URL, for
Colab data downloads), the Colab install cell of every section source and notebook, the
Binder requirements, and ``pyproject.toml``.  ``tests/test_book.py`` fails if they drift.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def config_repo_url() -> str:
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, re.M)
    if not m:
        raise SystemExit("_config.yml has no repository.url")
    return m.group(1).rstrip("/")


def raw_base(url: str) -> str:
    m = re.match(r"https://github\.com/([^/]+)/([^/]+)$", url)
    if not m:
        raise SystemExit(f"repository.url must look like https://github.com/OWNER/REPO, got {url}")
    return f"https://raw.githubusercontent.com/{m.group(1)}/{m.group(2)}/main"


URL_RE = r"https://github\.com/[\w.-]+/[\w.-]+"


def main() -> None:
    url = config_repo_url()
    files = [
        ROOT / "llmbook" / "data" / "registry.py",
        ROOT / "pyproject.toml",
        ROOT / "binder" / "requirements.txt",
        *sorted((ROOT / "chapters").rglob("*.ipynb")),
        *sorted((ROOT / "chapters").rglob("*.md")),
    ]
    for path in files:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        new = re.sub(
            r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/main", raw_base(url), text
        )
        new = re.sub(URL_RE, url, new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    print(f"repository URL: {url}")


if __name__ == "__main__":
    main()
