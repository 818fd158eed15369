"""A small Sphinx extension with the book's site fixes (loaded through ``_config.yml``).

* **Chinese search that understands compounds.**  Sphinx indexes Chinese with
  ``jieba.cut_for_search``, but splits the *query* in the browser only at spaces and
  punctuation, so 「缩放点积注意力」 or 「KV缓存」 (no space) found nothing.  The query splitter
  below cuts a run of Han characters into the longest words the index knows (forward maximum
  matching against ``Search._index.terms``) and separates Han from Latin letters.
* **No duplicated theme scripts.**  sphinx-thebe registers its inline configuration twice
  (``const THEBE_JS_URL`` declared twice is a console error on every page); the repeated
  inline scripts are dropped from the written pages.
* **A valid colour mode.**  pydata-sphinx-theme logs an error when its template gets no
  ``default_mode``; the book is light by default.
* **Chinese page chrome.**  The theme leaves some button labels in English for ``zh_CN``;
  they are translated in the written HTML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.search.zh import SearchChinese

#: query splitter (JavaScript): Han runs are cut into the index's own words
JS_SPLITTER = r"""
function splitQuery(query) {
  const index = (typeof Search !== "undefined" && Search._index) ? Search._index.terms : null;
  const known = (w) => index !== null && Object.prototype.hasOwnProperty.call(index, w);
  const out = [];
  const chunks = query.split(/[^\p{Letter}\p{Number}_\p{Emoji_Presentation}]+/gu);
  for (const chunk of chunks.filter((t) => t)) {
    for (const run of chunk.match(/\p{Script=Han}+|[^\p{Script=Han}]+/gu)) {
      if (!/\p{Script=Han}/u.test(run) || index === null || known(run)) {
        out.push(run);
        continue;
      }
      let i = 0;
      while (i < run.length) {
        let j = run.length;
        while (j > i + 1 && !known(run.slice(i, j))) j--;
        out.push(run.slice(i, j));
        i = j;
      }
    }
  }
  return out;
}
"""


class SearchChineseCompounds(SearchChinese):
    """Chinese search whose browser-side query splitter knows the index's words."""

    js_splitter_code = JS_SPLITTER


#: English labels the theme leaves untranslated, and the book's Chinese for them
CHROME_ZH = {
    'aria-label="Source repositories"': 'aria-label="源代码仓库"',
    'aria-label="Launch interactive content"': 'aria-label="在线运行本页"',
    'aria-label="Toggle primary sidebar"': 'aria-label="显示或隐藏章节目录"',
    'aria-label="Toggle secondary sidebar"': 'aria-label="显示或隐藏本页目录"',
    'aria-label="Color mode"': 'aria-label="颜色模式"',
    'aria-label="Search this book..."': 'aria-label="在本书中搜索…"',
    'placeholder="Search this book..."': 'placeholder="在本书中搜索…"',
    'aria-label="Main"': 'aria-label="章节目录"',
    'aria-label="Page"': 'aria-label="本页目录"',
    'title="Toggle primary sidebar"': 'title="显示或隐藏章节目录"',
    'title="Toggle secondary sidebar"': 'title="显示或隐藏本页目录"',
    'title="Source repositories"': 'title="源代码仓库"',
    'title="Launch interactive content"': 'title="在线运行本页"',
    'title="Launch on Binder"': 'title="在 Binder 中运行"',
    'title="Launch on Colab"': 'title="在 Colab 中运行"',
    'title="Color mode"': 'title="颜色模式"',
    'title="Link to this heading"': 'title="链接到本标题"',
    'title="System Settings"': 'title="跟随系统设置"',
    'data-bs-original-title="Toggle primary sidebar"': 'data-bs-original-title="显示或隐藏章节目录"',
    'btn__text-container">Repository<': 'btn__text-container">仓库<',
    'btn__text-container">Open issue<': 'btn__text-container">提交问题<',
    ">repository</span>": ">仓库</span>",
    ">open issue</span>": ">提交问题</span>",
}


def _default_mode(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def _drop_repeated_inline_scripts(html: str) -> str:
    """Keep the first of identical one-line inline ``<script>…</script>`` tags."""
    seen: set[str] = set()
    out = []
    for line in html.splitlines(keepends=True):
        tag = line.strip()
        if tag.startswith("<script>") and tag.endswith("</script>"):
            if tag in seen:
                continue
            seen.add(tag)
        out.append(line)
    return "".join(out)


#: an automatic section number right before the title's own one: 「5.3. 5.2 源代码…」
_DOUBLE_NUMBER = re.compile(
    r"(<a [^>]*>|<span class=\"section-number\">)\s*\d+(?:\.\d+)*\.\s*(?:</span>)?\s*"
    r"(?=第 \d+ 章|\d+\.\d+ )"
)


def _drop_double_numbers(html: str) -> str:
    """The toc is numbered (figures read 图 5.3) and titles carry their own numbers."""
    return _DOUBLE_NUMBER.sub(lambda m: m.group(1) if m.group(1).startswith("<a") else "", html)


def _translate_chrome(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = _drop_double_numbers(_drop_repeated_inline_scripts(text))
        for english, chinese in CHROME_ZH.items():
            new = new.replace(english, chinese)
        if new != text:
            page.write_text(new, encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    from sphinx.search import languages

    languages["zh"] = SearchChineseCompounds
    app.connect("html-page-context", _default_mode)
    app.connect("build-finished", _translate_chrome)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
