"""The book's structure: table of contents, chapters, sources in sync, executed outputs,
citations, glue names and the single repository URL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [
    ("01_background", "背景介绍"),
    ("02_concepts", "核心概念与联系"),
    ("03_algorithms", "核心算法原理"),
    ("04_math", "数学模型和公式"),
    ("05_gpt_project", "项目实践"),
    ("06_applications", "实际应用场景"),
    ("07_tools", "工具和资源推荐"),
    ("08_future", "未来发展趋势与挑战"),
    ("09_faq", "常见问题与解答"),
]


def _nb(stem: str) -> dict:
    return json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def test_toc_lists_preface_nine_chapters_glossary_bibliography():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    assert toc["root"] == "chapters/00_preface"
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert files == [f"chapters/{s}" for s, _ in CHAPTERS] + [
        "chapters/glossary",
        "chapters/bibliography",
    ]
    for f in ["chapters/00_preface", *files]:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f


@pytest.mark.parametrize(("stem", "title"), CHAPTERS)
def test_chapter_structure_and_outputs(stem, title):
    nb = _nb(stem)
    cells = nb["cells"]
    md = [_src(c) for c in cells if c["cell_type"] == "markdown"]
    code = [c for c in cells if c["cell_type"] == "code"]
    n = int(stem[:2])
    h1 = next(line for m in md for line in m.splitlines() if line.startswith("# "))
    assert h1.startswith(f"# 第 {n} 章") and title in h1, h1
    if n <= 8:
        for k in range(1, 5):
            assert any(re.search(rf"^## {n}\.{k}\s", m, re.M) for m in md), (
                f"section {n}.{k} missing"
            )
    # Colab install cell first, then the one-line set-up.
    first = _src(code[0])
    assert "google.colab" in first and "remove-cell" in code[0]["metadata"].get("tags", [])
    assert "setup_notebook" in _src(code[1])
    # Executed top to bottom, no errors, no missing-glyph warnings.
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{stem}: run `make notebook NB={stem}`"
    for c in code:
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"{stem}: error output {out.get('ename')}"
            text = _src({"source": out.get("text", "")})
            assert not ("Glyph" in text and "missing" in text), f"{stem}: missing glyph warning"
    assert any("nbval-check-output" in c["metadata"].get("tags", []) for c in code), (
        f"{stem}: no cell is checked by nbval"
    )


@pytest.mark.parametrize(("stem", "title"), CHAPTERS)
def test_notebook_matches_its_source(stem, title):
    jupytext = pytest.importorskip("jupytext")
    src = jupytext.read(ROOT / "chapters" / "src" / f"{stem}.md")
    nb = _nb(stem)
    a = [(c.cell_type, c.source.strip()) for c in src.cells]
    b = [(c["cell_type"], _src(c).strip()) for c in nb["cells"]]
    assert a == b, f"chapters/{stem}.ipynb is out of date: run `make notebook NB={stem}`"


def _all_markdown() -> str:
    parts = [(ROOT / "chapters" / "00_preface.md").read_text(encoding="utf-8")]
    parts += [(ROOT / "chapters" / "glossary.md").read_text(encoding="utf-8")]
    for stem, _ in CHAPTERS:
        parts += [_src(c) for c in _nb(stem)["cells"] if c["cell_type"] == "markdown"]
    return "\n".join(parts)


def test_every_citation_is_in_the_bibliography():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.M))
    cited = set()
    for group in re.findall(r"\{cite[:a-z]*\}`([^`]+)`", _all_markdown()):
        cited.update(k.strip() for k in group.split(","))
    assert cited, "the book cites nothing"
    assert cited <= keys, f"missing from references.bib: {sorted(cited - keys)}"


def test_every_glued_name_is_produced_by_a_notebook():
    produced = set()
    for stem, _ in CHAPTERS:
        for c in _nb(stem)["cells"]:
            for out in c.get("outputs", []):
                meta = out.get("metadata", {}).get("scrapbook")
                if meta:
                    produced.add(meta["name"])
    used = {m.split(":")[0] for m in re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", _all_markdown())}
    assert used <= produced, (
        f"glue names used in prose but never produced: {sorted(used - produced)}"
    )


def test_repository_url_is_one_setting():
    from llmbook.data import registry

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"]
    assert registry.REPO_URL == url, "run `make sync-repo-url`"
    owner_repo = url.removeprefix("https://github.com/")
    assert registry.RAW_BASE_URL == f"https://raw.githubusercontent.com/{owner_repo}/main"
    for stem, _ in CHAPTERS:
        first = next(c for c in _nb(stem)["cells"] if c["cell_type"] == "code")
        assert f"git+{url}" in _src(first), f"{stem}: run `make sync-repo-url`"
    assert "binderhub_url" in config["launch_buttons"] and "colab_url" in config["launch_buttons"]


def test_config_language_search_and_extensions():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    sphinx = config["sphinx"]["config"]
    assert sphinx["language"] == "zh_CN"
    userdict = ROOT / sphinx["html_search_options"]["dict"]
    words = {
        line.split()[0]
        for line in userdict.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    assert {"大语言模型", "词向量", "注意力机制", "困惑度"} <= words
    assert "sphinxcontrib.mermaid" in config["sphinx"]["extra_extensions"]
    assert config["bibtex_bibfiles"] == ["references.bib"]


def test_no_unfinished_markers():
    text = _all_markdown()
    for stem, _ in CHAPTERS:
        text += "".join(_src(c) for c in _nb(stem)["cells"] if c["cell_type"] == "code")
    assert not re.search(r"\b(TODO|TBD|FIXME)\b|待补充|待完成|敬请期待", text)
