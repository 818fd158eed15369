"""A real browser over the built book: headless Chromium (Debian package) via Playwright.

Run after `make book` (the Makefile's `browser` target does): serves _build/html on
127.0.0.1, takes a screenshot of a chapter page, checks that Chinese text is drawn with a
CJK font (no tofu), that figures load, that Mermaid diagrams render, and that the Chinese
search finds the right chapters.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        if os.environ.get("LLMBOOK_BROWSER_TESTS"):
            pytest.fail("_build/html is missing: run `make book` first")
        pytest.skip("book not built (run `make book`, then `make browser`)")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(HTML))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed: apt-get install chromium (make setup does)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def _fonts_of(page, selector: str) -> list[dict]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, f"selector {selector!r} not found"
    return cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]


def _pages() -> list[str]:
    """Every page of the book in table-of-contents order, as paths relative to the site."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]
    for part in toc["parts"]:
        for chap in part["chapters"]:
            files.append(chap["file"])
            files += [s["file"] for s in chap.get("sections", [])]
    return [f"{f}.html" for f in files]


def _first_page(pattern: str) -> str:
    """The first page matching the first alternative of ``pattern`` that matches any."""
    pages = _pages()
    for alternative in pattern.split("|"):
        found = [p for p in pages if re.search(alternative, p)]
        if found:
            return found[0]
    raise AssertionError(f"no page matches {pattern!r}")


def _figures(path: str) -> int:
    """Images in a built page's content (the sidebar logo does not count)."""
    html = (HTML / path).read_text(encoding="utf-8")
    return sum("logo" not in tag for tag in re.findall(r"<img [^>]*>", html))


def _watch(page) -> list[str]:
    """Collect console errors, uncaught exceptions and failed requests of ``page``."""
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    return problems


def test_chapter_page_renders_chinese_with_a_cjk_font(site, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{site}/{_first_page(r'01_background')}", wait_until="networkidle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "01_background.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    heading = page.locator("main section h1").first.inner_text()
    assert "背景介绍" in heading
    fonts = _fonts_of(page, "main section h1")
    cjk = [f for f in fonts if "CJK" in f["familyName"] or "Hei" in f["familyName"]]
    assert cjk and sum(f["glyphCount"] for f in cjk) >= 4, (
        f"Chinese drawn without a CJK font: {fonts}"
    )
    para_fonts = _fonts_of(page, "main section p")
    assert any("CJK" in f["familyName"] for f in para_fonts), para_fonts
    # Every figure on the page loaded.
    broken = page.evaluate(
        "[...document.querySelectorAll('main img')].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == []
    page.close()


def test_formulas_render_offline(site, browser):
    page = browser.new_page()
    page.goto(f"{site}/{_first_page(r'04_math/4_2|04_math')}", wait_until="networkidle")
    page.wait_for_selector("mjx-container", state="attached", timeout=30_000)
    assert page.locator("mjx-container").count() >= 10
    page.close()


def test_mermaid_diagram_renders_offline(site, browser):
    page = browser.new_page()
    page.goto(f"{site}/{_first_page(r'01_background/1_4|01_background')}", wait_until="networkidle")
    page.wait_for_selector(".mermaid svg", timeout=30_000)
    # sized by the text column (not squeezed into a fixed box): its text stays readable
    width = page.evaluate("document.querySelector('.mermaid svg').getBoundingClientRect().width")
    assert width > 300, f"diagram only {width:.0f} px wide"
    # no fullscreen-button glyph that no font has (a tofu box)
    buttons = page.eval_on_selector_all("button", "bs => bs.map(b => b.innerText.trim())")
    assert "⛶" not in buttons
    assert page.locator(".mermaid svg").count() >= 1
    page.close()


@pytest.mark.parametrize(
    ("query", "chapter"),
    [
        ("注意力", "03_algorithms"),
        ("词向量", "02_concepts"),
        ("困惑度", "01_background"),
        ("大语言模型", "01_background"),
        # typed without spaces, or compounds jieba splits: the query splitter of
        # book/sphinx_llmbook.py cuts them into the index's own words
        ("KV缓存", "05_gpt_project"),
        ("缩放点积注意力", "03_algorithms"),
        ("训练语言模型", "01_background"),
    ],
)
def test_chinese_search_finds_the_chapter(site, browser, query, chapter):
    page = browser.new_page()
    page.goto(f"{site}/search.html?q={quote(query)}", wait_until="networkidle")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    links = page.eval_on_selector_all(
        "#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))"
    )
    assert any(chapter in (h or "") for h in links), f"{query}: {links[:10]}"
    snippets = page.eval_on_selector_all(
        "#search-results ul.search li p.context", "els => els.map(e => e.innerText)"
    )
    raw = [s for s in snippets if re.search(r"\\(frac|sum|mathrm)|\$\$|graph (TD|LR)|flowchart", s)]
    assert not raw, f"search snippets show TeX or Mermaid source: {raw[:2]}"
    page.close()


@pytest.mark.parametrize("width", [1400, 390])
def test_a_section_page_at_desktop_and_phone_width(site, browser, width):
    """Screenshot, no console error, no horizontal overflow, and the ☰ sidebar works."""
    page = browser.new_page(viewport={"width": width, "height": 844})
    problems = _watch(page)
    path = _first_page(r"05_gpt_project/5_2|05_gpt_project")
    page.goto(f"{site}/{path}", wait_until="networkidle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"section_{width}.png"))
    assert not problems, problems
    html = page.content()
    english = [
        w for w in ("Open issue", ">Repository<", "Color mode", "Search this book") if w in html
    ]
    assert not english and "提交问题" in html, f"page chrome left in English: {english}"
    links = page.eval_on_selector_all("nav a", "els => els.map(e => e.innerText.trim())")
    doubled = [t for t in links if re.match(r"\d+(\.\d+)*\.\s+(第 \d+ 章|\d+\.\d+ )", t)]
    assert not doubled, f"titles numbered twice: {doubled[:3]}"
    searches = page.evaluate(
        "[...document.querySelectorAll('.search-button, .search-button-field, form.bd-search')]"
        ".filter(e => e.offsetParent !== null).length"
    )
    assert searches == 1, f"{searches} search boxes visible at {width} px"
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page scrolls sideways by {overflow} px at {width} px"
    toggle = page.locator("button.sidebar-toggle.primary-toggle.btn")
    toggle.click()
    page.wait_for_timeout(600)
    if width < 992:  # phones: the chapter list opens in a modal dialog
        assert page.evaluate("document.querySelector('#pst-primary-sidebar-modal').open")
        links = page.locator("#pst-primary-sidebar-modal a.reference.internal")
        assert links.count() >= 9 and links.first.is_visible()
        page.screenshot(path=str(SHOTS / f"section_{width}_sidebar.png"))
    else:  # desktop: ☰ hides and shows the sidebar
        assert not page.locator("#pst-primary-sidebar").is_visible()
        toggle.click()
        page.wait_for_timeout(600)
        assert page.locator("#pst-primary-sidebar").is_visible()
    page.close()


def test_every_page_renders_its_formulas_and_loads_cleanly(site, browser):
    """On every page: no console error, maths rendered by MathJax, no raw TeX left in prose."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failures = []
    for path in _pages():
        problems = _watch(page)
        response = page.goto(f"{site}/{path}", wait_until="networkidle")
        if response is None or response.status != 200:
            failures.append(f"{path}: not built (HTTP {response and response.status})")
            continue
        has_math = page.locator(".math").count() > 0
        if has_math:
            page.wait_for_selector("mjx-container", state="attached", timeout=30_000)
            page.wait_for_timeout(300)
        raw = page.evaluate(
            """() => {
                const main = document.querySelector("main").cloneNode(true);
                main.querySelectorAll("pre, code, .cell_input, .cell_output, mjx-container, script")
                    .forEach((el) => el.remove());
                const text = main.innerText;
                const found = text.match(/\\$\\$|\\frac|\\sum_|\\mathrm|\\begin\\{/g);
                return found ? found.slice(0, 3) : [];
            }"""
        )
        if raw:
            failures.append(f"{path}: raw TeX {raw}")
        if problems:
            failures.append(f"{path}: {problems[:3]}")
    page.close()
    assert not failures, "\n".join(failures)


def test_page_weight_without_images(site, browser):
    """A page without figures weighs at most 1.5 MB as a static host serves it (gzip).

    Text responses (HTML, JavaScript, CSS, JSON, SVG) count with their gzip size, which is
    what GitHub Pages and any static host send; fonts and images count as they are.
    Before the vendored MathJax moved out of ``_static/`` a page loaded all 56 of its files.
    """
    plain = [p for p in _pages() if _figures(p) == 0]
    plain = [p for p in plain if 'class="math' in (HTML / p).read_text(encoding="utf-8")]
    assert plain, "no page with formulas and without figures to weigh"
    page = browser.new_page()
    sizes: list[tuple[int, int]] = []

    def add(response):
        try:
            body = response.body()
        except Exception:  # redirects and aborted requests have no body
            return
        kind = response.headers.get("content-type", "")
        textual = any(t in kind for t in ("text/", "javascript", "json", "svg", "css"))
        sizes.append((len(body), len(gzip.compress(body, 6)) if textual else len(body)))

    page.on("response", add)
    page.goto(f"{site}/{plain[0]}", wait_until="networkidle")
    page.wait_for_selector("mjx-container", state="attached", timeout=30_000)
    page.close()
    raw, sent = sum(r for r, _ in sizes), sum(g for _, g in sizes)
    print(f"{plain[0]}: {sent / 1e6:.2f} MB served ({raw / 1e6:.2f} MB uncompressed)")
    assert sent <= 1_500_000, f"{plain[0]} weighs {sent / 1e6:.2f} MB"


def test_launch_links_are_built_from_the_one_repository_url(site, browser):
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/")
    owner_repo = url.removeprefix("https://github.com/")
    page = browser.new_page()
    page.goto(f"{site}/{_first_page(r'03_algorithms/3_2|03_algorithms')}", wait_until="networkidle")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    page.close()
    colab = [h for h in hrefs if "colab.research.google.com" in h]
    binder = [h for h in hrefs if "mybinder.org" in h]
    repo = [h for h in hrefs if h.startswith("https://github.com/")]
    assert colab and binder and repo, hrefs
    assert all(f"github/{owner_repo}/blob/" in h for h in colab), colab
    assert all(f"/gh/{owner_repo}/" in h for h in binder), binder
    assert all(h.startswith(url) for h in repo), repo
