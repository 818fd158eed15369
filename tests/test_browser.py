"""A real browser over the built book: headless Chromium (Debian package) via Playwright.

Run after `make book` (the Makefile's `browser` target does): serves _build/html on
127.0.0.1, takes a screenshot of a chapter page, checks that Chinese text is drawn with a
CJK font (no tofu), that figures load, that Mermaid diagrams render, and that the Chinese
search finds the right chapters.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

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


def test_chapter_page_renders_chinese_with_a_cjk_font(site, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{site}/chapters/01_background.html", wait_until="networkidle")
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
    page.goto(f"{site}/chapters/04_math.html", wait_until="networkidle")
    page.wait_for_selector("mjx-container", state="attached", timeout=30_000)
    assert page.locator("mjx-container").count() >= 10
    page.close()


def test_mermaid_diagram_renders_offline(site, browser):
    page = browser.new_page()
    page.goto(f"{site}/chapters/01_background.html", wait_until="networkidle")
    page.wait_for_selector(".mermaid svg", timeout=30_000)
    assert page.locator(".mermaid svg").count() >= 1
    page.close()


@pytest.mark.parametrize(
    ("query", "chapter"),
    [
        ("注意力", "03_algorithms"),
        ("词向量", "02_concepts"),
        ("困惑度", "01_background"),
        ("大语言模型", "01_background"),
    ],
)
def test_chinese_search_finds_the_chapter(site, browser, query, chapter):
    page = browser.new_page()
    page.goto(f"{site}/search.html?q={query}", wait_until="networkidle")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    links = page.eval_on_selector_all(
        "#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))"
    )
    assert any(chapter in (h or "") for h in links), f"{query}: {links[:10]}"
    page.close()
