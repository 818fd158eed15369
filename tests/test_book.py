"""The book's structure: chapters as folders of section pages, sources in sync with their
executed notebooks, labels and figures, citations, glue names and the repository URL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [
    ("01_background", "背景介绍"),
    ("02_concepts", "核心概念与联系"),
    ("03_algorithms", "核心算法"),
    ("04_math", "数学模型"),
    ("05_gpt_project", "项目实践"),
    ("06_applications", "实际应用场景"),
    ("07_tools", "工具和资源推荐"),
    ("08_future", "总结与展望"),
    ("09_faq", "常见问题与解答"),
]
SECTION_RE = re.compile(r"^(\d+)_(\d+)_[a-z0-9_]+$")


def _sections(chapter: str) -> list[Path]:
    """Section sources of a chapter, in numeric order."""
    found = []
    for p in (ROOT / "chapters" / chapter).glob("*.md"):
        m = SECTION_RE.match(p.stem)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), p))
    return [p for _, p in sorted(found)]


SECTIONS = [(c, p.stem) for c, _ in CHAPTERS for p in _sections(c)]


def _nb(chapter: str, stem: str) -> dict:
    path = ROOT / "chapters" / chapter / f"{stem}.ipynb"
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def test_toc_is_generated_from_the_chapter_folders():
    out = subprocess.run(
        [sys.executable, str(ROOT / "book" / "build_toc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    main = toc["parts"][0]
    assert [c["file"] for c in main["chapters"]] == [f"chapters/{c}/index" for c, _ in CHAPTERS]
    assert all(len(c.get("sections", [])) >= 2 for c in main["chapters"])
    assert [c["file"] for c in toc["parts"][1]["chapters"]] == [
        "chapters/glossary",
        "chapters/bibliography",
    ]


@pytest.mark.parametrize(("chapter", "title"), CHAPTERS)
def test_chapter_page_introduces_and_maps_its_sections(chapter, title):
    n = int(chapter[:2])
    text = (ROOT / "chapters" / chapter / "index.md").read_text(encoding="utf-8")
    assert f"(chap-{n})=" in text
    h1 = next(line for line in text.splitlines() if line.startswith("# "))
    assert h1.startswith(f"# 第 {n} 章") and title in h1, h1
    for path in _sections(chapter):
        m = SECTION_RE.match(path.stem)
        assert m and int(m.group(1)) == n, path
        label = f"sec-{n}-{int(m.group(2))}"
        assert f"{{ref}}`{label}`" in text, f"{chapter}/index.md does not link {label}"
    assert not re.search(r"```\{code-cell\}", text), "a chapter page holds no code"


@pytest.mark.parametrize(("chapter", "stem"), SECTIONS)
def test_section_page_structure_and_outputs(chapter, stem):
    n, k = (int(x) for x in SECTION_RE.match(stem).groups())
    nb = _nb(chapter, stem)
    cells = nb["cells"]
    md = [_src(c) for c in cells if c["cell_type"] == "markdown"]
    code = [c for c in cells if c["cell_type"] == "code"]
    joined = "\n".join(md)
    assert f"(sec-{n}-{k})=" in joined, f"{stem}: label (sec-{n}-{k})= missing"
    h1 = next(line for m in md for line in m.splitlines() if line.startswith("# "))
    assert h1.startswith(f"# {n}.{k} "), h1
    last_h2 = [line for line in joined.splitlines() if line.startswith("## ")]
    assert last_h2 and last_h2[-1].startswith("## 小结"), f"{stem}: must end with ## 小结"
    assert "$$" not in "".join(
        line for line in joined.splitlines() if re.match(r"^\s*([-*+]|\d+\.)\s", line)
    ), f"{stem}: display maths inside a list item renders as raw text"
    assert not re.search(r"\]\([^)]*\d\d_[a-z_]+\.ipynb", joined), (
        f"{stem}: link chapters with {{ref}}, not file links"
    )
    if not code:
        return
    first = _src(code[0])
    assert "google.colab" in first and "remove-cell" in code[0]["metadata"].get("tags", [])
    assert "setup_notebook" in _src(code[1])
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"run `make notebook NB={chapter}/{stem}`"
    for c in code:
        tags = c["metadata"].get("tags", [])
        figure = c["metadata"].get("mystnb", {}).get("figure", {})
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"{stem}: error output {out.get('ename')}"
            text = _src({"source": out.get("text", "")})
            assert not ("Glyph" in text and "missing" in text), f"{stem}: missing glyph"
            if out.get("name") == "stderr":
                assert "nbval-check-output" in tags, f"{stem}: stderr kept in a saved notebook"
            if "image/png" in out.get("data", {}) and "remove-output" not in tags:
                assert figure.get("caption") and figure.get("name", "").startswith("fig-"), (
                    f"{stem}: every figure needs mystnb.figure caption and a fig- name:\n"
                    + _src(c)[:200]
                )
        for line in _src(c).splitlines():
            assert len(line) <= 88 or "remove-cell" in tags, f"{stem}: code line > 88: {line}"


@pytest.mark.parametrize(("chapter", "title"), CHAPTERS)
def test_every_chapter_has_checked_cells(chapter, title):
    checked = [
        c
        for _, stem in [s for s in SECTIONS if s[0] == chapter]
        for c in _nb(chapter, stem)["cells"]
        if "nbval-check-output" in c["metadata"].get("tags", [])
    ]
    assert checked, f"{chapter}: no cell is checked by nbval"


@pytest.mark.parametrize(("chapter", "stem"), SECTIONS)
def test_notebook_matches_its_source(chapter, stem):
    jupytext = pytest.importorskip("jupytext")
    src = jupytext.read(ROOT / "chapters" / chapter / f"{stem}.md")
    nb = _nb(chapter, stem)
    a = [(c.cell_type, c.source.strip()) for c in src.cells]
    b = [(c["cell_type"], _src(c).strip()) for c in nb["cells"]]
    assert a == b, f"out of date: run `make notebook NB={chapter}/{stem}`"


def _all_markdown() -> str:
    parts = [(ROOT / "chapters" / "00_preface.md").read_text(encoding="utf-8")]
    parts += [(ROOT / "chapters" / "glossary.md").read_text(encoding="utf-8")]
    for chapter, _ in CHAPTERS:
        parts.append((ROOT / "chapters" / chapter / "index.md").read_text(encoding="utf-8"))
    for chapter, stem in SECTIONS:
        parts += [_src(c) for c in _nb(chapter, stem)["cells"] if c["cell_type"] == "markdown"]
    return "\n".join(parts)


def test_every_citation_is_in_the_bibliography():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.M))
    cited = set()
    for group in re.findall(r"\{cite[:a-z]*\}`([^`]+)`", _all_markdown()):
        cited.update(k.strip() for k in group.split(","))
    assert cited, "the book cites nothing"
    assert cited <= keys, f"missing from references.bib: {sorted(cited - keys)}"
    # the bibliography page lists every entry (:all:), so every entry must be cited somewhere
    assert keys <= cited, f"in references.bib but never cited: {sorted(keys - cited)}"


def test_every_glued_name_is_produced_by_a_notebook():
    produced = set()
    for chapter, stem in SECTIONS:
        for c in _nb(chapter, stem)["cells"]:
            for out in c.get("outputs", []):
                meta = out.get("metadata", {}).get("scrapbook")
                if meta:
                    produced.add(meta["name"])
    used = {m.split(":")[0] for m in re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", _all_markdown())}
    assert used <= produced, f"glued in prose but never produced: {sorted(used - produced)}"


def test_figure_names_are_unique_and_referenced():
    names: list[str] = []
    for chapter, stem in SECTIONS:
        for c in _nb(chapter, stem)["cells"]:
            name = c["metadata"].get("mystnb", {}).get("figure", {}).get("name")
            if name:
                names.append(name)
    assert len(names) == len(set(names)), "figure names must be unique"
    text = _all_markdown()
    unreferenced = [n for n in names if f"{{numref}}`{n}`" not in text]
    assert not unreferenced, f"figures never referenced with {{numref}}: {unreferenced}"


def test_repository_url_is_one_setting():
    from llmbook.data import registry

    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"]
    assert registry.REPO_URL == url, "run `make sync-repo-url`"
    owner_repo = url.removeprefix("https://github.com/")
    assert registry.RAW_BASE_URL == f"https://raw.githubusercontent.com/{owner_repo}/main"
    for chapter, stem in SECTIONS:
        code = [c for c in _nb(chapter, stem)["cells"] if c["cell_type"] == "code"]
        if code:
            assert f"git+{url}" in _src(code[0]), f"{stem}: run `make sync-repo-url`"
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
    assert "sphinx_llmbook" in config["sphinx"]["local_extensions"]
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert not (ROOT / "_static").exists(), (
        "no root _static/: Jupyter Book 1 would add every .js in it to every page"
    )


def test_no_unfinished_markers():
    text = _all_markdown()
    for chapter, stem in SECTIONS:
        text += "".join(_src(c) for c in _nb(chapter, stem)["cells"] if c["cell_type"] == "code")
    assert not re.search(r"\b(TODO|TBD|FIXME)\b|待补充|待完成|敬请期待", text)
